//! The layer commands: `cairn delete` (a delta of tombstones) and compacting before a delta that would
//! stack too many layers (`--compact`).

use std::path::PathBuf;
use std::sync::Arc;

use cairn_ingest::{CompactOptions, IngestOptions, IngestReport, InputFormat};
use cairn_shared::format::manifest::Manifest;
use cairn_shared::key::validate_key;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;

use crate::args::LayerArgs;
use crate::progress;

type Error = Box<dyn std::error::Error>;

/// Compacts `ks` when one more layer would pass `max_layers`.
pub async fn compact_if_full(store: &Store, ks: &str, max_layers: usize) -> Result<(), Error> {
    let Some(current) = pointer::read(store.inner.as_ref(), ks).await? else { return Ok(()) };
    let top = Manifest::read_top(store.inner.as_ref(), ks, &current.pointer.version).await?;
    if top.layers.len() + 2 <= max_layers {
        return Ok(());
    }
    eprintln!("{ks}: {} layers; compacting before the delta (--compact)", top.layers.len() + 1);
    let report = cairn_ingest::compact(CompactOptions::new(ks, store.clone()), Arc::new(progress::Bars::new())).await?;
    crate::admin::print_report(&report);
    Ok(())
}

/// Publishes a layer of tombstones for `keys` and the keys listed in `files`.
pub async fn delete(
    store: Store,
    ks: &str,
    keys: &[String],
    files: Vec<PathBuf>,
    layers: &LayerArgs,
) -> Result<IngestReport, Error> {
    for (i, k) in keys.iter().enumerate() {
        validate_key(k).map_err(|e| format!("KEY {} ({k:?}): {e}", i + 1))?;
    }
    if pointer::read(store.inner.as_ref(), ks).await?.is_none() {
        return Err(format!("keyspace {ks:?} has no version in {}: nothing to delete", store.url).into());
    }
    // The command line's keys go through the same reader as --keys-from files.
    let dir = tempfile::tempdir()?;
    let mut inputs = files;
    if !keys.is_empty() {
        let path = dir.path().join("keys");
        std::fs::write(&path, keys.iter().map(|k| format!("{k}\n")).collect::<String>())?;
        inputs.push(path);
    }
    if layers.compact {
        compact_if_full(&store, ks, layers.max_layers).await?;
    }
    let mut opts = IngestOptions::new("", ks, store);
    opts.inputs = inputs;
    opts.format = Some(InputFormat::Keys);
    opts.delta = true;
    opts.max_layers = layers.max_layers;
    Ok(cairn_ingest::ingest(opts, Arc::new(progress::Bars::new())).await?)
}
