//! Store-side commands that are not queries: rollback and reports.

use cairn_ingest::IngestReport;
use cairn_shared::Error;
use cairn_shared::stores::Store;

pub fn print_report(r: &IngestReport) {
    let secs = r.elapsed.as_secs_f64();
    eprintln!(
        "published {}/{}{}: {} keys{}, {} shards, {:.1} MiB in {:.2}s ({:.0} keys/s); shard imbalance {:.2}%{}{}",
        r.keyspace,
        r.version,
        if r.layers > 1 { format!(" (a delta layer; the version has {} layers)", r.layers) } else { String::new() },
        r.rows,
        if r.tombstones > 0 { format!(" ({} of them deletions)", r.tombstones) } else { String::new() },
        r.shards,
        r.bytes as f64 / (1 << 20) as f64,
        secs,
        r.rows as f64 / secs.max(1e-9),
        r.imbalance * 100.0,
        if r.resumed_shards > 0 {
            format!("; {} shards resumed from a checkpoint", r.resumed_shards)
        } else {
            String::new()
        },
        match (r.runs_spilled, r.run_merges) {
            (0, _) => String::new(),
            (n, 0) => format!("; {n} sorted runs spilled"),
            (n, m) => format!("; {n} sorted runs spilled, merged together in {m} merges before writing"),
        }
    );
}

/// Switches the pointer to `to` (default: the version the current one replaced). Returns (from, to).
pub async fn rollback(store: &Store, ks: &str, to: Option<&str>) -> Result<(String, String), Error> {
    let done = cairn_shared::versions::rollback::rollback(store, ks, to, &|url: &str| Store::open(url)).await?;
    // Switched: a replica whose pointer copy failed is a warning, not an error.
    for url in &done.replica_failures {
        eprintln!(
            "warning: replica {url}: its pointer copy could not be written, so it may name another version; \
             `cairn rollback -k {ks} --to {}` writes it again (or `cairn repair`)",
            done.to
        );
    }
    Ok((done.from, done.to))
}

pub fn print_health(r: &cairn_shared::versions::health::HealthReport) {
    print_layer_health(r);
    for layer in &r.layers {
        print!("  layer ");
        print_layer_health(layer);
    }
}

fn print_layer_health(r: &cairn_shared::versions::health::HealthReport) {
    use cairn_shared::versions::health::CopyState;
    println!(
        "{} {}: {:?} ({} shards x {} copies{})",
        r.keyspace,
        r.version,
        r.status,
        r.shards.len(),
        r.copies_per_shard,
        if r.deep { ", checksums verified" } else { ", presence and size" }
    );
    for c in r.manifest.iter().filter(|c| c.state != CopyState::Ok) {
        match &c.part {
            Some(part) => println!("  manifest {} ({part}): {:?}", c.root, c.state),
            None => println!("  manifest {}: {:?}", c.root, c.state),
        }
    }
    for s in r.shards.iter().filter(|s| s.good < r.copies_per_shard) {
        for c in s.copies.iter().filter(|c| c.state != CopyState::Ok) {
            println!("  shard {:05} {}: {:?}", s.shard, c.root, c.state);
        }
    }
}
