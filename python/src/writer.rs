//! The write side of an external build, over the ingest crate's code: placement (the key → shard rule
//! `cairn ingest` uses), shard objects written from sorted rows, and the publish of a version from the
//! writers' entries. `cairn.spark.bulk_load` is built from these; docs/SPARK.md says how.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use arrow_array::{ArrayRef, Int32Array};
use cairn_ingest::byte_column::{ByteColumn, readable};
use cairn_ingest::{IngestReport, VersionTarget};
use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::ring::{Placement, PlacementSpec};
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::stores::Store;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::arrow::{array, batch_column, to_python};
use crate::errors;
use crate::runtime::block_on;
use crate::slot::Slot;

/// Stores opened in this process, by URL: a Spark worker runs many tasks against the same roots and
/// keeps one client (and its connection pool) for each.
/// Keyed by process too: a forked child must not use its parent's connections.
static STORES: LazyLock<Mutex<HashMap<(u32, String), Store>>> = LazyLock::new(Default::default);

fn open_store(url: &str) -> PyResult<Store> {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    // A parent's clients are forgotten, not dropped: dropping them could wait on its runtime's threads,
    // which do not exist in this process.
    if stores.keys().any(|(p, _)| *p != pid) {
        let (mine, theirs): (HashMap<_, _>, HashMap<_, _>) =
            std::mem::take(&mut *stores).into_iter().partition(|((p, _), _)| *p == pid);
        std::mem::forget(theirs);
        *stores = mine;
    }
    if let Some(s) = stores.get(&(pid, url.to_string())) {
        return Ok(s.clone());
    }
    let store = Store::open(url).map_err(errors::shared)?;
    stores.insert((pid, url.to_string()), store.clone());
    Ok(store)
}

pub(crate) fn parse_target(target: &str) -> PyResult<(VersionTarget, Vec<Store>)> {
    let t: VersionTarget =
        serde_json::from_str(target).map_err(|e| errors::invalid(format!("not a build target ({e})")))?;
    let roots = t.roots.iter().map(|u| open_store(u)).collect::<PyResult<Vec<_>>>()?;
    if roots.is_empty() {
        return Err(errors::invalid("a build target names no store"));
    }
    Ok((t, roots))
}

fn spec_of(shards: Option<u32>, vnodes: Option<u32>, spec: Option<&str>) -> PyResult<PlacementSpec> {
    match (spec, shards) {
        (Some(s), None) => {
            let parsed: serde_json::Value =
                serde_json::from_str(s).map_err(|e| errors::invalid(format!("placement spec: {e}")))?;
            // A build target or a manifest carries its spec under "placement".
            let spec = parsed.get("placement").cloned().unwrap_or(parsed);
            serde_json::from_value(spec).map_err(|e| errors::invalid(format!("placement spec: {e}")))
        }
        (None, Some(n)) => Ok(match vnodes {
            None => PlacementSpec::jump(n),
            Some(v) => PlacementSpec::ring(n, v),
        }),
        _ => Err(errors::invalid("give either shards (and vnodes) or spec")),
    }
}

pub(crate) fn json_to_py<'py>(py: Python<'py>, v: &impl serde::Serialize) -> PyResult<Bound<'py, PyAny>> {
    let s = serde_json::to_string(v).map_err(|e| errors::invalid(e.to_string()))?;
    py.import("json")?.call_method1("loads", (s,))
}

/// Each key's shard, as `cairn ingest` places it: an int32 array (null for a null key). `keys`: a pyarrow
/// string or binary array. The placement is `shards` (jump hashing, or a ring of `vnodes` points per
/// shard), or `spec`: the JSON of a manifest's or build target's placement.
#[pyfunction]
#[pyo3(signature = (keys, shards=None, *, vnodes=None, spec=None))]
pub fn placement<'py>(
    py: Python<'py>,
    keys: &Bound<'py, PyAny>,
    shards: Option<u32>,
    vnodes: Option<u32>,
    spec: Option<&str>,
) -> PyResult<Bound<'py, PyAny>> {
    let spec = spec_of(shards, vnodes, spec)?;
    let placement = Placement::new(&spec).map_err(errors::invalid)?;
    let keys = array(keys)?;
    if !readable(keys.data_type(), true) {
        return Err(errors::invalid(format!("keys are {}; expected strings or binary", keys.data_type())));
    }
    let out: Int32Array = py.detach(|| {
        let k = ByteColumn::new(&keys).expect("checked");
        let mut shards = Vec::with_capacity(keys.len());
        placement.shards_of((0..keys.len()).map(|i| k.get(i).unwrap_or_default()), &mut shards);
        // A null key has no shard.
        (0..keys.len()).map(|i| k.get(i).map(|_| shards[i] as i32)).collect()
    });
    to_python(py, &out)
}

/// The shard count `cairn ingest` picks for `data_bytes` of input (counted as text lines: key, space,
/// value, newline).
#[pyfunction]
pub fn default_shards(data_bytes: u64) -> u32 {
    cairn_ingest::auto_shards(data_bytes)
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Open,
    Publishing,
    Published,
    Aborted,
}

/// A version being built: made by [`begin`], published once from its writers' entries, or aborted.
#[pyclass(module = "cairn", frozen)]
pub struct Build {
    inner: Arc<cairn_ingest::Build>,
    state: Mutex<State>,
}

/// Begins a new version of `keyspace` in `store` (primary) and `replicas`: a checkpoint owns it (gc
/// keeps its objects while the build runs) and a heartbeat renews it until publish or abort.
#[pyfunction]
#[pyo3(signature = (store, keyspace, *, shards, replicas=None, vnodes=None, delta=false, max_layers=8, over=None))]
#[allow(clippy::too_many_arguments)]
pub fn begin(
    py: Python<'_>,
    store: &str,
    keyspace: &str,
    shards: u32,
    replicas: Option<Vec<String>>,
    vnodes: Option<u32>,
    delta: bool,
    max_layers: usize,
    over: Option<String>,
) -> PyResult<Build> {
    let spec = spec_of(Some(shards), vnodes, None)?;
    let roots = std::iter::once(store.to_string())
        .chain(replicas.unwrap_or_default())
        .map(|u| Store::open(&u).map_err(errors::shared))
        .collect::<PyResult<Vec<_>>>()?;
    let lease = cairn_ingest::checkpoint::DEFAULT_LEASE;
    let opts = cairn_ingest::BuildOptions { delta, max_layers, over };
    let inner =
        block_on(py, cairn_ingest::Build::begin_with(keyspace, roots, spec, lease, &opts)).map_err(errors::ingest)?;
    Ok(Build { inner: Arc::new(inner), state: Mutex::new(State::Open) })
}

fn report_dict<'py>(py: Python<'py>, r: &IngestReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("keyspace", &r.keyspace)?;
    d.set_item("version", &r.version)?;
    d.set_item("rows", r.rows)?;
    d.set_item("shards", r.shards)?;
    d.set_item("bytes", r.bytes)?;
    d.set_item("imbalance", r.imbalance)?;
    d.set_item("fingerprint", &r.fingerprint)?;
    d.set_item("seconds", r.elapsed.as_secs_f64())?;
    d.set_item("layers", r.layers)?;
    d.set_item("tombstones", r.tombstones)?;
    Ok(d)
}

fn entry_of(obj: &Bound<'_, PyAny>) -> PyResult<ShardEntry> {
    let text = match obj.cast::<PyString>() {
        Ok(s) => s.extract::<String>()?,
        Err(_) => obj.py().import("json")?.call_method1("dumps", (obj,))?.extract()?,
    };
    serde_json::from_str(&text).map_err(|e| errors::invalid(format!("not a shard entry ({e}): {text:.200}")))
}

#[pymethods]
impl Build {
    /// The JSON writers need (`write_shard`, `PartitionWriter`): keyspace, version, placement, roots.
    #[getter]
    fn target(&self) -> String {
        serde_json::to_string(self.inner.target()).expect("target serializes")
    }

    #[getter]
    fn version(&self) -> String {
        self.inner.target().version.clone()
    }

    #[getter]
    fn shards(&self) -> u32 {
        self.inner.target().placement.shards()
    }

    /// Whether this build is a delta layer: its writers must be given tagged values (a first byte of 0,
    /// then the value; a lone 1 for a deletion). False for a delta begun over a keyspace with no version
    /// (it is then the keyspace's first full version).
    #[getter]
    fn delta(&self) -> bool {
        self.inner.target().delta
    }

    /// Publishes the version from the writers' entries (dicts or their JSON), atomically: every object is
    /// checked, then the manifest, then the conditional pointer switch. Every shard needs an entry, or must
    /// be named in `empty` (shards the caller knows hold no rows: written empty here, and refused if a
    /// writer wrote one after all): a shard whose writer has not reported is never published empty.
    /// A version with no key is refused unless `allow_empty`. `files`: the inputs, recorded in the manifest.
    /// Returns the report: version, rows, shards, bytes.
    #[pyo3(signature = (entries, files=None, *, empty=None, allow_empty=false))]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        entries: Vec<Bound<'py, PyAny>>,
        files: Option<Vec<String>>,
        empty: Option<Vec<u32>>,
        allow_empty: bool,
    ) -> PyResult<Bound<'py, PyDict>> {
        let entries = entries.iter().map(entry_of).collect::<PyResult<Vec<_>>>()?;
        let opts = cairn_ingest::PublishOptions { allow_empty, empty_shards: empty.unwrap_or_default() };
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match *state {
                State::Open => *state = State::Publishing,
                State::Publishing => return Err(errors::invalid("this build is being published")),
                State::Published | State::Aborted => {
                    return Err(errors::invalid("this build was already published or aborted"));
                }
            }
        }
        let inner = self.inner.clone();
        let report = block_on(py, async move { inner.publish_with(entries, files.unwrap_or_default(), &opts).await });
        match report {
            Ok(r) => {
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = State::Published;
                report_dict(py, &r)
            }
            Err(e) => {
                // Failed before its manifest was written (a missing object, a bad entry): nothing of it is
                // visible, and the build can still be aborted (or published with the right entries).
                let after = if self.inner.is_publishing() { State::Published } else { State::Open };
                *self.state.lock().unwrap_or_else(|e| e.into_inner()) = after;
                Err(errors::ingest(e))
            }
        }
    }

    /// Gives the version up: deletes what was written for it and its checkpoint (a no-op once published).
    /// Raises while a publish of it is running (that publish decides what stays).
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match *state {
                State::Open => *state = State::Aborted,
                State::Publishing => {
                    return Err(errors::invalid("this build is being published; it cannot be aborted now"));
                }
                State::Published | State::Aborted => return Ok(()),
            }
        }
        let inner = self.inner.clone();
        block_on(py, async move { inner.abort().await });
        Ok(())
    }

    fn __repr__(&self) -> String {
        let t = self.inner.target();
        format!("<cairn.Build keyspace={:?} version={:?} shards={}>", t.keyspace, t.version, t.placement.shards())
    }
}

/// Writes the shard objects of one partition of rows sorted by (shard, key): a Spark task's writer.
#[pyclass(module = "cairn", frozen)]
pub struct PartitionWriter {
    inner: Slot<cairn_ingest::PartitionWriter>,
}

impl PartitionWriter {
    fn write_arrays(&self, py: Python<'_>, shards: ArrayRef, keys: ArrayRef, values: ArrayRef) -> PyResult<()> {
        let mut w = self.inner.take()?;
        block_on(py, w.write(&shards, &keys, &values)).map_err(errors::ingest)?;
        self.inner.put(w);
        Ok(())
    }
}

#[pymethods]
impl PartitionWriter {
    /// `sorted`: the rows come sorted by (shard, key) and are streamed; otherwise the writer sorts them
    /// itself (buffered and spilled as `cairn ingest` does; `_run_bytes`, for tests, sizes its runs).
    #[new]
    #[pyo3(signature = (target, sorted=true, _run_bytes=None))]
    fn new(target: &str, sorted: bool, _run_bytes: Option<usize>) -> PyResult<Self> {
        let (t, roots) = parse_target(target)?;
        let w = if sorted {
            cairn_ingest::PartitionWriter::new(t, roots)
        } else {
            cairn_ingest::PartitionWriter::unsorted(t, roots, _run_bytes)
        }
        .map_err(errors::ingest)?;
        Ok(PartitionWriter { inner: Slot::new(w, "writer") })
    }

    /// Appends a pyarrow RecordBatch with columns `shard`, `key` and `value`.
    fn write_batch(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<()> {
        let column = |name| batch_column(batch, name);
        self.write_arrays(py, column("shard")?, column("key")?, column("value")?)
    }

    /// Appends rows given as three pyarrow arrays.
    fn write(
        &self,
        py: Python<'_>,
        shards: &Bound<'_, PyAny>,
        keys: &Bound<'_, PyAny>,
        values: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        self.write_arrays(py, array(shards)?, array(keys)?, array(values)?)
    }

    /// Finishes the last shard; returns the entries of the shards written, as dicts.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let w = self.inner.take()?;
        let entries = block_on(py, w.finish()).map_err(errors::ingest)?;
        entries.iter().map(|e| json_to_py(py, e)).collect()
    }
}

/// Writes shard `shard` of a build from `keys` and `values` (pyarrow arrays, sorted by key, all of that
/// shard) and returns its manifest entry as a dict.
#[pyfunction]
pub fn write_shard<'py>(
    py: Python<'py>,
    target: &str,
    shard: u32,
    keys: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (t, roots) = parse_target(target)?;
    let (keys, values) = (array(keys)?, array(values)?);
    if shard >= t.placement.shards() {
        return Err(errors::invalid(format!("shard {shard}; the placement has {}", t.placement.shards())));
    }
    let entry = block_on(py, async move {
        if keys.is_empty() {
            let dir = cairn_ingest::scratch::Scratch::create_async(std::env::temp_dir(), "cairn-partition-")
                .await
                .map_err(cairn_ingest::IngestError::io("cannot create a temporary directory"))?;
            return cairn_ingest::ShardObject::create(&t, &ShardFormat::default(), shard, dir.path())?
                .finish_exclusive(&roots)
                .await;
        }
        let shards: ArrayRef = Arc::new(Int32Array::from(vec![shard as i32; keys.len()]));
        let mut w = cairn_ingest::PartitionWriter::new(t, roots)?;
        w.write(&shards, &keys, &values).await?;
        let mut entries = w.finish().await?;
        Ok(entries.pop().expect("one shard written"))
    })
    .map_err(errors::ingest)?;
    json_to_py(py, &entry)
}
