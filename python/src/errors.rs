//! cairn's errors as Python exceptions: one class per public error kind (the same kinds the HTTP API and
//! the CLI's exit codes use), all under `cairn.Error`, with the Rust error's message unchanged.

use cairn_shared::error::ErrorKind;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(cairn, Error, PyException, "Any cairn error.");
create_exception!(cairn, InvalidInput, Error, "The request or input is wrong; retrying will not help.");
create_exception!(cairn, NotFound, Error, "The keyspace or version does not exist.");
create_exception!(cairn, Conflict, Error, "Another writer won a race (a publish); nothing was switched.");
create_exception!(cairn, Corrupt, Error, "Stored bytes are not what the manifest promised.");
create_exception!(cairn, Unavailable, Error, "The store failed or timed out; retrying may help.");
create_exception!(cairn, DataLoss, Error, "An object the published version names is gone from every root.");

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("Error", py.get_type::<Error>())?;
    m.add("InvalidInput", py.get_type::<InvalidInput>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("Corrupt", py.get_type::<Corrupt>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("DataLoss", py.get_type::<DataLoss>())?;
    Ok(())
}

pub fn of_kind(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::InvalidInput => InvalidInput::new_err(message),
        ErrorKind::NotFound => NotFound::new_err(message),
        ErrorKind::Conflict => Conflict::new_err(message),
        ErrorKind::Corrupt => Corrupt::new_err(message),
        ErrorKind::Unavailable => Unavailable::new_err(message),
        ErrorKind::DataLoss => DataLoss::new_err(message),
    }
}

pub fn shared(e: cairn_shared::Error) -> PyErr {
    of_kind(e.kind(), e.to_string())
}

pub fn ingest(e: cairn_ingest::IngestError) -> PyErr {
    of_kind(e.kind(), e.to_string())
}

pub fn invalid(message: impl Into<String>) -> PyErr {
    InvalidInput::new_err(message.into())
}
