//! Deletes the versions of a keyspace nobody should read any more, under every root: their manifests first
//! (so a half-collected version is never offered to `cairn rollback` or `cairn versions`), then their shard
//! objects. Shard objects of ingests that crashed and were never resumed go the same way.
//!
//! Kept: the current version and the one it replaced (the default rollback target), the `keep` newest
//! versions, every version an unfinished ingest's checkpoint names (it may still be resumed), every version
//! a replica's pointer copy names, and any object younger than `min_age` (an ingest writing its first
//! shards, or a version published moments ago). Objects it does not recognise are never touched.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::{layout, manifest, pointer};

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
    /// Objects of collectable versions left because they are younger than `min_age`.
    pub young_objects_kept: usize,
    pub dry_run: bool,
}

/// What an object under `keyspace=<ks>/` is, for collection.
enum Kind {
    Manifest(String),
    Shard(String),
    Other,
}

fn kind(ks_dir: &str, path: &Path) -> Kind {
    let rel = path.as_ref().strip_prefix(ks_dir).and_then(|r| r.strip_prefix('/')).unwrap_or("");
    let mut parts = rel.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("manifests"), Some(f), None) => f.strip_suffix(".json").map_or(Kind::Other, |v| Kind::Manifest(v.into())),
        (Some(dir), Some(f), None) if dir.starts_with("shard=") => {
            f.strip_suffix(".parquet").map_or(Kind::Other, |v| Kind::Shard(v.into()))
        }
        _ => Kind::Other,
    }
}

/// Versions that must stay, read from the primary root (pointer, manifests, checkpoints) and replicas
/// (their pointer copies).
async fn versions_to_keep(roots: &[Store], ks: &str, keep: usize) -> Result<BTreeSet<String>> {
    let primary = roots[0].inner.as_ref();
    let current = pointer::read(primary, ks).await?.ok_or_else(|| Error::KeyspaceNotFound(ks.to_string()))?;
    let mut kept: BTreeSet<String> = current.pointer.previous.into_iter().collect();
    kept.insert(current.pointer.version);
    let versions = manifest::list_versions(primary, ks).await?;
    kept.extend(versions.iter().rev().take(keep).cloned());
    let checkpoints: Vec<ObjectMeta> =
        primary.list(Some(&Path::from(format!("{}/_ingest", layout::keyspace_dir(ks))))).try_collect().await?;
    for meta in checkpoints {
        #[derive(serde::Deserialize)]
        struct Named {
            version: String,
        }
        let bytes = primary.get(&meta.location).await?.bytes().await?;
        match serde_json::from_slice::<Named>(&bytes) {
            Ok(c) => {
                kept.insert(c.version);
            }
            // An unreadable checkpoint protects nothing a resumed ingest could use (it restarts from scratch).
            Err(e) => tracing::warn!(checkpoint = %meta.location, error = %e, "unreadable checkpoint ignored"),
        }
    }
    for root in &roots[1..] {
        if let Some(copy) = pointer::read(root.inner.as_ref(), ks).await? {
            kept.insert(copy.pointer.version);
        }
    }
    Ok(kept)
}

/// Collects `ks` under `roots` (primary first, then every replica root).
pub async fn collect(roots: &[Store], ks: &str, opts: &GcOptions) -> Result<GcReport> {
    let kept = versions_to_keep(roots, ks, opts.keep).await?;
    let now = SystemTime::now();
    let ks_dir = layout::keyspace_dir(ks);
    let mut report =
        GcReport { kept_versions: kept.iter().cloned().collect(), dry_run: opts.dry_run, ..Default::default() };
    let mut deleted = BTreeSet::new();
    for root in roots {
        let objects: Vec<ObjectMeta> = root.inner.list(Some(&ks_dir)).try_collect().await?;
        let (mut manifests, mut shards) = (Vec::new(), Vec::new());
        for meta in objects {
            let (version, list) = match kind(ks_dir.as_ref(), &meta.location) {
                Kind::Manifest(v) => (v, &mut manifests),
                Kind::Shard(v) => (v, &mut shards),
                Kind::Other => continue,
            };
            if kept.contains(&version) {
                continue;
            }
            let age = now.duration_since(meta.last_modified.into()).unwrap_or_default();
            if age < opts.min_age {
                report.young_objects_kept += 1;
                continue;
            }
            list.push(meta);
            deleted.insert(version);
        }
        // Manifests first: a crash part-way leaves orphaned shard objects (collected next time), never a
        // listed version with missing shards.
        for meta in manifests.iter().chain(&shards) {
            if !opts.dry_run {
                match root.inner.delete(&meta.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            report.objects_deleted += 1;
            report.bytes_deleted += meta.size;
        }
    }
    report.deleted_versions = deleted.into_iter().collect();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_manifests_and_shard_objects_are_recognised() {
        let dir = "keyspace=ks";
        let v = |p: &str| match kind(dir, &Path::from(p)) {
            Kind::Manifest(v) => format!("m:{v}"),
            Kind::Shard(v) => format!("s:{v}"),
            Kind::Other => "other".into(),
        };
        assert_eq!(v("keyspace=ks/manifests/v1.json"), "m:v1");
        assert_eq!(v("keyspace=ks/shard=00003/v1.parquet"), "s:v1");
        for other in [
            "keyspace=ks/CURRENT",
            "keyspace=ks/_ingest/x.json",
            "keyspace=ks/shard=00003/v1.tmp",
            "keyspace=ks/notes/a/b",
        ] {
            assert_eq!(v(other), "other", "{other}");
        }
    }
}
