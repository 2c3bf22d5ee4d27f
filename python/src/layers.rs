//! What `cairn.spark.compact` reads of a keyspace: its current version's layers and their shards.

use pyo3::prelude::*;

use cairn_shared::stores::Store;

use crate::errors;
use crate::runtime::block_on;

/// The layers of `keyspace`'s current version, newest first, as JSON: what `cairn.spark.compact` reads
/// with Spark. `{"version", "placement" (the base's), "replicas", "layers": [{"version", "delta",
/// "shards": [{"shard", "path", "rows"}]}]}`; paths are relative to `store`.
#[pyfunction]
pub fn layers(py: Python<'_>, store: &str, keyspace: &str) -> PyResult<String> {
    let root = Store::open(store).map_err(errors::shared)?;
    let ks = keyspace.to_string();
    let out = block_on(py, async move {
        use cairn_shared::format::manifest::Manifest;
        let cur = cairn_shared::versions::pointer::read(root.inner.as_ref(), &ks)
            .await?
            .ok_or_else(|| cairn_shared::Error::KeyspaceNotFound(ks.clone()))?;
        let top = Manifest::read(root.inner.as_ref(), &ks, &cur.pointer.version).await?;
        let older = cairn_shared::versions::manifest_copies::older_layers(std::slice::from_ref(&root), &top).await?;
        let layer = |m: &Manifest| {
            serde_json::json!({
                "version": m.version,
                "delta": m.delta.is_some(),
                "shards": m.shards.iter().map(|s| serde_json::json!({"shard": s.shard, "path": s.path, "rows": s.rows})).collect::<Vec<_>>(),
            })
        };
        let base = older.last().unwrap_or(&top);
        Ok::<_, cairn_shared::Error>(serde_json::json!({
            "version": top.version,
            "placement": base.placement,
            "replicas": top.replicas_besides(&root.url),
            "layers": std::iter::once(&top).chain(older.iter()).map(layer).collect::<Vec<_>>(),
        }))
    })
    .map_err(errors::shared)?;
    Ok(out.to_string())
}
