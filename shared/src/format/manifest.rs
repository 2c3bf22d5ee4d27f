//! The manifest: one immutable JSON object per published version, listing every shard with what a reader
//! needs to open it in one request (size, metadata suffix length) and to trust it (checksum).

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use crate::format::checksum::{ObjectRef, checksum_label, checksum_of};
use crate::format::layers::{DeltaInfo, LayerRef, MAX_LAYERS};
use crate::format::layout;
pub use crate::format::manifest_source::{COMPACTION_SOURCE, SOURCE_FILES_INLINE, Source, SourceListing};
use crate::format::ring::PlacementSpec;
use crate::format::shard_entry::check_entry;
pub use crate::format::shard_entry::{FilterAt, ShardEntry};

/// 3: each shard's block index lies in pieces inside the object, listed by its entry (docs/FORMAT.md).
/// Format 2 (blocks, one index read from the object's tail) is still read; format 1 shards (large row
/// groups, page checksums) are refused: re-ingest them.
pub const FORMAT_VERSION: u32 = 3;
/// 4: a layered version (a delta layer, or a version stacking on older layers). Written only for those, so
/// builds that read format 3 keep reading every full ingest; they refuse a layered one rather than answer
/// from its newest layer alone.
pub const LAYERED_FORMAT: u32 = 4;
/// The oldest format this build reads.
pub const OLDEST_READABLE_FORMAT: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout/format revision; readers refuse newer ones.
    pub format: u32,
    pub keyspace: String,
    pub version: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    pub placement: PlacementSpec,
    /// Extra store roots holding a copy of every shard at the same relative path (the primary is the root
    /// the manifest is read from).
    #[serde(default)]
    pub replicas: Vec<String>,
    /// The root the version was published to (every root's copy names it); None in older builds' manifests.
    /// What tells a replica root given as a command's `--store` from the primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    pub source: Source,
    pub rows: u64,
    pub bytes: u64,
    /// Every shard's entry; empty when `groups` lists them instead.
    #[serde(default)]
    pub shards: Vec<ShardEntry>,
    /// With more than [`GROUP_ABOVE`] shards: where the entries are, [`GROUP_SHARDS`] to an object (what a
    /// reader loads at start stays small at any shard count). [`Manifest::read`] fills `shards` from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupRef>,
    /// Set when this version's own shards are a delta layer (tagged values, a key filter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaInfo>,
    /// The older layers this version stacks on, newest first (empty: the version is its own shards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerRef>,
}

impl Manifest {
    /// The replicas listed, without `root` (a replica standing in for a lost primary is listed) and without
    /// repeats (older builds let a root be named twice): the roots besides `root` that a build over this
    /// version writes, and whose pointer copies a switch on `root` updates.
    pub fn replicas_besides(&self, root: &str) -> Vec<&String> {
        let mut out: Vec<&String> = Vec::new();
        for url in &self.replicas {
            if url != root && !out.contains(&url) {
                out.push(url);
            }
        }
        out
    }

    /// Whether this version is more than one base layer.
    pub fn is_layered(&self) -> bool {
        self.delta.is_some() || !self.layers.is_empty()
    }

    /// Whether this version is a build of its inputs (`cairn ingest`, a Spark or Python build), not one
    /// made from other versions (a delta layer over them, a compaction of them).
    pub fn is_build_of_inputs(&self) -> bool {
        !self.is_layered() && self.compacted_from().is_none()
    }

    /// The version this one is a compaction of.
    pub fn compacted_from(&self) -> Option<&str> {
        self.source.files.first().and_then(|f| f.strip_prefix(COMPACTION_SOURCE))
    }

    /// Tombstones in this version's own layer.
    pub fn tombstones(&self) -> u64 {
        self.delta.as_ref().map_or(0, |d| d.tombstones)
    }

    /// What a version stacking on this one lists of it.
    pub fn layer_ref(&self, top: ObjectRef) -> LayerRef {
        LayerRef {
            version: self.version.clone(),
            manifest: top,
            rows: self.rows,
            tombstones: self.tombstones(),
            bytes: self.bytes,
            created_at: self.created_at.clone(),
        }
    }
}

/// Shards per group object: a group (compact JSON, ~450 bytes an entry) is ~60 KB, what the first lookup
/// into it reads once; the top level holds ~100 bytes per group (~50 KB at 65,536 shards).
pub const GROUP_SHARDS: usize = 128;
/// Manifests of more shards than this list groups; smaller ones (up to ~512 MiB of input) list every entry
/// in the manifest (≤ ~0.9 MB), so their readers never pay a group read.
pub const GROUP_ABOVE: usize = 1024;

/// One group of shard entries (`keyspace=<ks>/groups/<version>/<nnnnn>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRef {
    pub first: u32,
    pub count: u32,
    pub bytes: u64,
    /// `xxh3-64:<hex>` of the group object.
    pub checksum: String,
}

impl Manifest {
    pub fn path(&self) -> Path {
        layout::manifest_path(&self.keyspace, &self.version)
    }

    /// Writes the manifest: with more than [`GROUP_ABOVE`] shards, each group of entries first, then the
    /// top level listing the groups (a reader that finds the top level finds every group). Only the ingest
    /// that owns a version writes it, before the pointer names it (a resumed ingest, or repair for a replica
    /// root, may write it again, byte for byte); once published it is never changed. Returns what the
    /// pointer records of the top level (its size and checksum), the same for every root.
    pub async fn write(&self, store: &dyn ObjectStore) -> Result<ObjectRef> {
        if self.shards.len() != self.placement.shards() as usize {
            return Err(Error::Config(format!(
                "writing manifest {}: {} shard entries for {} shards (a top level read alone cannot be written)",
                self.path(),
                self.shards.len(),
                self.placement.shards()
            )));
        }
        let mut top = self.clone();
        top.groups.clear();
        top.source.listing = None;
        if self.source.files.len() > SOURCE_FILES_INLINE {
            let path = layout::sources_path(&self.keyspace, &self.version);
            let body =
                serde_json::to_vec(&self.source.files).map_err(|source| Error::Json { path: path.clone(), source })?;
            top.source.listing = Some(SourceListing {
                count: self.source.files.len() as u64,
                bytes: body.len() as u64,
                checksum: checksum_of(&body),
            });
            top.source.files.truncate(SOURCE_FILES_INLINE);
            store.put(&path, PutPayload::from(body)).await?;
        }
        if self.shards.len() > GROUP_ABOVE {
            top.shards.clear();
            for (g, entries) in self.shards.chunks(GROUP_SHARDS).enumerate() {
                let path = layout::group_path(&self.keyspace, &self.version, g as u32);
                let group =
                    Group { keyspace: self.keyspace.clone(), version: self.version.clone(), shards: entries.to_vec() };
                // Compact: a group is read whole on a lookup's path, its indentation would be a third of it.
                let body = serde_json::to_vec(&group).map_err(|source| Error::Json { path: path.clone(), source })?;
                top.groups.push(GroupRef {
                    first: entries[0].shard,
                    count: entries.len() as u32,
                    bytes: body.len() as u64,
                    checksum: checksum_of(&body),
                });
                store.put(&path, PutPayload::from(body)).await?;
            }
        }
        let body = to_json(&top, &self.path())?;
        // What readers will refuse is never written, so never published.
        Self::parse(&self.path(), &body)?;
        let top_ref = ObjectRef::of(&body);
        store.put(&self.path(), PutPayload::from(body)).await?;
        Ok(top_ref)
    }

    /// The manifest with every shard entry (its groups read and verified): what the admin tools use.
    pub async fn read(store: &dyn ObjectStore, ks: &str, version: &str) -> Result<Manifest> {
        Ok(Self::read_with_ref(store, ks, version).await?.0)
    }

    /// [`Manifest::read`], with what a pointer records of the top level read.
    pub async fn read_with_ref(store: &dyn ObjectStore, ks: &str, version: &str) -> Result<(Manifest, ObjectRef)> {
        Self::read_parts(store, ks, version, true).await
    }

    /// [`Manifest::read_with_ref`], reading the input listing only with `listing` (without, `source.files`
    /// keeps the top level's first files): health and repair need the shard entries, readers no listing.
    pub async fn read_parts(
        store: &dyn ObjectStore,
        ks: &str,
        version: &str,
        listing: bool,
    ) -> Result<(Manifest, ObjectRef)> {
        use futures::{StreamExt, TryStreamExt};
        let (mut m, top) = Self::read_top_ref(store, ks, version).await?;
        if let Some(listing) = m.source.listing.take_if(|_| listing) {
            let path = layout::sources_path(ks, version);
            let bytes = match store.get(&path).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => return Err(Error::Missing { path }),
                Err(e) => return Err(e.into()),
            };
            m.source.files = m.parse_sources(&listing, &bytes)?;
        }
        if m.groups.is_empty() {
            return Ok((m, top));
        }
        let groups: Vec<Vec<ShardEntry>> = futures::stream::iter(0..m.groups.len())
            .map(|g| {
                let m = &m;
                async move {
                    let path = layout::group_path(ks, version, g as u32);
                    let bytes = match store.get(&path).await {
                        Ok(r) => r.bytes().await?,
                        Err(object_store::Error::NotFound { .. }) => return Err(Error::Missing { path }),
                        Err(e) => return Err(e.into()),
                    };
                    m.parse_group(g, &bytes)
                }
            })
            .buffered(16)
            .try_collect()
            .await?;
        m.shards = groups.into_iter().flatten().collect();
        // Whole now: written again (repair), it is grouped again, byte for byte.
        m.groups.clear();
        Ok((m, top))
    }

    /// The top level alone: for a grouped manifest, the groups' places but no shard entries (what the query
    /// engine loads; it reads each group on first use).
    pub async fn read_top(store: &dyn ObjectStore, ks: &str, version: &str) -> Result<Manifest> {
        Ok(Self::read_top_ref(store, ks, version).await?.0)
    }

    /// [`Manifest::read_top`], with the size and checksum of the bytes read (what a pointer records).
    pub async fn read_top_ref(store: &dyn ObjectStore, ks: &str, version: &str) -> Result<(Manifest, ObjectRef)> {
        let path = layout::manifest_path(ks, version);
        let bytes = match store.get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::VersionNotFound { keyspace: ks.into(), version: version.into() });
            }
            Err(e) => return Err(e.into()),
        };
        let m = Self::parse(&path, &bytes)?;
        if m.keyspace != ks || m.version != version {
            return Err(Error::corrupt(&path, format!("it is the manifest of {}/{}", m.keyspace, m.version)));
        }
        Ok((m, ObjectRef::of(&bytes)))
    }

    /// Where group `g` of this manifest lies.
    pub fn group_path(&self, g: usize) -> Path {
        layout::group_path(&self.keyspace, &self.version, g as u32)
    }

    /// Shards per group: every group but the last holds this many (an ungrouped manifest is one group).
    pub fn group_shards(&self) -> u32 {
        if self.groups.is_empty() { self.placement.shards().max(1) } else { GROUP_SHARDS as u32 }
    }

    /// Checks the input listing's bytes against what the top level says of them and returns the file names.
    pub fn parse_sources(&self, want: &SourceListing, bytes: &[u8]) -> Result<Vec<String>> {
        let path = layout::sources_path(&self.keyspace, &self.version);
        if bytes.len() as u64 != want.bytes || checksum_of(bytes) != want.checksum {
            return Err(Error::corrupt(&path, "input listing checksum mismatch"));
        }
        let files: Vec<String> =
            serde_json::from_slice(bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        if files.len() as u64 != want.count {
            return Err(Error::corrupt(&path, "input listing does not match its manifest"));
        }
        Ok(files)
    }

    /// Checks group `g`'s bytes against the top level and returns its entries.
    pub fn parse_group(&self, g: usize, bytes: &[u8]) -> Result<Vec<ShardEntry>> {
        let path = self.group_path(g);
        let want = self.groups.get(g).ok_or_else(|| Error::corrupt(&path, "no such group"))?;
        if bytes.len() as u64 != want.bytes || checksum_of(bytes) != want.checksum {
            return Err(Error::corrupt(&path, "group checksum mismatch"));
        }
        let group: Group =
            serde_json::from_slice(bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        if group.keyspace != self.keyspace
            || group.version != self.version
            || group.shards.len() != want.count as usize
            || group.shards.iter().enumerate().any(|(i, s)| s.shard != want.first + i as u32)
        {
            return Err(Error::corrupt(&path, "group does not match its manifest"));
        }
        for s in &group.shards {
            check_entry(&path, self.format, s)?;
        }
        Ok(group.shards)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        if !(OLDEST_READABLE_FORMAT..=LAYERED_FORMAT).contains(&m.format) {
            let why = if m.format > LAYERED_FORMAT { "newer than this build" } else { "older; re-ingest the data" };
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest format {} is {why} (this build reads {OLDEST_READABLE_FORMAT} to {LAYERED_FORMAT})",
                    m.format
                ),
            ));
        }
        let nested = matches!(m.placement, PlacementSpec::Nested { .. });
        if m.is_layered() != (m.format == LAYERED_FORMAT) || nested != m.delta.is_some() {
            return Err(Error::corrupt(path, "layers, delta and placement do not agree with the format"));
        }
        // Names are not compared by time: versions are named from their writers' clocks, which may disagree.
        let mut named: Vec<&str> = m.layers.iter().map(|l| l.version.as_str()).chain([m.version.as_str()]).collect();
        named.sort_unstable();
        named.dedup();
        if m.layers.len() >= MAX_LAYERS || named.len() != m.layers.len() + 1 {
            return Err(Error::corrupt(path, "its layers are too many, or name a version twice"));
        }
        for s in &m.shards {
            check_entry(path, m.format, s)?;
        }
        let shards = m.placement.shards() as usize;
        let listed = if m.groups.is_empty() {
            m.shards.len() == shards && m.shards.iter().enumerate().all(|(i, s)| s.shard as usize == i)
        } else {
            // Full groups of GROUP_SHARDS in order, the last one holding the rest.
            m.shards.is_empty()
                && m.groups.len() == shards.div_ceil(GROUP_SHARDS)
                && m.groups.iter().enumerate().all(|(g, r)| {
                    r.first as usize == g * GROUP_SHARDS
                        && r.count as usize == GROUP_SHARDS.min(shards - g * GROUP_SHARDS)
                })
        };
        if !listed {
            return Err(Error::corrupt(path, "shard list does not match the placement"));
        }
        Ok(m)
    }
}

/// One group object: the entries of shards `shards[0].shard..` of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    keyspace: String,
    version: String,
    shards: Vec<ShardEntry>,
}

fn to_json<T: Serialize>(v: &T, path: &Path) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(v).map_err(|source| Error::Json { path: path.clone(), source })
}

/// Versions that have a manifest, oldest first.
pub async fn list_versions(store: &dyn ObjectStore, ks: &str) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let mut versions: Vec<String> = store
        .list(Some(&layout::manifests_dir(ks)))
        .try_filter_map(|meta| async move {
            Ok(meta.location.filename().and_then(|f| f.strip_suffix(".json")).map(str::to_string))
        })
        .try_collect()
        .await?;
    versions.sort();
    Ok(versions)
}
