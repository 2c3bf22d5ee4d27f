//! Two-tier errors: a detailed [`Error`] inside, a coarse [`ErrorKind`] for callers (HTTP status, exit code).

use object_store::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller can act on; the HTTP layer maps each kind to one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request or input is wrong; retrying will not help.
    InvalidInput,
    /// The keyspace (or version) does not exist.
    NotFound,
    /// Another writer won a race (pointer switch); re-read and decide.
    Conflict,
    /// Stored bytes are not what the manifest promised.
    Corrupt,
    /// The store failed or timed out; retrying may help.
    Unavailable,
    /// An object the published version names is gone from every root: restore it (`cairn repair` from a
    /// replica) or roll back; retrying will not help.
    DataLoss,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid keyspace name {name:?}: {why}")]
    InvalidKeyspace { name: String, why: &'static str },
    #[error("invalid store URL {url:?}: {why}")]
    InvalidStoreUrl { url: String, why: String },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("keyspace {0:?} not found (nothing published yet)")]
    KeyspaceNotFound(String),
    #[error("version {version:?} of keyspace {keyspace:?} not found")]
    VersionNotFound { keyspace: String, version: String },
    #[error(
        "keyspace {keyspace:?} was published by someone else meanwhile (expected version {expected:?}); nothing was switched"
    )]
    Conflict { keyspace: String, expected: Option<String> },
    #[error("version {version:?} of keyspace {keyspace:?} is being deleted by gc; pick another")]
    Collecting { keyspace: String, version: String },
    #[error(
        "keyspace {keyspace:?} was switched to new versions throughout gc's {tries} tries to mark what it deletes; no version was deleted (run gc again)"
    )]
    ChangedWhileCollecting { keyspace: String, tries: usize },
    #[error("data loss: {path} is missing from every root, though the published version names it")]
    Missing { path: Path },
    #[error("the values asked for add up to more than {limit} bytes, the most one MGET returns; ask for fewer keys")]
    TooLarge { limit: u64 },
    #[error("corrupt object {path}: {why}")]
    Corrupt { path: Path, why: String },
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("manifest {path}: {source}")]
    Json { path: Path, source: serde_json::Error },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// One load's error, handed to every caller that waited on it (single_flight.rs).
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidKey(_)
            | Error::InvalidKeyspace { .. }
            | Error::InvalidStoreUrl { .. }
            | Error::Config(_)
            | Error::TooLarge { .. } => ErrorKind::InvalidInput,
            Error::KeyspaceNotFound(_) | Error::VersionNotFound { .. } => ErrorKind::NotFound,
            Error::Conflict { .. } | Error::Collecting { .. } | Error::ChangedWhileCollecting { .. } => {
                ErrorKind::Conflict
            }
            Error::Missing { .. } => ErrorKind::DataLoss,
            Error::Corrupt { .. } | Error::Parquet(_) | Error::Arrow(_) | Error::Json { .. } => ErrorKind::Corrupt,
            Error::Store(_) | Error::Io(_) => ErrorKind::Unavailable,
            Error::Shared(e) => e.kind(),
        }
    }

    /// The error itself, looking through [`Error::Shared`].
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(e) => e.root(),
            e => e,
        }
    }

    pub fn corrupt(path: &Path, why: impl Into<String>) -> Self {
        Error::Corrupt { path: path.clone(), why: why.into() }
    }
}
