//! A Python object's Rust writer, taken out of its slot while it works with the GIL released (a second
//! thread finds the slot empty instead of waiting on a lock it holds the GIL for), and put back only if the
//! work succeeded: after an error part of a batch is buffered, so the writer must not be finished.

use std::sync::Mutex;

use pyo3::PyResult;

use crate::errors;

pub struct Slot<T> {
    inner: Mutex<Option<T>>,
    /// What the object is called in errors ("writer", "stager").
    what: &'static str,
}

impl<T> Slot<T> {
    pub fn new(value: T, what: &'static str) -> Self {
        Slot { inner: Mutex::new(Some(value)), what }
    }

    pub fn take(&self) -> PyResult<T> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take().ok_or_else(|| {
            errors::invalid(format!("this {} is finished, failed, or in use by another thread", self.what))
        })
    }

    pub fn put(&self, value: T) {
        *self.inner.lock().unwrap_or_else(|e| e.into_inner()) = Some(value);
    }
}
