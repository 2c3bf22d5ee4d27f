//! Keyspace health for a store with no servers, Elasticsearch-style: per shard, how many copies are present
//! and intact. GREEN = every copy of every shard; YELLOW = every shard has at least one good copy; RED = some
//! shard has none. The default check is cheap (one HEAD per copy: presence and size); `deep` reads every copy
//! and verifies the manifest's checksum. Every root's copy of the manifest is checked too: its top level (one
//! GET each) and every object that lists (groups, the input listing, a delta's key filter: a HEAD each, read
//! whole with `deep`), as readers fetch each of them from any root. repair.rs mends what this finds.

use futures::StreamExt;
use object_store::path::Path;
use serde::Serialize;

use crate::format::checksum::ObjectRef;
use crate::format::manifest::{Manifest, ShardEntry};
use crate::stores::url::Store;
use crate::versions::copies::check_object;
pub use crate::versions::copies::{CopyHealth, CopyState, object_checksum};
use crate::versions::manifest_copies::{check_manifest, older_layer, vouched_top};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Green,
    Yellow,
    Red,
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
    /// Each root's copy of the manifest top level: intact when it is the one the pointer vouches for (or,
    /// the pointer naming another version or carrying no checksum, when it parses as this version).
    pub manifest: Vec<CopyHealth>,
    pub shards: Vec<ShardHealth>,
    /// A layered version: the report of each older layer it stacks on, newest first (`status` is the worst
    /// of all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<HealthReport>,
}

/// [`check`] of a version and every layer it stacks on: as healthy as its worst layer. A layer whose
/// manifest no root holds intact is RED, its report listing what each root holds.
pub async fn check_version(roots: &[Store], manifest: &Manifest, deep: bool) -> HealthReport {
    let mut report = check(roots, manifest, deep).await;
    for layer in &manifest.layers {
        let r = match older_layer(roots, &manifest.keyspace, layer).await {
            // Its copies judged by the checksum the version records for it, as readers judge them.
            Ok(m) => check_vouched(roots, &m, deep, Some(layer.manifest.clone())).await,
            Err((copies, _)) => HealthReport {
                keyspace: manifest.keyspace.clone(),
                version: layer.version.clone(),
                status: Status::Red,
                deep,
                copies_per_shard: roots.len(),
                manifest: copies,
                shards: Vec::new(),
                layers: Vec::new(),
            },
        };
        report.status = report.status.max(r.status);
        report.layers.push(r);
    }
    report
}

async fn check_shard(roots: Vec<Store>, entry: ShardEntry, deep: bool) -> ShardHealth {
    let mut copies = Vec::with_capacity(roots.len());
    for root in &roots {
        copies.push(CopyHealth {
            root: root.url.clone(),
            state: check_object(root, &Path::from(entry.path.as_str()), entry.bytes, &entry.checksum, deep).await,
            part: None,
        });
    }
    let good = copies.iter().filter(|c| c.state == CopyState::Ok).count();
    ShardHealth { shard: entry.shard, good, copies }
}

/// Checks every copy of every shard of `manifest` under `roots` (primary first).
pub async fn check(roots: &[Store], manifest: &Manifest, deep: bool) -> HealthReport {
    check_vouched(roots, manifest, deep, vouched_top(roots, manifest).await).await
}

/// [`check`], with the manifest top level's intact copy named by `vouched` (the pointer's record for the
/// current version, the version's record for an older layer; without it, any copy that parses as this
/// version counts as intact).
pub async fn check_vouched(
    roots: &[Store],
    manifest: &Manifest,
    deep: bool,
    vouched: Option<ObjectRef>,
) -> HealthReport {
    // Owned inputs per task: borrowing into the futures trips the Send-ness of callers' futures (axum).
    let shards: Vec<ShardHealth> = futures::stream::iter(manifest.shards.clone())
        .map(|entry| {
            let roots = roots.to_vec();
            async move { check_shard(roots, entry, deep).await }
        })
        .buffered(16)
        .collect()
        .await;
    let (manifest_copies, readable) = check_manifest(roots, manifest, vouched.as_ref(), deep).await;
    let manifest_good = manifest_copies.iter().filter(|c| c.state == CopyState::Ok).count();
    let status = if shards.iter().any(|s| s.good == 0) || !readable {
        Status::Red
    } else if shards.iter().all(|s| s.good == roots.len()) && manifest_good == roots.len() {
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
        manifest: manifest_copies,
        shards,
        layers: Vec::new(),
    }
}
