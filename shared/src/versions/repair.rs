//! `cairn repair`: re-copies missing, wrong-size or corrupt shard copies from a copy whose checksum matches
//! the manifest, gives every root an intact copy of the manifest (top level and groups, byte for byte), and
//! rewrites replica roots' pointer copies that are missing or lag the primary. Idempotent; readers are
//! unaffected (objects are immutable and replaced whole, never partially visible).

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::error::Result;
use crate::format::checksum::{ObjectRef, checksum_of};
use crate::format::manifest::Manifest;
use crate::stores::url::Store;
use crate::versions::copies::CopyState;
use crate::versions::health::check_vouched;
use crate::versions::manifest_copies::{intact_top, manifest_parts, vouched_top};
use crate::versions::replica_pointer;

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub copied: usize,
    /// Replica roots' manifest or pointer copies written (missing, unreadable, or naming another version).
    pub metadata_copied: usize,
    /// Shards with no good copy left: nothing to copy from (re-ingest or roll back).
    pub unrecoverable: Vec<u32>,
    /// No root holds an intact copy of the manifest's top level or of an object it lists (a group, the input
    /// listing, a delta's key filter): re-ingest or roll back.
    pub manifest_unrecoverable: bool,
}

/// Repairs `manifest`'s version under `roots` (primary first).
pub async fn repair(roots: &[Store], manifest: &Manifest) -> Result<RepairReport> {
    repair_vouched(roots, manifest, vouched_top(roots, manifest).await).await
}

/// [`repair`] of a version's older layer: its manifest copies judged by the checksum the version records
/// for it (`vouched`), so a copy that merely parses is never copied over the intact one.
pub async fn repair_layer(roots: &[Store], layer: &Manifest, vouched: &ObjectRef) -> Result<RepairReport> {
    repair_vouched(roots, layer, Some(vouched.clone())).await
}

async fn repair_vouched(roots: &[Store], manifest: &Manifest, vouched: Option<ObjectRef>) -> Result<RepairReport> {
    let report = check_vouched(roots, manifest, true, vouched.clone()).await;
    let mut out = RepairReport::default();
    for shard in &report.shards {
        if shard.good == roots.len() {
            continue;
        }
        let entry = &manifest.shards[shard.shard as usize];
        let Some(source) = shard.copies.iter().position(|c| c.state == CopyState::Ok) else {
            out.unrecoverable.push(shard.shard);
            continue;
        };
        let path = Path::from(entry.path.as_str());
        let bytes = roots[source].inner.get(&path).await?.bytes().await?;
        let sum = checksum_of(&bytes);
        if sum != entry.checksum {
            out.unrecoverable.push(shard.shard); // changed under us; the next run re-checks
            continue;
        }
        for (i, copy) in shard.copies.iter().enumerate() {
            if copy.state != CopyState::Ok {
                roots[i].inner.put(&path, PutPayload::from(bytes.clone())).await?;
                out.copied += 1;
            }
        }
    }
    // What readers fall back to when a root is down or damaged: each root's manifest copy (byte for byte a
    // copy the pointer vouches for), and each replica's pointer copy while `manifest` is the current version.
    let ks = &manifest.keyspace;
    let (written, whole) = repair_manifest(roots, manifest, vouched.as_ref()).await?;
    out.metadata_copied += written;
    out.manifest_unrecoverable = !whole;
    for root in &roots[1..] {
        if replica_pointer::align(roots[0].inner.as_ref(), root.inner.as_ref(), ks, &manifest.version).await? {
            out.metadata_copied += 1;
        }
    }
    Ok(out)
}

/// Gives every root an intact copy of `manifest`'s top level and of every object it lists, copied byte for
/// byte from roots whose copies are intact: the top level the one `vouched` names (the pointer's; without it,
/// one that parses as this version), each part the one that top level lists (size and checksum). Returns the
/// roots written, and whether every part has an intact copy somewhere (the others are mended either way).
async fn repair_manifest(roots: &[Store], manifest: &Manifest, vouched: Option<&ObjectRef>) -> Result<(usize, bool)> {
    let path = manifest.path();
    let tops = read_all(roots, &path).await?;
    let Some(top) = tops.iter().flatten().find(|t| intact_top(manifest, vouched, t)).cloned() else {
        return Ok((0, false));
    };
    let listed = Manifest::parse(&path, &top)?;
    let (mut fixed, mut whole) = (vec![false; roots.len()], true);
    // Groups (the input listing, a delta's key filter) first: a reader that finds the top level finds every object it lists.
    for part in manifest_parts(&listed) {
        let copies = read_all(roots, &part.path).await?;
        let intact = |b: &[u8]| b.len() as u64 == part.bytes && checksum_of(b) == part.checksum;
        let Some(good) = copies.iter().flatten().find(|c| intact(c)).cloned() else {
            whole = false;
            continue;
        };
        for (i, copy) in copies.iter().enumerate() {
            if !copy.as_deref().is_some_and(intact) {
                roots[i].inner.put(&part.path, PutPayload::from(good.clone())).await?;
                fixed[i] = true;
            }
        }
    }
    for (i, copy) in tops.iter().enumerate() {
        if copy.as_ref() != Some(&top) {
            roots[i].inner.put(&path, PutPayload::from(top.clone())).await?;
            fixed[i] = true;
        }
    }
    Ok((fixed.into_iter().filter(|f| *f).count(), whole))
}

/// Each root's bytes at `path` (None where it has none).
async fn read_all(roots: &[Store], path: &Path) -> Result<Vec<Option<bytes::Bytes>>> {
    let mut out = Vec::with_capacity(roots.len());
    for root in roots {
        out.push(match root.inner.get(path).await {
            Ok(got) => Some(got.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        });
    }
    Ok(out)
}
