//! The `cairn._cairn` extension module: an embedded reader over the same engine as `cairn serve`, and the
//! write-side building blocks of an external build (placement, shard objects, publish) over the ingest
//! crate's code. The Python package (`python/cairn/`) wraps it; docs/PYTHON.md describes both.

mod arrow;
mod errors;
mod exchange;
mod layers;
mod reader;
mod runtime;
mod slot;
mod writer;

use pyo3::prelude::*;

#[pymodule]
fn _cairn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Warnings (a failed heartbeat, what an abort left for gc) go to stderr, filtered by CAIRN_LOG as in
    // the CLI; a host application that installed its own subscriber keeps it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    errors::register(m)?;
    m.add_class::<reader::Store>()?;
    m.add_class::<writer::Build>()?;
    m.add_class::<writer::PartitionWriter>()?;
    m.add_class::<exchange::RunStager>()?;
    m.add_function(wrap_pyfunction!(exchange::merge_staged, m)?)?;
    m.add_function(wrap_pyfunction!(exchange::discard_staged, m)?)?;
    m.add_function(wrap_pyfunction!(reader::open, m)?)?;
    m.add_function(wrap_pyfunction!(writer::placement, m)?)?;
    m.add_function(wrap_pyfunction!(writer::default_shards, m)?)?;
    m.add_function(wrap_pyfunction!(writer::begin, m)?)?;
    m.add_function(wrap_pyfunction!(layers::layers, m)?)?;
    m.add_function(wrap_pyfunction!(writer::write_shard, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // Largest shard object whose upload checks a concurrent attempt wrote the same bytes.
    m.add("EXCLUSIVE_MAX", cairn_ingest::shard_object::EXCLUSIVE_MAX)?;
    m.add("STAGED_MAX", cairn_ingest::shard_object::STAGED_MAX)?;
    Ok(())
}
