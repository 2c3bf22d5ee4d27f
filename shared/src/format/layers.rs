//! A version made of layers (docs/FORMAT.md, "Delta layers"): the newest layer is the version's own shards;
//! its manifest lists the older layers it stacks on, each by the version that wrote it. A delta layer's
//! values carry a one-byte tag, so a layer can say "deleted" (a tombstone) as well as "this value".

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::format::checksum::ObjectRef;

/// Tag of a live value in a delta layer: the value's bytes follow.
pub const LIVE: u8 = 0;
/// Tag of a tombstone: the key is deleted as of this layer (nothing follows).
pub const DELETED: u8 = 1;

/// Most layers a version may stack by default before a delta publish is refused (`--max-layers`).
pub const DEFAULT_MAX_LAYERS: usize = 8;
/// Most layers any manifest may list: a lookup visits each.
pub const MAX_LAYERS: usize = 64;

/// What a delta layer's stored value means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tagged {
    Value(Bytes),
    Deleted,
}

/// Reads a delta layer's stored value (zero-copy); an unknown tag is the object's corruption.
#[inline]
pub fn untag(stored: Bytes) -> Result<Tagged, String> {
    match stored.first() {
        Some(&LIVE) => Ok(Tagged::Value(stored.slice(1..))),
        Some(&DELETED) if stored.len() == 1 => Ok(Tagged::Deleted),
        Some(t) => Err(format!("a delta value with tag {t} and {} bytes", stored.len())),
        None => Err("a delta value without its tag".into()),
    }
}

/// A delta layer's own facts, in its manifest (absent for a base layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaInfo {
    /// Rows that are tombstones (included in the manifest's `rows`).
    pub tombstones: u64,
    /// The layer's key filter object (`filters/<version>.bin`): size and checksum.
    pub filter: ObjectRef,
}

/// One older layer a version stacks on, named by the version that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    pub version: String,
    /// Size and checksum of that version's manifest top level: a reader verifies it.
    pub manifest: ObjectRef,
    pub rows: u64,
    #[serde(default)]
    pub tombstones: u64,
    pub bytes: u64,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        assert_eq!(untag(Bytes::from_static(b"\0abc")).unwrap(), Tagged::Value(Bytes::from_static(b"abc")));
        assert_eq!(untag(Bytes::from_static(b"\0")).unwrap(), Tagged::Value(Bytes::new()));
        assert_eq!(untag(Bytes::from_static(b"\x01")).unwrap(), Tagged::Deleted);
        assert!(untag(Bytes::from_static(b"\x01x")).is_err());
        assert!(untag(Bytes::from_static(b"\x02")).is_err());
        assert!(untag(Bytes::new()).is_err());
    }
}
