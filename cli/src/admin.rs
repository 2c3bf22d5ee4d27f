//! Store-side commands that are not queries: the `serve FILE` reuse check, rollback, reports.

use std::path::Path;
use std::sync::Arc;

use cairn_ingest::{IngestOptions, IngestReport};
use cairn_shared::Error;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;

pub const SERVE_KEYSPACE: &str = "default";

/// Ingests `file` into keyspace `default` unless it has not changed since it was last published there.
///
/// "Last published": the newest build of inputs among the versions the pointer knows (current, previous,
/// history). What was done to the keyspace since (a delete or another delta, a compaction, a rollback) was
/// meant, and a restart over the same FILE keeps it; a FILE that changed is published anew.
pub async fn ensure_ingested(file: &Path, store: &Store, allow_empty: bool) -> Result<(), Box<dyn std::error::Error>> {
    let files = cairn_ingest::list_sources(&[file.to_path_buf()], None).await?;
    let fp = tokio::task::spawn_blocking(move || cairn_ingest::fingerprint(&files)).await??;
    if let Some(cur) = pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await? {
        let m = Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, &cur.pointer.version).await?;
        if m.source.fingerprint == fp {
            eprintln!("{} already ingested as version {} ({} keys); reusing it", file.display(), m.version, m.rows);
            return Ok(());
        }
        match last_build(store, &cur.pointer, m).await? {
            Ok(built) if built.source.fingerprint == fp => {
                eprintln!(
                    "{} already ingested as version {}, unchanged since; serving the current version {} (changed since by a delta, compaction or rollback)",
                    file.display(),
                    built.version,
                    cur.pointer.version
                );
                return Ok(());
            }
            Ok(_) => {}
            Err(current) if !current.is_build_of_inputs() => {
                return Err(format!(
                    "cannot tell whether {} changed since it was published: the current version of keyspace {SERVE_KEYSPACE} ({}) was made from other versions, and the version they came from is no longer listed. To publish {} again: cairn ingest {} -k {SERVE_KEYSPACE} --store {}; to serve what is published: cairn serve --store {}",
                    file.display(),
                    current.version,
                    file.display(),
                    file.display(),
                    store.url,
                    store.url,
                )
                .into());
            }
            Err(_) => {}
        }
    }
    let mut opts = IngestOptions::new(file, SERVE_KEYSPACE, store.clone());
    opts.allow_empty = allow_empty;
    let report = cairn_ingest::ingest(opts, Arc::new(crate::progress::Bars::new())).await?;
    print_report(&report);
    Ok(())
}

/// The newest build of inputs among the versions `p` knows (newest by version id, which sorts by creation
/// time), the current one (`current`, read already) included: after a rollback to an older build, a newer
/// one is still what FILE was last published as. `Err(current)` when none is listed or readable any more.
async fn last_build(
    store: &Store,
    p: &pointer::Pointer,
    current: Manifest,
) -> Result<Result<Manifest, Manifest>, Error> {
    let mut known: Vec<&str> = std::iter::once(&p.version)
        .chain(&p.previous)
        .chain(p.history.iter().map(|h| &h.version))
        .map(String::as_str)
        .collect();
    known.sort_unstable_by(|a, b| b.cmp(a));
    known.dedup();
    for v in known {
        if v == current.version {
            if current.is_build_of_inputs() {
                return Ok(Ok(current));
            }
            continue;
        }
        match Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, v).await {
            Ok(m) if m.is_build_of_inputs() => return Ok(Ok(m)),
            Ok(_) => {}
            // Collected by gc: it tells nothing.
            Err(Error::VersionNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Err(current))
}

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
        eprintln!("warning: replica {url}: its pointer copy failed and still names the previous version");
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
