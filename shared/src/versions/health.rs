//! Keyspace health for a store with no servers, Elasticsearch-style: per shard, how many copies are present
//! and intact. GREEN = every copy of every shard; YELLOW = every shard has at least one good copy; RED = some
//! shard has none. The default check is cheap (one HEAD per copy: presence and size); `deep` reads every copy
//! and verifies the manifest's checksum. Every root's copy of the manifest top level is checked too (one GET
//! each). repair.rs mends what this finds.

use futures::StreamExt;
use object_store::GetOptions;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{ErrorKind, Result};
use crate::format::checksum::ObjectRef;
use crate::format::layers::LayerRef;
use crate::format::layout;
use crate::format::manifest::{Manifest, ShardEntry, checksum_label, checksum_of};
use crate::stores::replicated::{FailoverConfig, ReplicatedStore, is_corrupt};
use crate::stores::url::Store;
use crate::versions::pointer;

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
    /// Each root's copy of the manifest top level: intact when it is the one the pointer vouches for (or,
    /// the pointer naming another version or carrying no checksum, when it parses as this version).
    pub manifest: Vec<CopyHealth>,
    pub shards: Vec<ShardHealth>,
    /// A layered version: the report of each older layer it stacks on, newest first (`status` is the worst
    /// of all).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<HealthReport>,
}

/// The whole manifest of every older layer `manifest` stacks on, newest first, each from the first root
/// holding a copy that matches what `manifest` records of it.
pub async fn older_layers(roots: &[Store], manifest: &Manifest) -> Result<Vec<Manifest>> {
    let mut out = Vec::with_capacity(manifest.layers.len());
    for layer in &manifest.layers {
        out.push(older_layer(roots, &manifest.keyspace, layer).await.map_err(|(_, e)| e)?);
    }
    Ok(out)
}

/// An older layer's whole manifest from the first root holding a copy that matches what the version
/// records of it; or, when no root does, what each root holds instead and the last root's error.
pub async fn older_layer(
    roots: &[Store],
    keyspace: &str,
    layer: &LayerRef,
) -> std::result::Result<Manifest, (Vec<CopyHealth>, crate::Error)> {
    let path = layout::manifest_path(keyspace, &layer.version);
    let mut copies = Vec::with_capacity(roots.len());
    let mut last_error = None;
    for root in roots {
        let (state, error) = match Manifest::read_with_ref(root.inner.as_ref(), keyspace, &layer.version).await {
            Ok((m, top)) if top == layer.manifest => return Ok(m),
            Ok((_, top)) => {
                (CopyState::Corrupt { checksum: top.checksum }, crate::Error::corrupt(&path, "not the layer listed"))
            }
            Err(e) => {
                // Only an absent top level is "missing"; a lost group or listing, or bytes that do not parse,
                // are told by the error itself.
                let state = match e.kind() {
                    ErrorKind::NotFound => CopyState::Missing,
                    _ => CopyState::Unreachable { error: e.to_string() },
                };
                (state, e)
            }
        };
        copies.push(CopyHealth { root: root.url.clone(), state });
        // A store that failed says nothing of the data: its error is the one returned.
        if !last_error.as_ref().is_some_and(|e: &crate::Error| e.kind() == ErrorKind::Unavailable) {
            last_error = Some(error);
        }
    }
    match read_across(roots, keyspace, layer).await {
        Ok(m) => Ok(m),
        // A store that failed now says nothing of the data either.
        Err(e) if e.kind() == ErrorKind::Unavailable => Err((copies, e)),
        Err(_) => Err((copies, last_error.expect("at least one root"))),
    }
}

/// Whether a copy's bytes are the ones expected.
type Check = Box<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// No root holds the whole of an older layer's manifest: read as readers read it, each part (top level,
/// input listing, groups) from the first root whose copy is the one expected (the top level: the checksum
/// the version records; the others: what the top level lists).
async fn read_across(roots: &[Store], keyspace: &str, layer: &LayerRef) -> Result<Manifest> {
    let across = ReplicatedStore::new(
        roots.iter().map(|r| r.inner.clone()).collect(),
        FailoverConfig { hedging: false, ..Default::default() },
    );
    let get = |path: Path, valid: Check| {
        let across = &across;
        async move {
            across.get_verified(&path, GetOptions::default(), &*valid).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => crate::Error::Missing { path },
                e if is_corrupt(&e) => crate::Error::corrupt(&path, format!("no copy is the one expected: {e}")),
                e => crate::Error::Store(e),
            })
        }
    };
    let path = layout::manifest_path(keyspace, &layer.version);
    let want = layer.manifest.clone();
    let top = get(path.clone(), Box::new(move |b| want.matches(b))).await?;
    let mut m = Manifest::parse(&path, &top)?;
    let expected = |bytes: u64, checksum: String| -> Check {
        Box::new(move |b| b.len() as u64 == bytes && checksum_of(b) == checksum)
    };
    if let Some(listing) = m.source.listing.take() {
        let bytes =
            get(layout::sources_path(keyspace, &layer.version), expected(listing.bytes, listing.checksum.clone()))
                .await?;
        m.source.files = m.parse_sources(&listing, &bytes)?;
    }
    if !m.groups.is_empty() {
        let mut shards = Vec::with_capacity(m.shards.len());
        for (g, want) in m.groups.iter().enumerate() {
            let bytes = get(m.group_path(g), expected(want.bytes, want.checksum.clone())).await?;
            shards.extend(m.parse_group(g, &bytes)?);
        }
        // Whole now, as `Manifest::read` leaves it.
        m.shards = shards;
        m.groups.clear();
    }
    Ok(m)
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
    let manifest_copies = check_manifest(roots, manifest, vouched.as_ref()).await;
    let manifest_good = manifest_copies.iter().filter(|c| c.state == CopyState::Ok).count();
    let status = if shards.iter().any(|s| s.good == 0) || manifest_good == 0 {
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

/// What the pointer of `manifest`'s keyspace vouches for its top level, when it names this version.
pub(crate) async fn vouched_top(roots: &[Store], manifest: &Manifest) -> Option<ObjectRef> {
    let current = pointer::read(roots[0].inner.as_ref(), &manifest.keyspace).await.ok().flatten()?;
    (current.pointer.version == manifest.version).then_some(current.pointer.manifest).flatten()
}

/// Whether `bytes` are an intact copy of `manifest`'s top level: the bytes `vouched` names, or without it,
/// a manifest of this keyspace and version.
pub(crate) fn intact_top(manifest: &Manifest, vouched: Option<&ObjectRef>, bytes: &[u8]) -> bool {
    match vouched {
        Some(r) => r.matches(bytes),
        None => Manifest::parse(&manifest.path(), bytes)
            .is_ok_and(|m| m.keyspace == manifest.keyspace && m.version == manifest.version),
    }
}

async fn check_manifest(roots: &[Store], manifest: &Manifest, vouched: Option<&ObjectRef>) -> Vec<CopyHealth> {
    let path = manifest.path();
    let mut out = Vec::with_capacity(roots.len());
    for root in roots {
        let state = match root.inner.get(&path).await {
            Ok(got) => match got.bytes().await {
                Ok(b) if intact_top(manifest, vouched, &b) => CopyState::Ok,
                Ok(b) => CopyState::Corrupt { checksum: checksum_of(&b) },
                Err(e) => CopyState::Unreachable { error: e.to_string() },
            },
            Err(object_store::Error::NotFound { .. }) => CopyState::Missing,
            Err(e) => CopyState::Unreachable { error: e.to_string() },
        };
        out.push(CopyHealth { root: root.url.clone(), state });
    }
    out
}
