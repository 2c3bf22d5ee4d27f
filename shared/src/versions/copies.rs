//! One object's copy on one root, as health reports it: present and intact, or what is wrong with it.

use serde::Serialize;

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
    /// For a manifest copy whose top level is intact: the first object it lists (a group, the input
    /// listing, a delta's key filter) that this root lacks or holds damaged, which `state` describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
}
