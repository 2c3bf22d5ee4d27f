//! What a resumed run keeps of its checkpoint's finished shards: those whose objects are still whole under
//! every root, and that are this version's own (the checkpoint is bytes in the store, which anything may have
//! written).

use cairn_shared::format::layout;
use cairn_shared::stores::Store;
use object_store::ObjectStoreExt;

use crate::checkpoint::Owned;
use crate::error::IngestError;

/// Requests in flight when a resume checks its finished shards.
const CHECK_CONCURRENCY: usize = 32;

/// Keeps only checkpointed shards whose objects are still complete under every root (a HEAD each, together).
/// An entry that names another object than its own shard's in this version (the record is bytes in the
/// store, which anything may have written) is dropped like a lost one: published, it would serve another
/// version's data and lose it to that version's gc.
pub(crate) async fn verify_done(roots: &[Store], mut owned: Owned) -> Result<Owned, IngestError> {
    use futures::{StreamExt, TryStreamExt};
    let (ks, version) = (owned.ckpt.keyspace.clone(), owned.ckpt.version.clone());
    let shards = owned.ckpt.placement.as_ref().map_or(u32::MAX, |p| p.shards());
    owned
        .ckpt
        .done
        .retain(|s, e| *s == e.shard && *s < shards && e.path == layout::shard_path(&ks, *s, &version).as_ref());
    let checks: Vec<(u32, object_store::path::Path, u64, Store)> = owned
        .ckpt
        .done
        .iter()
        .flat_map(|(s, e)| roots.iter().map(move |r| (*s, e.path.as_str().into(), e.bytes, r.clone())))
        .collect();
    let lost: Vec<Option<u32>> = futures::stream::iter(checks)
        .map(|(s, path, bytes, root)| async move {
            match root.inner.head(&path).await {
                Ok(meta) if meta.size == bytes => Ok(None),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(Some(s)),
                Err(e) => Err(IngestError::from(e)),
            }
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .try_collect()
        .await?;
    for s in lost.into_iter().flatten() {
        owned.ckpt.done.remove(&s);
    }
    Ok(owned)
}
