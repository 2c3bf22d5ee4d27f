//! Deletes the versions of a keyspace nobody should read any more, under every root: their manifests first
//! (so a half-collected version is never offered to `cairn rollback` or `cairn versions`), then their shard
//! objects. Shard objects of ingests that crashed and were never resumed go the same way.
//!
//! Kept: the current version and the one it replaced (the default rollback target), the `keep` newest
//! versions, every version an unexpired ingest checkpoint names (it may still be resumed), every version a
//! replica's pointer copy names, and every version that stopped being current less than `min_age` ago (the
//! pointer's history says when; a version never published counts from its newest object). Readers hold a
//! version for up to 2 × the pointer TTL after it is replaced, so `min_age` must exceed that. The versions
//! to delete are first marked in the pointer with a conditional write, which a rollback or publish would
//! have to see: none can switch to a version while it is being deleted. Checkpoints past their expiry are
//! deleted and reported. Objects it does not recognise are never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::stores::url::Store;
use crate::versions::gc_layers::{self, Layers, add_unlisted, unlisted};
use crate::versions::local_staging;
use crate::versions::object_kind::{Kind, kind};
use crate::{format::layout, versions::pointer};

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Newest versions kept besides the current one and its predecessor.
    pub keep: usize,
    /// Objects younger than this are kept whatever their version.
    pub min_age: Duration,
    /// Report what would be deleted, delete nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { keep: 2, min_age: Duration::from_secs(3600), dry_run: false }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub kept_versions: Vec<String>,
    /// Versions (with a manifest, or only orphaned shard objects) whose objects were deleted.
    pub deleted_versions: Vec<String>,
    pub objects_deleted: usize,
    pub bytes_deleted: u64,
    /// Objects of versions left because they stopped being current (or were written) less than `min_age` ago.
    pub young_objects_kept: usize,
    /// Runs staged by bulk loads of versions that are published and kept (never read again), deleted.
    pub staged_runs_deleted: usize,
    /// Checkpoints of abandoned ingests (no heartbeat until their expiry) deleted, by ingest id.
    pub expired_checkpoints: Vec<String>,
    /// Staging files of killed writes to local roots (`<object>#<n>`, which no listing shows), deleted.
    pub staging_files_deleted: usize,
    pub staging_bytes_deleted: u64,
    /// Versions some object of which could not be deleted (with the first error): still marked in the
    /// pointer, retried by the next run.
    pub failed: Vec<String>,
    pub dry_run: bool,
}

/// Deletes in flight at once.
const DELETE_CONCURRENCY: usize = 32;

/// The fields of an ingest checkpoint gc reads (ingest/src/checkpoint.rs writes them).
#[derive(serde::Deserialize)]
struct CheckpointInfo {
    version: String,
    started_at: Option<String>,
    expires_at: Option<String>,
}

/// Checkpoints older builds wrote carry no expiry: judged by their start plus this.
const LEGACY_CHECKPOINT_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

impl CheckpointInfo {
    fn expired(&self, now: SystemTime) -> bool {
        let parse = |t: &Option<String>| t.as_deref().and_then(|t| humantime::parse_rfc3339(t).ok());
        let end = parse(&self.expires_at).or_else(|| parse(&self.started_at).map(|t| t + LEGACY_CHECKPOINT_EXPIRY));
        end.is_some_and(|end| end <= now)
    }
}

/// Versions pinned outside the pointer: unexpired checkpoints' (primary) and replicas' pointer copies; and
/// the checkpoints that expired. A checkpoint is its progress record and its lease (`<id>.json`,
/// `<id>.lease`; older builds wrote only the first): it pins its version while either is unexpired.
async fn pins(roots: &[Store], ks: &str, now: SystemTime) -> Result<Pins> {
    let primary = roots[0].inner.as_ref();
    let mut pinned = BTreeSet::new();
    let mut by_replica = BTreeSet::new();
    let mut expired = Vec::new();
    let listed: Vec<ObjectMeta> =
        primary.list(Some(&Path::from(format!("{}/_ingest", layout::keyspace_dir(ks))))).try_collect().await?;
    let mut by_id: BTreeMap<String, Vec<(Path, CheckpointInfo)>> = BTreeMap::new();
    for meta in listed {
        let Some(id) = meta.location.filename().and_then(|f| f.rsplit_once('.')).map(|(id, _)| id.to_string()) else {
            continue;
        };
        let bytes = match primary.get(&meta.location).await {
            Ok(got) => got.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue, // finished meanwhile
            Err(e) => return Err(e.into()),
        };
        match serde_json::from_slice::<CheckpointInfo>(&bytes) {
            Ok(c) => by_id.entry(id).or_default().push((meta.location, c)),
            // An unreadable checkpoint protects nothing a resumed ingest could use (it restarts from scratch).
            Err(e) => tracing::warn!(checkpoint = %meta.location, error = %e, "unreadable checkpoint ignored"),
        }
    }
    for (id, objects) in by_id {
        if objects.iter().all(|(_, c)| c.expired(now)) {
            let version = objects[0].1.version.clone();
            expired.push((id, objects.into_iter().map(|(p, _)| p).collect(), version));
        } else {
            pinned.extend(objects.into_iter().map(|(_, c)| c.version));
        }
    }
    for root in &roots[1..] {
        if let Some(copy) = pointer::read(root.inner.as_ref(), ks).await? {
            pinned.insert(copy.pointer.version.clone());
            by_replica.insert(copy.pointer.version);
        }
    }
    Ok(Pins { pinned, by_replica, expired })
}

struct Pins {
    /// Versions unexpired checkpoints or replica pointer copies name.
    pinned: BTreeSet<String>,
    /// Of those, the ones a replica's pointer copy names (failover readers may hold them).
    by_replica: BTreeSet<String>,
    /// Expired checkpoints: id, their objects, and the version each names.
    expired: Vec<(String, Vec<Path>, String)>,
}

/// A version's objects under every root, and when the newest of them was written.
#[derive(Default)]
struct Found {
    objects: Vec<(usize, ObjectMeta, bool)>,
    newest: Option<SystemTime>,
    has_manifest: bool,
}

/// When `version` stopped being current (or, never published, when its newest object was written): the
/// pointer's history, or a bound for what history no longer reaches.
fn retired_at(p: &pointer::Pointer, version: &str, newest: SystemTime) -> SystemTime {
    let parse = |t: &str| humantime::parse_rfc3339(t).ok();
    match p.replaced_at(version).and_then(parse) {
        Some(t) => t.max(newest),
        None => match p.history_from.as_deref().and_then(parse) {
            Some(bound) => bound.max(newest),
            None => newest,
        },
    }
}

/// Marks gc tries, each on a pointer that moved to versions its listing lacks, before it gives up.
const MARK_TRIES: usize = 8;

/// gc of a keyspace that has no pointer yet (its first ingest was killed): only the staging files its
/// killed writes left in local roots (everything else waits for a pointer to decide on).
pub async fn collect_unpublished(roots: &[Store], ks: &str, opts: &GcOptions) -> GcReport {
    let swept = local_staging::sweep(roots, ks, opts.min_age, opts.dry_run).await;
    GcReport {
        staging_files_deleted: swept.files,
        staging_bytes_deleted: swept.bytes,
        dry_run: opts.dry_run,
        ..Default::default()
    }
}

/// Collects `ks` under `roots` (primary first, then every replica root).
///
/// gc decides on a listing, and a version published after it is not in it: neither its objects (which this
/// run then never deletes) nor the layers it stacks on. So the current and previous versions of the pointer
/// it decides on are read when the listing lacks them, and the layers they stack on are kept.
pub async fn collect(roots: &[Store], ks: &str, opts: &GcOptions) -> Result<GcReport> {
    let now = SystemTime::now();
    // First: what killed writes left needs nothing else gc reads (a keyspace whose first ingest was killed
    // has no pointer yet), and nothing gc decides.
    let swept = local_staging::sweep(roots, ks, opts.min_age, opts.dry_run).await;
    let primary = roots[0].inner.as_ref();
    let ks_dir = layout::keyspace_dir(ks);
    let Pins { pinned, by_replica, expired } = pins(roots, ks, now).await?;
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    let mut staged: Vec<(String, usize, ObjectMeta)> = Vec::new();
    for (i, root) in roots.iter().enumerate() {
        let objects: Vec<ObjectMeta> = root.inner.list(Some(&ks_dir)).try_collect().await?;
        for meta in objects {
            let (version, is_manifest) = match kind(ks_dir.as_ref(), &meta.location) {
                Kind::Manifest(v) => (v, true),
                Kind::Shard(v) => (v, false),
                Kind::Staged(v) => {
                    staged.push((v.clone(), i, meta.clone()));
                    (v, false)
                }
                Kind::Other => continue,
            };
            let f = found.entry(version).or_default();
            let written: SystemTime = meta.last_modified.into();
            f.newest = Some(f.newest.map_or(written, |n| n.max(written)));
            f.has_manifest |= is_manifest && i == 0;
            f.objects.push((i, meta, is_manifest));
        }
    }
    let newest_listed: BTreeSet<String> =
        found.iter().filter(|(_, f)| f.has_manifest).map(|(v, _)| v.clone()).rev().take(opts.keep).collect();
    let listed = found.iter().filter_map(|(v, f)| f.objects.iter().find(|o| o.2).map(|o| (v.clone(), o.0))).collect();
    let mut layers = gc_layers::of_listed(roots, ks, listed, DELETE_CONCURRENCY).await?;
    // Which versions go, judged on one pointer: gc marks them in that same pointer (or, dry, just reads it).
    let choose = |layers: &Layers, p: &pointer::Pointer| -> (Vec<String>, BTreeSet<String>) {
        let mut kept: BTreeSet<String> = pinned.iter().chain(&newest_listed).cloned().collect();
        kept.insert(p.version.clone());
        kept.extend(p.previous.clone());
        for (v, f) in &found {
            let age = now.duration_since(retired_at(p, v, f.newest.unwrap_or(now))).unwrap_or_default();
            if age < opts.min_age {
                kept.insert(v.clone());
            }
        }
        // A kept version keeps every layer it stacks on (and they theirs): its rollback needs them.
        let mut todo: Vec<String> = kept.iter().cloned().collect();
        while let Some(v) = todo.pop() {
            for l in layers.get(&v).into_iter().flatten().flatten() {
                if kept.insert(l.clone()) {
                    todo.push(l.clone());
                }
            }
        }
        let doomed = found.keys().filter(|v| !kept.contains(*v)).cloned().collect();
        (doomed, kept)
    };
    let read_current =
        || async { pointer::read(primary, ks).await?.ok_or_else(|| Error::KeyspaceNotFound(ks.to_string())) };
    // What gc decides on must be whole: the current version's manifest present, and every version it keeps
    // readable (else the layers those need are unknown).
    let decidable = |layers: &Layers, p: &pointer::Pointer| -> Result<()> {
        if !layers.contains_key(&p.version) {
            return Err(Error::Missing { path: layout::manifest_path(ks, &p.version) });
        }
        match choose(layers, p).1.iter().find(|v| matches!(layers.get(*v), Some(None))) {
            Some(v) => Err(Error::corrupt(
                &layout::manifest_path(ks, v),
                "a version gc must keep has an unreadable manifest, so the layers it needs are unknown; nothing \
                 was deleted (run `cairn repair`, or delete that version by hand)",
            )),
            None => Ok(()),
        }
    };
    let mut current = read_current().await?;
    add_unlisted(primary, ks, &current.pointer, &mut layers).await?;
    decidable(&layers, &current.pointer)?;
    let mut report = GcReport { dry_run: opts.dry_run, ..Default::default() };
    // Expired checkpoints go first: a run that took one over since must not be able to publish its version
    // once gc has decided to delete it, and its next checkpoint write (there is one right before every
    // pointer switch) fails once the checkpoint is gone.
    // A run that took such a checkpoint over may still write its version's objects after this run listed
    // them: the version stays marked (never publishable) for a later run to finish from a fresh listing.
    let stay_marked: BTreeSet<String> = expired.iter().map(|(_, _, v)| v.clone()).collect();
    for (id, paths, _) in expired {
        if !opts.dry_run {
            for path in paths {
                match primary.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        report.expired_checkpoints.push(id);
    }
    let mut doomed = Vec::new();
    if opts.dry_run {
        doomed = choose(&layers, &current.pointer).0;
    }
    for tries in 1..=if opts.dry_run { 0 } else { MARK_TRIES } {
        let moved = std::sync::atomic::AtomicBool::new(false);
        let picked = pointer::mark_collecting(primary, ks, |p| {
            let past = unlisted(&layers, p);
            moved.store(past, std::sync::atomic::Ordering::Relaxed);
            if past { Vec::new() } else { choose(&layers, p).0 }
        })
        .await?;
        if !moved.load(std::sync::atomic::Ordering::Relaxed) {
            doomed = picked;
            break;
        }
        if tries == MARK_TRIES {
            return Err(Error::ChangedWhileCollecting { keyspace: ks.to_string(), tries });
        }
        // Published since gc read the pointer: what the new versions stack on is read before marking again.
        current = read_current().await?;
        add_unlisted(primary, ks, &current.pointer, &mut layers).await?;
        decidable(&layers, &current.pointer)?;
    }
    // Versions an earlier run marked are finished too: a marked version can never be switched to, so neither
    // --keep nor --min-age nor a checkpoint protects it (its ingest starts a new version); only a replica's
    // pointer copy, which failover readers may follow, does.
    let (_, kept_now) = choose(&layers, &current.pointer);
    let unfinished = current.pointer.collecting.iter().filter(|v| !by_replica.contains(*v));
    let doomed: BTreeSet<String> =
        doomed.into_iter().chain(if opts.dry_run { Vec::new() } else { unfinished.cloned().collect() }).collect();
    report.kept_versions = found.keys().filter(|v| !doomed.contains(*v)).cloned().collect();
    report.young_objects_kept = found
        .iter()
        .filter(|(v, _)| kept_now.contains(*v) && !pinned.contains(*v) && !newest_listed.contains(*v))
        .filter(|(v, _)| **v != current.pointer.version && Some(*v) != current.pointer.previous.as_ref())
        .map(|(_, f)| f.objects.len())
        .sum();
    // Manifests first, under every root: a crash part-way leaves orphaned shard objects (collected next
    // time, the mark still in the pointer), never a listed version with missing shards. An object that cannot
    // be deleted keeps its version marked (and is reported); the others go on.
    // Deletes go out together, DELETE_CONCURRENCY at a time.
    let mut failed: BTreeMap<String, String> = BTreeMap::new();
    for manifests_pass in [true, false] {
        // Owned items: a stream of futures borrowing them is not Send for every lifetime.
        let batch: Vec<(String, Store, ObjectMeta)> = doomed
            .iter()
            // A version whose manifest stayed keeps its shards too.
            .filter(|v| !failed.contains_key(*v))
            .filter_map(|v| found.get(v).map(|f| (v, f)))
            .flat_map(|(v, f)| {
                f.objects
                    .iter()
                    .filter(|o| o.2 == manifests_pass)
                    .map(|(i, m, _)| (v.clone(), roots[*i].clone(), m.clone()))
            })
            .collect();
        let dry_run = opts.dry_run;
        let outcomes: Vec<(String, u64, Option<String>)> = futures::stream::iter(batch)
            .map(|(v, root, meta)| async move {
                let outcome = match dry_run {
                    true => Ok(()),
                    false => root.inner.delete(&meta.location).await,
                };
                match outcome {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => (v, meta.size, None),
                    Err(e) => (v, meta.size, Some(format!("{}: {e}", meta.location))),
                }
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        for (v, size, error) in outcomes {
            match error {
                Some(e) => {
                    failed.entry(v).or_insert(e);
                }
                None => {
                    report.objects_deleted += 1;
                    report.bytes_deleted += size;
                }
            }
        }
    }
    for v in current.pointer.collecting.iter().filter(|v| by_replica.contains(*v)) {
        failed.entry(v.clone()).or_insert_with(|| "still marked: a replica's pointer copy names it (repair)".into());
    }
    if !opts.dry_run && !doomed.is_empty() {
        let done: Vec<String> =
            doomed.iter().filter(|v| !failed.contains_key(*v) && !stay_marked.contains(*v)).cloned().collect();
        pointer::unmark_collecting(primary, ks, &done).await?;
    }
    report.deleted_versions =
        doomed.iter().filter(|v| found.contains_key(*v) && !failed.contains_key(*v)).cloned().collect();
    report.failed = failed.into_iter().map(|(v, why)| format!("{v}: {why}")).collect();
    // Staged runs of published versions that stay: their load wrote every shard before the manifest.
    for (v, i, meta) in staged {
        if doomed.contains(&v) || !found.get(&v).is_some_and(|f| f.has_manifest) {
            continue;
        }
        if !opts.dry_run {
            match roots[i].inner.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    report.failed.push(format!("{v}: {}: {e} (a staged run; the next run retries)", meta.location));
                    continue;
                }
            }
        }
        report.staged_runs_deleted += 1;
    }
    (report.staging_files_deleted, report.staging_bytes_deleted) = (swept.files, swept.bytes);
    Ok(report)
}
