//! The manifest: one immutable JSON object per published version, listing every shard with what a reader
//! needs to open it in one request (size, metadata suffix length) and to trust it (checksum).

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout;
use crate::piece::{PieceRef, RootRef};
use crate::ring::PlacementSpec;

/// 3: each shard's block index lies in pieces inside the object, listed by its entry (docs/FORMAT.md).
/// Format 2 (blocks, one index read from the object's tail) is still read; format 1 shards (large row
/// groups, page checksums) are refused: re-ingest them.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format this build reads.
pub const OLDEST_READABLE_FORMAT: u32 = 2;

/// How checksums are written in manifests and reports: `xxh3-64:<16 hex digits>`.
pub fn checksum_label(digest: u64) -> String {
    format!("xxh3-64:{digest:016x}")
}

/// [`checksum_label`] of `bytes`.
pub fn checksum_of(bytes: &[u8]) -> String {
    checksum_label(xxhash_rust::xxh3::xxh3_64(bytes))
}

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
    pub source: Source,
    pub rows: u64,
    pub bytes: u64,
    pub shards: Vec<ShardEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// `xxh3-64:<hex>` over the input files' names and contents; lets `cairn serve FILE` skip re-ingesting.
    pub fingerprint: String,
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardEntry {
    pub shard: u32,
    /// Relative to a store root.
    pub path: String,
    pub rows: u64,
    /// Object size in bytes.
    pub bytes: u64,
    /// Bytes at the end of the object holding the Parquet footer (with its length and magic): one suffix GET
    /// opens the shard.
    pub meta_bytes: u64,
    /// `xxh3-64:<hex>` of those `meta_bytes`: a reader verifies the one suffix GET that opens the shard.
    pub meta_checksum: String,
    pub min_key: Option<String>,
    pub max_key: Option<String>,
    /// `xxh3-64:<16 hex digits>` of the whole object.
    pub checksum: String,
    /// Format 3: the shard's index pieces, in key order, when it has at most two (none for an empty shard,
    /// or in format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<PieceRef>,
    /// Format 3: where the object lists its pieces, when it has more than two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRef>,
}

impl ShardEntry {
    /// How many index pieces the shard has (0 for format 2: its one index).
    pub fn piece_count(&self) -> usize {
        self.root.map_or(self.pieces.len(), |r| r.pieces as usize)
    }
}

impl Manifest {
    pub fn path(&self) -> Path {
        layout::manifest_path(&self.keyspace, &self.version)
    }

    /// Writes the manifest. Only the ingest that owns a version writes it, before the pointer names it (a
    /// resumed ingest may write it again); once published it is never written.
    pub async fn write(&self, store: &dyn ObjectStore) -> Result<()> {
        let body = serde_json::to_vec_pretty(self).map_err(|source| Error::Json { path: self.path(), source })?;
        store.put(&self.path(), PutPayload::from(body)).await?;
        Ok(())
    }

    pub async fn read(store: &dyn ObjectStore, ks: &str, version: &str) -> Result<Manifest> {
        let path = layout::manifest_path(ks, version);
        let bytes = match store.get(&path).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::VersionNotFound { keyspace: ks.into(), version: version.into() });
            }
            Err(e) => return Err(e.into()),
        };
        Self::parse(&path, &bytes)
    }

    pub fn parse(path: &Path, bytes: &Bytes) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|source| Error::Json { path: path.clone(), source })?;
        if !(OLDEST_READABLE_FORMAT..=FORMAT_VERSION).contains(&m.format) {
            let why = if m.format > FORMAT_VERSION { "newer than this build" } else { "older; re-ingest the data" };
            return Err(Error::corrupt(
                path,
                format!(
                    "manifest format {} is {why} (this build reads {OLDEST_READABLE_FORMAT} to {FORMAT_VERSION})",
                    m.format
                ),
            ));
        }
        for s in &m.shards {
            let bad = |why: &str| Err(Error::corrupt(path, format!("shard {}: {why}", s.shard)));
            let listed = !s.pieces.is_empty() as u8 + s.root.is_some() as u8;
            match (m.format >= 3, listed) {
                (false, 0) | (true, 1) => {}
                (true, 0) if s.rows == 0 => {}
                (false, _) => return bad("index pieces in a format-2 manifest"),
                (true, 0) => return bad("no index pieces"),
                (true, _) => return bad("both index pieces and a root"),
            }
            if s.root.is_some_and(|r| r.pieces == 0 || r.offset.checked_add(r.len as u64).is_none_or(|e| e > s.bytes)) {
                return bad("a root outside the object");
            }
            if s.pieces.windows(2).any(|w| w[0].key >= w[1].key)
                || s.pieces.iter().any(|p| p.offset.checked_add(p.len as u64).is_none_or(|e| e > s.bytes))
            {
                return bad("index pieces out of order or outside the object");
            }
        }
        if m.shards.len() != m.placement.shards() as usize
            || m.shards.iter().enumerate().any(|(i, s)| s.shard as usize != i)
        {
            return Err(Error::corrupt(path, "shard list does not match the placement"));
        }
        Ok(m)
    }
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
