//! Keyspace health for a store with no servers, Elasticsearch-style: per shard, how many copies are present
//! and intact. GREEN = every copy of every shard; YELLOW = every shard has at least one good copy; RED = some
//! shard has none. The default check is cheap (one HEAD per copy: presence and size); `deep` reads every copy
//! and verifies the manifest's checksum. [`repair`] re-copies missing or corrupt copies from a good one, and
//! rewrites replica roots' manifest and pointer copies that are missing or lag the primary.

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt, PutPayload};
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::checksum::ObjectRef;
use crate::error::Result;
use crate::layout;
use crate::manifest::{Manifest, ShardEntry, checksum_label, checksum_of};
use crate::pointer;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Green,
    Yellow,
    Red,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CopyState {
    Ok,
    Missing,
    WrongSize { bytes: u64 },
    Corrupt { checksum: String },
    Unreachable { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct CopyHealth {
    pub root: String,
    #[serde(flatten)]
    pub state: CopyState,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShardHealth {
    pub shard: u32,
    pub good: usize,
    pub copies: Vec<CopyHealth>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub keyspace: String,
    pub version: String,
    pub status: Status,
    pub deep: bool,
    pub copies_per_shard: usize,
    pub shards: Vec<ShardHealth>,
}

/// `xxh3-64:<hex>` of a whole object, streamed.
pub async fn object_checksum(store: &Store, path: &Path) -> Result<String> {
    let mut stream = store.inner.get(path).await?.into_stream();
    let mut h = Xxh3::new();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk?);
    }
    Ok(checksum_label(h.digest()))
}

async fn check_copy(root: &Store, entry: &ShardEntry, deep: bool) -> CopyState {
    let path = Path::from(entry.path.as_str());
    match root.inner.head(&path).await {
        Ok(meta) if meta.size != entry.bytes => return CopyState::WrongSize { bytes: meta.size },
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return CopyState::Missing,
        Err(e) => return CopyState::Unreachable { error: e.to_string() },
    }
    if !deep {
        return CopyState::Ok;
    }
    match object_checksum(root, &path).await {
        Ok(sum) if sum == entry.checksum => CopyState::Ok,
        Ok(sum) => CopyState::Corrupt { checksum: sum },
        Err(e) => CopyState::Unreachable { error: e.to_string() },
    }
}

async fn check_shard(roots: Vec<Store>, entry: ShardEntry, deep: bool) -> ShardHealth {
    let mut copies = Vec::with_capacity(roots.len());
    for root in &roots {
        copies.push(CopyHealth { root: root.url.clone(), state: check_copy(root, &entry, deep).await });
    }
    let good = copies.iter().filter(|c| c.state == CopyState::Ok).count();
    ShardHealth { shard: entry.shard, good, copies }
}

/// Checks every copy of every shard of `manifest` under `roots` (primary first).
pub async fn check(roots: &[Store], manifest: &Manifest, deep: bool) -> HealthReport {
    // Owned inputs per task: borrowing into the futures trips the Send-ness of callers' futures (axum).
    let shards: Vec<ShardHealth> = futures::stream::iter(manifest.shards.clone())
        .map(|entry| {
            let roots = roots.to_vec();
            async move { check_shard(roots, entry, deep).await }
        })
        .buffered(16)
        .collect()
        .await;
    let status = if shards.iter().any(|s| s.good == 0) {
        Status::Red
    } else if shards.iter().all(|s| s.good == roots.len()) {
        Status::Green
    } else {
        Status::Yellow
    };
    HealthReport {
        keyspace: manifest.keyspace.clone(),
        version: manifest.version.clone(),
        status,
        deep,
        copies_per_shard: roots.len(),
        shards,
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    pub copied: usize,
    /// Replica roots' manifest or pointer copies written (missing, unreadable, or naming another version).
    pub metadata_copied: usize,
    /// Shards with no good copy left: nothing to copy from (re-ingest or roll back).
    pub unrecoverable: Vec<u32>,
}

/// Re-copies every missing, wrong-size or corrupt copy from a copy whose checksum matches the manifest.
/// Idempotent; readers are unaffected (objects are immutable and replaced whole, never partially visible).
pub async fn repair(roots: &[Store], manifest: &Manifest) -> Result<RepairReport> {
    let report = check(roots, manifest, true).await;
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
    let current = pointer::read(roots[0].inner.as_ref(), ks).await?.filter(|c| c.pointer.version == manifest.version);
    let vouched = current.as_ref().and_then(|c| c.pointer.manifest.clone());
    out.metadata_copied += repair_manifest(roots, manifest, vouched.as_ref()).await?;
    if let Some(cur) = &current {
        for root in &roots[1..] {
            let copy = pointer::read(root.inner.as_ref(), ks).await.ok().flatten().map(|c| c.pointer);
            if copy.as_ref() != Some(&cur.pointer) {
                pointer::copy(root.inner.as_ref(), ks, &cur.pointer).await?;
                out.metadata_copied += 1;
            }
        }
    }
    Ok(out)
}

/// Gives every root an intact copy of `manifest`'s top level and groups, copied byte for byte from a root
/// whose top level is the one `vouched` names (the pointer's; without it, the primary's or else one that
/// parses as this version). Returns the roots written.
async fn repair_manifest(roots: &[Store], manifest: &Manifest, vouched: Option<&ObjectRef>) -> Result<usize> {
    use futures::TryStreamExt;
    let path = manifest.path();
    let mut tops = Vec::with_capacity(roots.len());
    for root in roots {
        tops.push(match root.inner.get(&path).await {
            Ok(got) => Some(got.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        });
    }
    let intact = |b: &[u8]| match vouched {
        Some(r) => r.matches(b),
        None => {
            Manifest::parse(&path, b).is_ok_and(|m| m.keyspace == manifest.keyspace && m.version == manifest.version)
        }
    };
    let Some(good) = tops.iter().position(|t| t.as_deref().is_some_and(intact)) else {
        return Ok(0); // no intact copy anywhere: nothing to copy from (`cairn health` reports the version)
    };
    let top = tops[good].clone().expect("found");
    let groups: Vec<ObjectMeta> =
        roots[good].inner.list(Some(&layout::groups_dir(&manifest.keyspace, &manifest.version))).try_collect().await?;
    let mut written = 0;
    for (i, root) in roots.iter().enumerate() {
        let mut fixed = false;
        for g in &groups {
            match root.inner.head(&g.location).await {
                Ok(meta) if meta.size == g.size => continue,
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            let body = roots[good].inner.get(&g.location).await?.bytes().await?;
            root.inner.put(&g.location, PutPayload::from(body)).await?;
            fixed = true;
        }
        if tops[i].as_ref() != Some(&top) {
            root.inner.put(&path, PutPayload::from(top.clone())).await?;
            fixed = true;
        }
        written += fixed as usize;
    }
    Ok(written)
}
