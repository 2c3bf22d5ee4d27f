//! One object's copy on one root, as health reports it: present and intact, or what is wrong with it.

use futures::StreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use crate::error::Result;
use crate::format::manifest::checksum_label;
use crate::stores::url::Store;

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

/// `xxh3-64:<hex>` of a whole object, streamed.
pub async fn object_checksum(store: &Store, path: &Path) -> Result<String> {
    let mut stream = store.inner.get(path).await?.into_stream();
    let mut h = Xxh3::new();
    while let Some(chunk) = stream.next().await {
        h.update(&chunk?);
    }
    Ok(checksum_label(h.digest()))
}

/// `root`'s copy of an object that should be `bytes` long with `checksum`: a HEAD (presence and size), and
/// with `deep` a streamed read of it whole.
pub(crate) async fn check_object(root: &Store, path: &Path, bytes: u64, checksum: &str, deep: bool) -> CopyState {
    match root.inner.head(path).await {
        Ok(meta) if meta.size != bytes => return CopyState::WrongSize { bytes: meta.size },
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return CopyState::Missing,
        Err(e) => return CopyState::Unreachable { error: e.to_string() },
    }
    if !deep {
        return CopyState::Ok;
    }
    match object_checksum(root, path).await {
        Ok(sum) if sum == checksum => CopyState::Ok,
        Ok(sum) => CopyState::Corrupt { checksum: sum },
        Err(e) => CopyState::Unreachable { error: e.to_string() },
    }
}
