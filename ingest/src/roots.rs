//! The roots a build writes: the primary (`--store`), then its replicas (a delta's or a compaction's are
//! those the layers under it list), each once.

use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer::Current;
use cairn_shared::versions::replica_pointer::refuse_replica_root;

use crate::delta::DeltaBase;
use crate::error::IngestError;
use crate::options::IngestOptions;

/// An ingest's roots, primary first, checked by [`check_roots`].
pub(crate) async fn build_roots(
    opts: &IngestOptions,
    current: Option<&Current>,
    delta: Option<&DeltaBase>,
) -> Result<Vec<Store>, IngestError> {
    let roots: Vec<Store> = match delta {
        Some(d) => d.roots(&opts.store, &opts.replicas)?,
        None => std::iter::once(opts.store.clone()).chain(opts.replicas.iter().cloned()).collect(),
    };
    check_roots(&roots, &opts.keyspace, current, delta.map(|d| &d.manifest)).await?;
    Ok(roots)
}

/// Refuses, before anything is written: a primary (`roots[0]`) that the version the build starts from
/// (`base`, else the keyspace's `current` one) lists as a replica of a primary still holding the keyspace
/// (a build there would publish over that replica's pointer copy, and the primary would never hear of
/// it), and a root named twice (one copy where the manifest promises two).
pub(crate) async fn check_roots(
    roots: &[Store],
    ks: &str,
    current: Option<&Current>,
    base: Option<&Manifest>,
) -> Result<(), IngestError> {
    match (base, current) {
        (Some(m), _) => refuse_replica_root(&roots[0], m).await?,
        // A manifest that cannot be read leaves nothing to judge by; the build goes on as before.
        (None, Some(cur)) => {
            if let Ok(m) = Manifest::read_top(roots[0].inner.as_ref(), ks, &cur.pointer.version).await {
                refuse_replica_root(&roots[0], &m).await?;
            }
        }
        (None, None) => {}
    }
    for (i, root) in roots.iter().enumerate() {
        if roots[..i].iter().any(|r| r.url == root.url) {
            return Err(IngestError::Invalid(format!(
                "{} is named twice among the roots (--store and --replicas must be different roots)",
                root.url
            )));
        }
    }
    Ok(())
}
