//! cairn's own exchange for `cairn.spark.bulk_load`, in place of Spark's shuffle and sort: map tasks
//! stage each partition's rows as sorted runs in the store ([`RunStager`]), then each reduce task merges a
//! range of shards from all of them into those shards' objects ([`merge_staged`]). See ingest's
//! staged_run.rs and staged_merge.rs.

use cairn_ingest::StagedRun;
use pyo3::prelude::*;

use crate::arrow::batch_column;
use crate::errors;
use crate::runtime::block_on;
use crate::slot::Slot;
use crate::writer::{json_to_py, parse_target};

/// One map task's stager: rows in any order in, sorted runs staged in the primary store out.
#[pyclass(module = "cairn", frozen)]
pub struct RunStager {
    inner: Slot<cairn_ingest::RunStager>,
}

#[pymethods]
impl RunStager {
    /// `partition` and `task` (an id unique to this task attempt) name its runs; `_run_bytes` (tests) the
    /// memory a run is sorted in.
    #[new]
    #[pyo3(signature = (target, partition, task, _run_bytes=None))]
    fn new(target: &str, partition: u32, task: u64, _run_bytes: Option<usize>) -> PyResult<Self> {
        let (t, roots) = parse_target(target)?;
        let s = cairn_ingest::RunStager::new(t, roots, (partition, task), _run_bytes).map_err(errors::ingest)?;
        Ok(RunStager { inner: Slot::new(s, "stager") })
    }

    /// Appends a pyarrow RecordBatch with columns `key` and `value`.
    fn write_batch(&self, py: Python<'_>, batch: &Bound<'_, PyAny>) -> PyResult<()> {
        let (keys, values) = (batch_column(batch, "key")?, batch_column(batch, "value")?);
        let mut s = self.inner.take()?;
        block_on(py, s.write(&keys, &values)).map_err(errors::ingest)?;
        self.inner.put(s);
        Ok(())
    }

    /// Stages what is left; returns every run staged, each as JSON for [`merge_staged`].
    fn finish(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let s = self.inner.take()?;
        let runs = block_on(py, s.finish()).map_err(errors::ingest)?;
        Ok(runs.iter().map(|r| serde_json::to_string(r).expect("a run serializes")).collect())
    }
}

/// Writes the objects of shards `start..end` that have rows, from the staged `runs` (the JSON of each, as
/// [`RunStager::finish`] returns them); returns their entries, as dicts.
#[pyfunction]
pub fn merge_staged<'py>(
    py: Python<'py>,
    target: &str,
    runs: Vec<String>,
    start: u32,
    end: u32,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let (t, roots) = parse_target(target)?;
    let runs = runs
        .iter()
        .map(|r| serde_json::from_str::<StagedRun>(r).map_err(|e| errors::invalid(format!("not a staged run ({e})"))))
        .collect::<PyResult<Vec<_>>>()?;
    let entries = block_on(py, async move { cairn_ingest::merge_staged(&t, &roots, &runs, start..end).await })
        .map_err(errors::ingest)?;
    entries.iter().map(|e| json_to_py(py, e)).collect()
}

/// Deletes the runs staged for the build of `target`; returns how many there were.
#[pyfunction]
pub fn discard_staged(py: Python<'_>, target: &str) -> PyResult<usize> {
    let (t, roots) = parse_target(target)?;
    block_on(py, async move { cairn_ingest::discard_staged(&t, &roots).await }).map_err(errors::ingest)
}
