//! Checksums as cairn writes them in manifests, pointers and reports: `xxh3-64:<16 hex digits>`.

use serde::{Deserialize, Serialize};

/// How a checksum is written: `xxh3-64:<16 hex digits>`.
pub fn checksum_label(digest: u64) -> String {
    format!("xxh3-64:{digest:016x}")
}

/// [`checksum_label`] of `bytes`.
pub fn checksum_of(bytes: &[u8]) -> String {
    checksum_label(xxhash_rust::xxh3::xxh3_64(bytes))
}

/// The checksum cairn keeps per block: low 32 bits of XXH3-64 over the block's bytes.
#[inline]
pub fn block_checksum(block: &[u8]) -> u32 {
    xxhash_rust::xxh3::xxh3_64(block) as u32
}

/// Footer key-value entry with every block's checksum: the low 32 bits of XXH3-64 over the block's bytes
/// (both column chunks), 8 hex digits per block in file order. Parquet-rs writes no CRCs, so cairn keeps its
/// own.
pub const BLOCK_CHECKSUMS_KEY: &str = "cairn.block_checksums";

/// An object's size and checksum: what a reader holds a copy to, from whichever root it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bytes: u64,
    pub checksum: String,
}

impl ObjectRef {
    pub fn of(bytes: &[u8]) -> ObjectRef {
        ObjectRef { bytes: bytes.len() as u64, checksum: checksum_of(bytes) }
    }

    /// Whether `bytes` are the object this names.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.bytes && checksum_of(bytes) == self.checksum
    }
}
