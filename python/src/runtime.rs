//! One tokio runtime per process, made on first use. A process forked after that (a Spark Python worker
//! forked from its daemon) cannot use its parent's runtime threads, so a child makes its own.

use std::sync::{Arc, Mutex};

use pyo3::Python;

static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);

pub fn runtime() -> Arc<tokio::runtime::Runtime> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    match slot.as_ref() {
        Some((owner, rt)) if *owner == pid => rt.clone(),
        _ => {
            // A parent's runtime is never dropped here: its threads do not exist in this process.
            if let Some(old) = slot.take() {
                std::mem::forget(old);
            }
            let rt = Arc::new(
                tokio::runtime::Builder::new_multi_thread()
                    .enable_all()
                    .thread_name("cairn")
                    .build()
                    .expect("cannot start the cairn runtime"),
            );
            *slot = Some((pid, rt.clone()));
            rt
        }
    }
}

/// Runs `f` to completion on the runtime with the GIL released, so other Python threads go on meanwhile.
pub fn block_on<F>(py: Python<'_>, f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    block_on_with(py, &runtime(), f)
}

/// As [`block_on`], on a runtime the caller already holds (no lookup of the process's runtime).
pub fn block_on_with<F>(py: Python<'_>, rt: &tokio::runtime::Runtime, f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    py.detach(|| rt.block_on(f))
}
