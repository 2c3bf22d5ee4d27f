//! One shard's entry in a manifest: where its object is, how to open it in one request, how to trust it,
//! and what a reader checks before it uses the offsets it gives.

use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::piece::{PieceRef, RootRef};

/// Largest index piece and root a manifest may name: a reader fetches them whole.
const MAX_PIECE_BYTES: u32 = 64 << 10;
const MAX_ROOT_BYTES: u32 = 16 << 20;

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
    /// Format 3: the shard's index pieces, in key order, when it has at most six (none for an empty shard,
    /// or in format 2).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<PieceRef>,
    /// Format 3: where the object lists its pieces, when it has more than six.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRef>,
    /// A delta layer's shard: where its key filter lies in the object (gathered into the layer's filter
    /// object at publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterAt>,
    /// A delta layer's shard: how many of its rows are deletions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tombstones: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Bytes of a shard object holding its key filter, with their checksum (as for index pieces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterAt {
    pub offset: u64,
    pub len: u32,
    pub checksum: u32,
}

impl ShardEntry {
    /// How many index pieces the shard has (0 for format 2: its one index).
    pub fn piece_count(&self) -> usize {
        self.root.map_or(self.pieces.len(), |r| r.pieces as usize)
    }
}

/// What a shard entry must satisfy before a reader trusts its offsets.
pub(crate) fn check_entry(path: &Path, format: u32, s: &ShardEntry) -> Result<()> {
    let bad = |why: &str| Err(Error::corrupt(path, format!("shard {}: {why}", s.shard)));
    let listed = !s.pieces.is_empty() as u8 + s.root.is_some() as u8;
    match (format >= 3, listed) {
        (false, 0) | (true, 1) => {}
        (true, 0) if s.rows == 0 => {}
        (false, _) => return bad("index pieces in a format-2 manifest"),
        (true, 0) => return bad("no index pieces"),
        (true, _) => return bad("both index pieces and a root"),
    }
    // Bytes of the object a reader fetches whole: inside it, after the leading magic, and bounded.
    let inside = |offset: u64, len: u32, max: u32| offset >= 4 && len <= max && offset + (len as u64) <= s.bytes;
    if s.root.is_some_and(|r| {
        r.pieces == 0
            || r.len < 8
            || r.pieces as u64 > (r.len as u64 - 8) / 18
            || !inside(r.offset, r.len, MAX_ROOT_BYTES)
    }) {
        return bad("a root outside the object or listing more pieces than it can hold");
    }
    if s.pieces.windows(2).any(|w| w[0].key >= w[1].key || w[0].offset + w[0].len as u64 > w[1].offset)
        || s.pieces.iter().any(|p| p.len < 8 || !inside(p.offset, p.len, MAX_PIECE_BYTES))
    {
        return bad("index pieces out of order or outside the object");
    }
    Ok(())
}
