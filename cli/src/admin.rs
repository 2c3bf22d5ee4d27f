//! Store-side commands that are not queries: the `serve FILE` reuse check, rollback, reports.

use std::path::Path;
use std::sync::Arc;

use cairn_ingest::{IngestOptions, IngestReport};
use cairn_shared::format::checksum::ObjectRef;
use cairn_shared::format::layout;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::{manifest_copies, pointer};
use cairn_shared::{Error, ErrorKind};

pub const SERVE_KEYSPACE: &str = "default";

/// Ingests `file` into keyspace `default` unless its current version came from the same content.
pub async fn ensure_ingested(file: &Path, store: &Store, allow_empty: bool) -> Result<(), Box<dyn std::error::Error>> {
    let files = cairn_ingest::list_sources(&[file.to_path_buf()], None).await?;
    let fp = tokio::task::spawn_blocking(move || cairn_ingest::fingerprint(&files)).await??;
    if let Some(cur) = pointer::read(store.inner.as_ref(), SERVE_KEYSPACE).await? {
        let m = Manifest::read(store.inner.as_ref(), SERVE_KEYSPACE, &cur.pointer.version).await?;
        if m.source.fingerprint == fp {
            eprintln!("{} already ingested as version {} ({} keys); reusing it", file.display(), m.version, m.rows);
            return Ok(());
        }
    }
    let mut opts = IngestOptions::new(file, SERVE_KEYSPACE, store.clone());
    opts.allow_empty = allow_empty;
    let report = cairn_ingest::ingest(opts, Arc::new(crate::progress::Bars::new())).await?;
    print_report(&report);
    Ok(())
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

/// The published version of `ks` (the pointer, with what it records of the version's top level) and its
/// roots: the primary, then the replicas the version's top level lists. That is the primary's copy when it
/// is the one the pointer names; otherwise the first such copy on a root `replicas` or an earlier version's
/// manifest names, so a primary that lost or damaged it can still be checked and mended.
pub async fn published_roots(
    store: &Store,
    ks: &str,
    replicas: &[String],
) -> Result<(pointer::Pointer, Vec<Store>), Error> {
    let cur = pointer::read(store.inner.as_ref(), ks).await?.ok_or_else(|| Error::KeyspaceNotFound(ks.into()))?;
    let p = cur.pointer;
    let named = |r: &ObjectRef| p.manifest.as_ref().is_none_or(|want| want == r);
    let top = match Manifest::read_top_ref(store.inner.as_ref(), ks, &p.version).await {
        Ok((m, r)) if named(&r) => m,
        Err(e) if e.kind() == ErrorKind::Unavailable => return Err(e),
        primary => {
            let why = primary.map_or_else(|e| e.to_string(), |_| "not the copy the pointer names".into());
            match top_elsewhere(store, ks, &p, replicas).await? {
                Some((m, url)) => {
                    eprintln!("warning: the primary's manifest top level of {ks}/{}: {why}; read {url}'s", p.version);
                    m
                }
                None => {
                    let path = layout::manifest_path(ks, &p.version);
                    let why = format!(
                        "the primary's copy: {why}; no other root known holds the one the pointer names (name \
                         the replica roots with --replicas)"
                    );
                    return Err(Error::corrupt(&path, why));
                }
            }
        }
    };
    let mut roots = vec![store.clone()];
    for url in &top.replicas {
        roots.push(Store::open(url)?);
    }
    Ok((p, roots))
}

/// Earlier versions whose manifests are asked which replica roots they named.
const EARLIER_VERSIONS: usize = 8;

/// The top level of the published version `p` names, from a root other than `primary`: the roots `replicas`
/// gives first, then those earlier versions' manifests (on the primary) name. None when none holds it.
async fn top_elsewhere(
    primary: &Store,
    ks: &str,
    p: &pointer::Pointer,
    replicas: &[String],
) -> Result<Option<(Manifest, String)>, Error> {
    let mut urls: Vec<String> = replicas.to_vec();
    let earlier = p.previous.iter().chain(p.history.iter().map(|r| &r.version)).filter(|v| **v != p.version);
    for v in earlier.take(EARLIER_VERSIONS) {
        if let Ok(m) = Manifest::read_top(primary.inner.as_ref(), ks, v).await {
            urls.extend(m.replicas);
        }
    }
    let mut tried = vec![primary.url.clone()];
    for url in urls {
        if tried.contains(&url) {
            continue;
        }
        tried.push(url.clone());
        let root = Store::open(&url)?;
        match Manifest::read_top_ref(root.inner.as_ref(), ks, &p.version).await {
            Ok((m, r)) if p.manifest.as_ref().is_none_or(|want| *want == r) => return Ok(Some((m, url))),
            Err(e) if e.kind() == ErrorKind::Unavailable => eprintln!("warning: {url}: {e}"),
            _ => {}
        }
    }
    Ok(None)
}

/// [`published_roots`], with the version's manifest: every shard entry, read as readers read it (each part
/// from whichever root holds it intact), so health and repair work when the primary has lost a group.
pub async fn keyspace_roots(store: &Store, ks: &str, replicas: &[String]) -> Result<(Manifest, Vec<Store>), Error> {
    let (current, roots) = published_roots(store, ks, replicas).await?;
    let manifest = manifest_copies::read_whole(&roots, ks, &current.version, current.manifest.as_ref()).await?;
    Ok((manifest, roots))
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
