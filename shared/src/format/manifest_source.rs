//! What a version was built from, as its manifest records it: the input files and their fingerprint (which
//! `cairn serve FILE` compares), or the version a compaction compacted.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// `xxh3-64:<hex>` over the input files' names and contents; lets `cairn serve FILE` skip re-ingesting.
    pub fingerprint: String,
    /// The input files; in a top level read alone with `listing` set, only the first
    /// [`SOURCE_FILES_INLINE`] of them.
    pub files: Vec<String>,
    /// With more than [`SOURCE_FILES_INLINE`] inputs: the whole list lies in its own object, which only the
    /// admin tools read ([`Manifest::read`](crate::format::manifest::Manifest::read)), so what every reader loads stays small however many inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listing: Option<SourceListing>,
}

impl Source {
    pub fn new(fingerprint: String, files: Vec<String>) -> Source {
        Source { fingerprint, files, listing: None }
    }
}

/// Where the whole list of input files is: `keyspace=<ks>/groups/<version>/sources.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceListing {
    pub count: u64,
    pub bytes: u64,
    /// `xxh3-64:<hex>` of the listing object.
    pub checksum: String,
}

/// How a compaction names its source: this, then the version it compacted.
pub const COMPACTION_SOURCE: &str = "compaction of ";

/// Input files a manifest's top level names itself; past it they are listed in their own object.
pub const SOURCE_FILES_INLINE: usize = 16;
