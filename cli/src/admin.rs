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
/// "Last published": the newest (by version id, which sorts by when a build began) of the build the
/// current version derives from and the builds the pointer lists. What was done to the keyspace since (a
/// delete or another delta, a compaction, a rollback) was meant, and a restart over the same FILE keeps
/// it; a FILE that changed is published anew.
pub async fn ensure_ingested(file: &Path, store: &Store, allow_empty: bool) -> Result<(), Box<dyn std::error::Error>> {
    let files = cairn_ingest::list_sources(&[file.to_path_buf()], None).await?;
    let fp = tokio::task::spawn_blocking(move || cairn_ingest::fingerprint(&files)).await??;
    if let Some(cur) = pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await? {
        let m = Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, &cur.pointer.version).await?;
        if m.source.fingerprint == fp {
            eprintln!("{} already ingested as version {} ({} keys); reusing it", file.display(), m.version, m.rows);
            return Ok(());
        }
        let current = m.version.clone();
        match last_build(store, &cur.pointer, m).await? {
            Some(built) if built.source.fingerprint == fp => {
                eprintln!(
                    "{} already ingested as version {}, unchanged since; serving the current version {current} (changed since by a delta, compaction or rollback)",
                    file.display(),
                    built.version,
                );
                return Ok(());
            }
            Some(_) => {}
            None => {
                return Err(format!(
                    "cannot tell whether {} changed since it was published: the current version of keyspace {SERVE_KEYSPACE} ({current}) was made from other versions, and the build they came from is gone (collected by gc). To publish {} again: cairn ingest {} -k {SERVE_KEYSPACE} --store {}; to serve what is published: cairn serve --store {}",
                    file.display(),
                    file.display(),
                    file.display(),
                    store.url,
                    store.url,
                )
                .into());
            }
        }
    }
    let mut opts = IngestOptions::new(file, SERVE_KEYSPACE, store.clone());
    opts.allow_empty = allow_empty;
    let report = cairn_ingest::ingest(opts, Arc::new(crate::progress::Bars::new())).await?;
    print_report(&report);
    Ok(())
}

/// The newest build of inputs among the one `current` derives from and those `p` lists (a rollback to an
/// older build leaves newer ones in its history); None when `current` was made from other versions and the
/// build they came from is gone.
async fn last_build(store: &Store, p: &pointer::Pointer, current: Manifest) -> Result<Option<Manifest>, Error> {
    let current_version = current.version.clone();
    let mut best = origin(store, current).await?;
    let Some(found) = &best else { return Ok(None) };
    let mut listed: Vec<&str> =
        p.previous.iter().chain(p.history.iter().map(|h| &h.version)).map(String::as_str).collect();
    listed.sort_unstable_by(|a, b| b.cmp(a));
    listed.dedup();
    let oldest = found.version.clone();
    // Newest first: the first build found wins, and nothing older than the origin can.
    for v in listed.into_iter().filter(|v| *v != current_version).take_while(|v| *v > oldest.as_str()) {
        match Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, v).await {
            Ok(m) if m.is_build_of_inputs() => {
                best = Some(m);
                break;
            }
            Ok(_) | Err(Error::VersionNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(best)
}

/// Versions followed from a version back to the build it derives from, at most.
const MAX_ANCESTRY: usize = 256;

/// The build of inputs `m` derives from: itself, or its oldest layer's, or the compacted version's, followed
/// back; None when one on the way is gone.
async fn origin(store: &Store, mut m: Manifest) -> Result<Option<Manifest>, Error> {
    for _ in 0..MAX_ANCESTRY {
        if m.is_build_of_inputs() {
            return Ok(Some(m));
        }
        let next = match (m.layers.last(), m.compacted_from()) {
            (Some(base), _) => base.version.clone(),
            (None, Some(from)) => from.to_string(),
            (None, None) => return Ok(None),
        };
        m = match Manifest::read_top(store.inner.as_ref(), SERVE_KEYSPACE, &next).await {
            Ok(m) => m,
            Err(Error::VersionNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
    }
    Ok(None)
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
