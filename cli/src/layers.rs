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
    // A key named twice on the command line is one deletion (in a --keys-from file it is bad input, as in
    // any delta).
    let mut keys: Vec<&String> = keys.iter().collect();
    keys.sort();
    keys.dedup();
    if pointer::read(store.inner.as_ref(), ks).await?.is_none() {
        return Err(format!("keyspace {ks:?} has no version in {}: nothing to delete", store.url).into());
    }
    // The command line's keys go through the same reader as --keys-from files.
    let spooled = match keys.is_empty() {
        true => None,
        false => Some(SpooledKeys::write(&keys)?),
    };
    let mut job_inputs: Vec<String> = files.iter().map(|f| f.to_string_lossy().into_owned()).collect();
    job_inputs.extend(spooled.as_ref().map(|s| s.id.clone()));
    let mut inputs = files;
    inputs.extend(spooled.as_ref().map(SpooledKeys::path));
    if layers.compact {
        compact_if_full(&store, ks, layers.max_layers).await?;
    }
    let mut opts = IngestOptions::new("", ks, store);
    opts.inputs = inputs;
    opts.format = Some(InputFormat::Keys);
    opts.delta = true;
    opts.max_layers = layers.max_layers;
    opts.job_inputs = Some(job_inputs);
    Ok(cairn_ingest::ingest(opts, Arc::new(progress::Bars::new())).await?)
}

/// The command line's keys in a file of a private temporary directory (removed with it), named in the job's
/// id by their hash: an ingest job is otherwise named by its inputs' paths, so the same `cairn delete KEY...`
/// rerun after an interruption finds its checkpoint and resumes it instead of publishing a second layer
/// beside an abandoned one. The keys are sorted and without duplicates, so their order does not matter.
struct SpooledKeys {
    dir: tempfile::TempDir,
    id: String,
}

impl SpooledKeys {
    fn write(keys: &[&String]) -> std::io::Result<SpooledKeys> {
        let body: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("keys"), body.as_bytes())?;
        Ok(SpooledKeys {
            dir,
            id: format!("command-line keys xxh3-128:{:032x}", xxhash_rust::xxh3::xxh3_128(body.as_bytes())),
        })
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("keys")
    }
}

/// What `cairn versions` shows of a version besides its name: its layers, keys, deletions and bytes.
pub async fn describe(store: &Store, ks: &str, version: &str) -> String {
    let Ok(m) = Manifest::read_top(store.inner.as_ref(), ks, version).await else {
        return "  (manifest unreadable)".into();
    };
    let own = |kind: &str, rows: u64, tombstones: u64, bytes: u64, at: &str| {
        let deleted = if tombstones > 0 { format!(", {tombstones} deletions") } else { String::new() };
        format!("{kind} {rows} keys{deleted}, {:.1} MiB, {at}", bytes as f64 / (1 << 20) as f64)
    };
    if !m.is_layered() {
        return format!("  {}", own("base", m.rows, 0, m.bytes, &m.created_at));
    }
    let mut out =
        format!("  {} layers: {}", m.layers.len() + 1, own("delta", m.rows, m.tombstones(), m.bytes, &m.created_at));
    for l in &m.layers {
        let kind = if l.version == m.layers[m.layers.len() - 1].version { "base" } else { "delta" };
        out.push_str(&format!(
            "\n      over {}: {}",
            l.version,
            own(kind, l.rows, l.tombstones, l.bytes, &l.created_at)
        ));
    }
    out
}
