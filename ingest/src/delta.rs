//! Publishing a delta layer (`cairn ingest --delta`, `cairn delete`): the version it stacks on, the
//! placement it nests in, its key filter object, and the manifest that lists the older layers.

use cairn_shared::format::checksum::{ObjectRef, block_checksum};
use cairn_shared::format::key_filter::{KeyFilter, LayerFilter};
use cairn_shared::format::layers::{DeltaInfo, LayerRef, MAX_LAYERS};
use cairn_shared::format::layout;
use cairn_shared::format::manifest::{LAYERED_FORMAT, Manifest, ShardEntry};
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer::Current;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectStoreExt, PutPayload};

use crate::error::IngestError;

/// The version a delta is published over.
#[derive(Debug, Clone)]
pub struct DeltaBase {
    /// Its manifest top level.
    pub manifest: Manifest,
    /// What a layer reference records of that top level.
    pub top: ObjectRef,
}

impl DeltaBase {
    /// The current version of `ks` (None: the keyspace has none, and a delta is a first full ingest).
    pub async fn read(primary: &Store, ks: &str, current: Option<&Current>) -> Result<Option<DeltaBase>, IngestError> {
        let Some(current) = current else { return Ok(None) };
        let version = &current.pointer.version;
        let (manifest, top) = Manifest::read_top_ref(primary.inner.as_ref(), ks, version).await?;
        if current.pointer.manifest.as_ref().is_some_and(|want| *want != top) {
            return Err(IngestError::Invalid(format!(
                "the manifest of {ks}/{version} is not the one its pointer names (checksum mismatch); run \
                 `cairn health -k {ks}`"
            )));
        }
        Ok(Some(DeltaBase { manifest, top }))
    }

    /// Refuses a delta that would give the version more than `max_layers` layers (at most [`MAX_LAYERS`],
    /// what readers accept).
    pub fn check_layers(&self, max_layers: usize) -> Result<(), IngestError> {
        let (ks, version) = (&self.manifest.keyspace, &self.manifest.version);
        let max_layers = max_layers.min(MAX_LAYERS);
        let layers = self.manifest.layers.len() + 1;
        if layers + 1 > max_layers {
            return Err(IngestError::Invalid(format!(
                "keyspace {ks:?} has {layers} layers (version {version}); a delta would make {}, more than \
                 --max-layers {max_layers}. Run `cairn compact -k {ks}` first (or pass --compact to compact \
                 before publishing the delta)",
                layers + 1
            )));
        }
        Ok(())
    }

    /// The roots a delta over this version is written to: the same as its layers' (a reader failing over to
    /// a replica must find every layer there). `given` empty takes them; others are refused.
    pub fn roots(&self, primary: &Store, given: &[Store]) -> Result<Vec<Store>, IngestError> {
        let want = self.manifest.replicas_besides(&primary.url);
        if given.is_empty() {
            let replicas = want.iter().map(|u| Store::open(u)).collect::<Result<Vec<_>, _>>()?;
            return Ok(std::iter::once(primary.clone()).chain(replicas).collect());
        }
        let urls: Vec<&String> = given.iter().map(|s| &s.url).collect();
        if urls.len() != want.len() || want.iter().any(|u| !urls.contains(u)) {
            return Err(IngestError::Invalid(format!(
                "a delta is written to the roots of the layers under it ({}); --replicas names {}",
                if want.is_empty() {
                    "no replicas".to_string()
                } else {
                    want.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
                },
                urls.iter().map(|u| u.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(std::iter::once(primary.clone()).chain(given.iter().cloned()).collect())
    }

    /// The delta's placement: `shards` ranges of the base layer's shards (at most the base's count).
    pub fn placement(&self, shards: u32) -> Result<PlacementSpec, IngestError> {
        let base = self.manifest.placement.base();
        if shards > base.shards() {
            return Err(IngestError::Invalid(format!(
                "a delta over {} shards can have at most that many (--shards {shards})",
                base.shards()
            )));
        }
        Ok(base.nested(shards))
    }

    /// The layers a version stacking on this one lists, newest first.
    pub fn layers(&self) -> Vec<LayerRef> {
        std::iter::once(self.manifest.layer_ref(self.top.clone())).chain(self.manifest.layers.iter().cloned()).collect()
    }

    /// Makes `manifest` (the delta's own shards) a layered version over this one.
    pub fn stack(&self, manifest: &mut Manifest, tombstones: u64, filter: ObjectRef) {
        manifest.format = LAYERED_FORMAT;
        manifest.delta = Some(DeltaInfo { tombstones, filter });
        manifest.layers = self.layers();
    }
}

/// Requests in flight while the filters are gathered.
const CONCURRENCY: usize = 16;

/// Gathers every shard's key filter (written inside its object) into the layer's filter object, written
/// under every root; returns what the manifest records of it. The same bytes whichever run writes it.
pub async fn write_filter(
    roots: &[Store],
    ks: &str,
    version: &str,
    entries: &[ShardEntry],
) -> Result<ObjectRef, IngestError> {
    let primary = roots[0].inner.clone();
    let filters: Vec<KeyFilter> = futures::stream::iter(entries.iter().cloned())
        .map(|e| {
            let primary = primary.clone();
            async move {
                if e.rows == 0 {
                    return Ok(KeyFilter::default());
                }
                let at = e.filter.ok_or_else(|| {
                    IngestError::Invalid(format!("shard {} of a delta layer has no key filter ({})", e.shard, e.path))
                })?;
                let range = at.offset..at.offset + at.len as u64;
                let opts = GetOptions { range: Some(range.into()), ..Default::default() };
                let bytes = primary.get_opts(&e.path.as_str().into(), opts).await?.bytes().await?;
                if block_checksum(&bytes) != at.checksum {
                    return Err(IngestError::Invalid(format!(
                        "{}: its key filter does not match its checksum",
                        e.path
                    )));
                }
                KeyFilter::from_bytes(&bytes).map_err(|why| IngestError::Invalid(format!("{}: {why}", e.path)))
            }
        })
        .buffered(CONCURRENCY)
        .try_collect()
        .await?;
    let body = LayerFilter::encode(&filters);
    let at = ObjectRef::of(&body);
    let path = layout::filter_path(ks, version);
    let payload = PutPayload::from(body);
    for root in roots {
        root.inner.put(&path, payload.clone()).await?;
    }
    Ok(at)
}
