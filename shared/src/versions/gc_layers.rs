//! What gc knows of the older layers each version stacks on (a kept version keeps them: its rollback needs
//! them): read from the manifests of the versions its listing found, and of the versions published after
//! the listing that the pointer it decides on names as current or previous.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;

use crate::error::{Error, ErrorKind, Result};
use crate::format::manifest::Manifest;
use crate::stores::url::Store;
use crate::versions::pointer::Pointer;

/// Per version, the older layers it stacks on (None: its manifest is unreadable).
pub(crate) type Layers = BTreeMap<String, Option<Vec<String>>>;

/// The layers `v` stacks on: Some(None) when its manifest is unreadable, None when it is gone.
async fn read(store: &dyn ObjectStore, ks: &str, v: &str) -> Result<Option<Option<Vec<String>>>> {
    match Manifest::read_top(store, ks, v).await {
        Ok(m) => Ok(Some(Some(m.layers.into_iter().map(|l| l.version).collect()))),
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt) => Ok(Some(None)),
        Err(Error::VersionNotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// For each listed version, with the root that lists its manifest (a manifest lost from the primary still
/// protects its layers), the layers it stacks on; one deleted since the listing (another gc run) needs none.
pub(crate) async fn of_listed(
    roots: &[Store],
    ks: &str,
    listed: Vec<(String, usize)>,
    at_once: usize,
) -> Result<Layers> {
    futures::stream::iter(listed)
        .map(|(v, root)| async move {
            let layers = read(roots[root].inner.as_ref(), ks, &v).await?;
            Ok::<_, Error>((v, layers.unwrap_or(Some(Vec::new()))))
        })
        .buffer_unordered(at_once)
        .try_collect()
        .await
}

/// Whether `p` names as current or previous a version gc knows nothing of (published after its listing).
pub(crate) fn unlisted(layers: &Layers, p: &Pointer) -> bool {
    std::iter::once(&p.version).chain(&p.previous).any(|v| !layers.contains_key(v))
}

/// Reads, for the current and previous versions of `p` that `layers` lacks, the layers they stack on. A
/// previous version whose manifest is gone needs nothing kept; a current one stays out (the caller says it
/// is missing).
pub(crate) async fn add_unlisted(store: &dyn ObjectStore, ks: &str, p: &Pointer, layers: &mut Layers) -> Result<()> {
    for v in std::iter::once(&p.version).chain(&p.previous) {
        if layers.contains_key(v) {
            continue;
        }
        match read(store, ks, v).await? {
            Some(found) => {
                layers.insert(v.clone(), found);
            }
            None if *v != p.version => {
                layers.insert(v.clone(), Some(Vec::new()));
            }
            None => {}
        }
    }
    Ok(())
}
