//! Ingest errors. Bad input is collected (up to a limit) and reported as `file:line: what is wrong`, so one
//! run shows the user every problem to fix, not just the first.

use std::fmt;
use std::path::PathBuf;

use cairn_shared::ErrorKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: PathBuf,
    /// 1-based line (for CSV/JSON Lines: the record's line assuming one record per line), or Parquet row
    /// (`row`); 0: the file as a whole.
    pub line: u64,
    pub row: bool,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else if self.row {
            write!(f, "{}:row {}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("bad input, nothing was published:\n{}", list(.0))]
    BadInput(Vec<InputError>),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Shared(#[from] cairn_shared::Error),
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    /// Another run of the same ingest owns its checkpoint.
    #[error("{0}")]
    Busy(String),
    /// This run's checkpoint was taken over by another run, which now owns the version.
    #[error("{0}")]
    LostOwnership(String),
    /// A write whose outcome could not be learnt: everything was left for a rerun.
    #[error("{0}")]
    OutcomeUnknown(String),
}

fn list(errors: &[InputError]) -> String {
    errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n")
}

impl IngestError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> IngestError {
        let context = context.into();
        move |source| IngestError::Io { context, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::BadInput(_) | IngestError::Invalid(_) => ErrorKind::InvalidInput,
            IngestError::Shared(e) => e.kind(),
            IngestError::Busy(_) | IngestError::LostOwnership(_) => ErrorKind::Conflict,
            IngestError::Store(_) | IngestError::Io { .. } | IngestError::OutcomeUnknown(_) => ErrorKind::Unavailable,
        }
    }
}
