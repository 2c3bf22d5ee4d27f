//! `cairn.open(url)`: the embedded reader, the same engine `cairn serve` and the Lambda run (caches,
//! replica failover and hedging, checksums), in the caller's process.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use cairn_shared::config::EngineConfig;
use cairn_shared::query::Engine;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::errors;
use crate::runtime::{block_on_with, runtime};

/// Keys per engine call in `mget`: the HTTP API's MGET size, so one call's values stay bounded.
const MGET_CHUNK: usize = 1000;

#[pyclass(module = "cairn", frozen)]
pub struct Store {
    engine: Arc<Engine>,
    /// The runtime it was opened on, held so a lookup does not take the process's runtime lock.
    rt: Arc<tokio::runtime::Runtime>,
    pid: u32,
}

/// Opens the store at `url` (a path, `file:///abs/path`, `s3://bucket/prefix` configured by the standard
/// AWS environment, or `memory://name`), configured by `CAIRN_*` variables as `cairn serve` is.
#[pyfunction]
pub fn open(url: &str) -> PyResult<Store> {
    let store = cairn_shared::stores::Store::open(url).map_err(errors::shared)?;
    let config = EngineConfig::from_env().map_err(errors::shared)?;
    let rt = runtime();
    let engine = {
        let _in_runtime = rt.enter();
        Arc::new(Engine::new(store, config))
    };
    Ok(Store { engine, rt, pid: std::process::id() })
}

/// Polls `f` once in the runtime's context, holding the GIL: a warm lookup (answered from memory) is done
/// then, with no thread handoff. Anything that has to wait finishes on the runtime with the GIL released.
fn run<F>(store: &Store, py: Python<'_>, f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    // After a fork the parent's runtime has no threads here (docs/PYTHON.md: open the store again).
    let forked;
    let rt: &tokio::runtime::Runtime = if std::process::id() == store.pid {
        &store.rt
    } else {
        forked = runtime();
        &forked
    };
    let mut f = std::pin::pin!(f);
    {
        let _in_runtime = rt.enter();
        if let Poll::Ready(out) = f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            return out;
        }
    }
    block_on_with(py, rt, f)
}

#[pymethods]
impl Store {
    /// The value of `key` in `keyspace`'s published version, or None.
    fn get<'py>(&self, py: Python<'py>, keyspace: &str, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let value = run(self, py, self.engine.get(keyspace, key)).map_err(errors::shared)?;
        Ok(value.map(|v| PyBytes::new(py, &v)))
    }

    /// The values of `keys`, in order (None for a missing key).
    fn mget<'py>(&self, py: Python<'py>, keyspace: &str, keys: Vec<String>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for chunk in keys.chunks(MGET_CHUNK) {
            let values = run(self, py, self.engine.mget(keyspace, chunk)).map_err(errors::shared)?;
            for v in values {
                match v {
                    Some(v) => out.append(PyBytes::new(py, &v))?,
                    None => out.append(py.None())?,
                }
            }
        }
        Ok(out)
    }

    /// What `GET /v1/keyspaces/{keyspace}` answers, as a dict.
    fn info<'py>(&self, py: Python<'py>, keyspace: &str) -> PyResult<Bound<'py, PyAny>> {
        let info = run(self, py, self.engine.info(keyspace)).map_err(errors::shared)?;
        py.import("json")?.call_method1("loads", (info.to_string(),))
    }

    /// The keyspaces published in this store, as of at most one pointer TTL ago.
    fn keyspaces(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        run(self, py, self.engine.list_keyspaces()).map_err(errors::shared)
    }

    /// Forgets the pointers read so far: the next lookup of each keyspace reads its current version.
    fn refresh(&self) {
        self.engine.refresh();
    }

    #[getter]
    fn url(&self) -> String {
        self.engine.store().url.clone()
    }

    fn __repr__(&self) -> String {
        format!("cairn.open({:?})", self.engine.store().url)
    }
}
