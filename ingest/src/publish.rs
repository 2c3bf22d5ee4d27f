//! Publishing a version whose shard objects are all written: its manifest under every root, then the one
//! conditional pointer switch, then the pointer's copies on the replicas. `cairn ingest` and external
//! builds (Spark, through the Python package) both publish here. Also what happens to a version that will
//! never be published: [`discard`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_shared::format::manifest::{Manifest, ShardEntry, Source};
use cairn_shared::stores::Store;
use cairn_shared::versions::replica_pointer;
use cairn_shared::{format::layout, versions::pointer};

use crate::checkpoint::Owned;
use crate::error::IngestError;
use crate::progress::Progress;
use crate::shard_object::VersionTarget;

/// The manifest of `target`'s version listing `entries` (one per shard, in shard order), created when its
/// checkpoint was (`created_at`): the same bytes whichever run publishes the version, so a run that lost
/// its checkpoint and writes the manifest late writes what the pointer's checksum already names.
pub fn manifest_for(
    target: &VersionTarget,
    format: u32,
    source: Source,
    entries: Vec<ShardEntry>,
    created_at: &str,
) -> Manifest {
    Manifest {
        format,
        keyspace: target.keyspace.clone(),
        version: target.version.clone(),
        created_at: created_at.to_string(),
        placement: target.placement.clone(),
        replicas: target.roots[1..].to_vec(),
        primary: target.roots.first().cloned(),
        source,
        rows: entries.iter().map(|e| e.rows).sum(),
        bytes: entries.iter().map(|e| e.bytes).sum(),
        shards: entries,
        groups: vec![],
        delta: None,
        layers: vec![],
    }
}

/// Publishes `manifest` over `base` while this job owns the version's checkpoint (`owned`), then releases
/// the checkpoint. `rerun` tells the user what to do when the outcome cannot be learnt.
pub async fn publish_version(
    roots: &[Store],
    owned: &tokio::sync::Mutex<Owned>,
    stop: &AtomicBool,
    progress: &Arc<dyn Progress>,
    manifest: &Manifest,
    base: Option<&str>,
    rerun: &str,
) -> Result<(), IngestError> {
    let primary = roots[0].inner.as_ref();
    let ks = &manifest.keyspace;
    // Still the owner before writing the manifest: a run that lost its checkpoint (to a takeover, or to gc
    // expiring it) must not list a version whose shards gc may be deleting.
    if stop.load(Ordering::Relaxed) {
        return Err(IngestError::Invalid("the ingest was stopped (its checkpoint was taken over)".into()));
    }
    let lease = owned.lock().await.lease();
    lease.renew(primary).await?;
    let mut top = None;
    for root in roots {
        top = Some(manifest.write(root.inner.as_ref()).await?);
    }
    // Still the owner right before the switch: a run that took the checkpoint over since now decides.
    lease.renew(primary).await?;
    let published = match switch(primary, ks, &manifest.version, top, base).await {
        Published::Yes(p) => p,
        Published::Lost(seen) => {
            discard(roots, owned, progress, None).await;
            return Err(cairn_shared::Error::Conflict { keyspace: ks.clone(), expected: seen }.into());
        }
        Published::Collected => {
            return Err(IngestError::Invalid(format!(
                "version {} is being deleted by gc (its checkpoint had expired, or a gc run marked it); nothing was published. \
                 Rerun: it starts a new version",
                manifest.version
            )));
        }
        Published::Unknown(why) => {
            return Err(IngestError::OutcomeUnknown(format!(
                "could not tell whether version {} was published ({why}); nothing was deleted. {rerun}",
                manifest.version
            )));
        }
    };
    // Published. Replicas get a copy of the pointer for readers whose primary is down; a failed copy only
    // leaves that replica's readers on the previous version (logged; the next publish or rollback rewrites it).
    replica_pointer::copy_to_replicas(&roots[1..], ks, &published).await;
    stop.store(true, Ordering::Relaxed);
    // Published: a checkpoint left behind only makes a rerun report the publish (and gc expires it).
    if let Err(e) = owned.lock().await.release(primary).await {
        tracing::warn!(error = %e, "published, but the checkpoint could not be removed");
    }
    Ok(())
}

/// What the pointer switch came to.
enum Published {
    Yes(pointer::Pointer),
    /// Someone else published first (the version the pointer named instead).
    Lost(Option<String>),
    /// gc marked the version for deletion: it can never be published.
    Collected,
    /// No answer, and nothing read since tells: everything stays for a rerun.
    Unknown(String),
}

/// Switches the pointer from `base` to `version`. A conflict or an unanswered write is judged by reading the
/// pointer again: a write of ours that applied (its response lost, or a retry answered 412) shows as our
/// version in it or in its history; a change of gc's marks alone is retried.
async fn switch(
    primary: &dyn object_store::ObjectStore,
    ks: &str,
    version: &str,
    top: Option<pointer::ObjectRef>,
    base: Option<&str>,
) -> Published {
    let mut attempted = None;
    let started = std::time::SystemTime::now();
    for _ in 0..8 {
        let cur = match pointer::read(primary, ks).await {
            Ok(c) => c,
            Err(e) if attempted.is_none() => return Published::Unknown(format!("the pointer could not be read: {e}")),
            Err(e) => {
                return Published::Unknown(format!(
                    "{}; then the pointer could not be read: {e}",
                    attempted.unwrap_or_default()
                ));
            }
        };
        if let Some(c) = &cur
            && c.pointer.was_current(version)
        {
            return Published::Yes(c.pointer.clone());
        }
        let seen = cur.as_ref().map(|c| c.pointer.version.clone());
        if seen.as_deref() != base {
            // Our own earlier write can only be ruled out while the pointer's history reaches back to it.
            let reaches_back = cur.as_ref().is_none_or(|c| history_reaches_back(&c.pointer, started));
            return match &attempted {
                Some(why) if !reaches_back => Published::Unknown(format!("{why}; the pointer has moved on since")),
                _ => Published::Lost(seen),
            };
        }
        match pointer::switch(primary, ks, version, top.clone(), cur.as_ref()).await {
            Ok(p) => return Published::Yes(p),
            Err(cairn_shared::Error::Conflict { .. }) => {
                attempted.get_or_insert_with(|| "the conditional pointer write was refused".to_string());
            }
            Err(cairn_shared::Error::Collecting { .. }) => return Published::Collected,
            Err(e) => attempted = Some(format!("the pointer write got no clear answer: {e}")),
        }
    }
    Published::Unknown(attempted.unwrap_or_default())
}

/// How far apart the clocks of the hosts switching one keyspace's pointer may be: its history's times are
/// theirs.
const CLOCK_SKEW: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether `p`'s history lists every version replaced since `since` (so a version of ours that became
/// current since and was replaced would be in it). A history cut before then, by more than the clocks may
/// differ, still does: the cut is for good, but it only drops versions replaced before it.
fn history_reaches_back(p: &pointer::Pointer, since: std::time::SystemTime) -> bool {
    p.history_from.as_deref().is_none_or(|from| {
        humantime::parse_rfc3339(from).is_ok_and(|from| from.checked_add(CLOCK_SKEW).is_some_and(|f| f <= since))
    })
}

/// Removes a version this run wrote and did not publish: its manifests under every root first (so a listed
/// version never lacks shards), then its shard objects, then the checkpoint. Only while this run owns the
/// checkpoint, never a version any pointer (primary or replica copy) names as current or previous or in its
/// history, and behind gc's mark in the pointer so a rollback cannot switch to it meanwhile. Anything it
/// cannot prove safe it leaves (gc collects it later) and says so.
///
/// `every_shard`: delete each of the version's `n` shard paths, not only those the checkpoint lists (an
/// external build, whose writers report their shards only at the end).
pub async fn discard(
    roots: &[Store],
    owned: &tokio::sync::Mutex<Owned>,
    progress: &Arc<dyn Progress>,
    every_shard: Option<u32>,
) {
    let o = owned.lock().await;
    let (ks, version) = (o.ckpt.keyspace.clone(), o.ckpt.version.clone());
    let leave = |why: String| progress.note(&format!("left version {version} in place for gc: {why}"));
    if let Err(e) = o.lease().renew(roots[0].inner.as_ref()).await {
        return leave(e.to_string());
    }
    for root in roots {
        match pointer::read(root.inner.as_ref(), &ks).await {
            Ok(Some(c)) if c.pointer.was_current(&version) => return leave(format!("{} names it", root.url)),
            Ok(_) => {}
            Err(e) => return leave(format!("the pointer of {} could not be read: {e}", root.url)),
        }
    }
    let primary = roots[0].inner.as_ref();
    match pointer::mark_collecting(primary, &ks, |_| vec![version.clone()]).await {
        Ok(marked) if marked.is_empty() && pointer::read(primary, &ks).await.ok().flatten().is_some() => {
            return leave("the pointer names it".into());
        }
        Ok(_) => {}
        Err(e) => return leave(format!("could not mark it in the pointer: {e}")),
    }
    let manifest = layout::manifest_path(&ks, &version);
    let shards: Vec<object_store::path::Path> = match every_shard {
        Some(n) => (0..n).map(|s| layout::shard_path(&ks, s, &version)).collect(),
        None => o.ckpt.done.values().map(|e| e.path.as_str().into()).collect(),
    };
    // A grouped manifest's groups go after it and before the shards, as gc takes them.
    let mut groups = std::collections::BTreeSet::new();
    for root in roots {
        use futures::TryStreamExt;
        match root.inner.list(Some(&layout::groups_dir(&ks, &version))).try_collect::<Vec<_>>().await {
            Ok(found) => groups.extend(found.into_iter().map(|m| m.location)),
            Err(e) => return leave(format!("listing its manifest groups under {}: {e}", root.url)),
        }
    }
    // The manifest under every root first; then the rest, together.
    for batch in [vec![manifest], groups.into_iter().chain(shards).collect()] {
        for root in roots {
            if let Err(e) = delete_all(root, batch.clone()).await {
                return leave(format!("deleting its objects under {}: {e}", root.url));
            }
        }
    }
    if let Err(e) = pointer::unmark_collecting(primary, &ks, std::slice::from_ref(&version)).await {
        tracing::warn!(error = %e, "could not clear the pointer's mark of a discarded version (gc clears it)");
    }
    if let Err(e) = o.release(primary).await {
        tracing::warn!(error = %e, "could not remove the checkpoint of a discarded version");
    }
}

/// Deletes `paths` (missing ones are fine) with the store's batched deletes (S3: up to 1,000 a request),
/// stopping at the first failure.
pub async fn delete_all(root: &Store, paths: Vec<object_store::path::Path>) -> Result<(), object_store::Error> {
    use futures::StreamExt;
    let mut results = root.inner.delete_stream(futures::stream::iter(paths.into_iter().map(Ok)).boxed());
    while let Some(r) = results.next().await {
        match r {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_shared::format::ring::PlacementSpec;

    /// Two runs publishing one version (one of them late, having lost its checkpoint) write the same bytes:
    /// the checksum the pointer holds still names what is stored.
    #[test]
    fn a_version_has_one_manifest_whoever_writes_it() {
        let target = VersionTarget {
            delta: false,
            keyspace: "ks".into(),
            version: layout::new_version(),
            placement: PlacementSpec::jump(1),
            roots: vec!["memory://x".into()],
        };
        let source = Source::new("xxh3-64:0".into(), vec!["a".into()]);
        let manifest = |_: u32| manifest_for(&target, 3, source.clone(), Vec::new(), "2026-12-05T00:00:00.000Z");
        let first = serde_json::to_vec(&manifest(0)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(serde_json::to_vec(&manifest(1)).unwrap(), first);
    }
}
