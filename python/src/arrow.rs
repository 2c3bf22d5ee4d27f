//! Arrow arrays across the boundary, without copies (the Arrow C data interface, via arrow-pyarrow).

use arrow_array::{Array, ArrayRef, make_array};
use arrow_data::ArrayData;
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::prelude::*;

/// A pyarrow array (or anything exporting `__arrow_c_array__`) as an arrow-rs array; its buffers are
/// validated, not trusted.
pub fn array(obj: &Bound<'_, PyAny>) -> PyResult<ArrayRef> {
    Ok(make_array(ArrayData::from_pyarrow_bound(obj)?))
}

/// Column `name` of a pyarrow RecordBatch, as an arrow-rs array.
pub fn batch_column(batch: &Bound<'_, PyAny>, name: &str) -> PyResult<ArrayRef> {
    let col = batch
        .call_method1("column", (name,))
        .map_err(|_| crate::errors::invalid(format!("the batch has no {name:?} column")))?;
    array(&col)
}

pub fn to_python<'py>(py: Python<'py>, a: &dyn Array) -> PyResult<Bound<'py, PyAny>> {
    a.to_data().to_pyarrow(py)
}
