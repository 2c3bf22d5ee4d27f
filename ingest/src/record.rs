//! What an input record is, whatever its format: the columns that hold its key and value, the rules it
//! must satisfy, where good records go, and where bad ones are reported.

use std::path::Path;

use cairn_shared::format::ring::Placement;
use cairn_shared::key::key_problem;
use tokio::runtime::Handle;

use crate::error::{IngestError, InputError};
use crate::input::InputFile;

/// Largest value accepted: a Lambda function URL response is at most 6 MB, base64 adds a third.
pub const MAX_VALUE_LEN: usize = 4 << 20;

/// Longest text line read: a key at its limit, a space, a value at its limit, the newline.
pub(crate) const MAX_LINE: usize = cairn_shared::key::MAX_KEY_LEN + 1 + MAX_VALUE_LEN + 1;
/// Which columns hold the key and the value (Parquet, CSV, JSON Lines; text has no columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub key: String,
    pub value: ValueSpec,
    /// A boolean Parquet column whose true rows are deletions (`--deleted-column`, with `--delta`).
    pub deleted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSpec {
    /// One string or binary column, stored byte for byte.
    Column(String),
    /// A JSON object of these columns, in this order (Parquet only).
    Json(Vec<String>),
}

impl Default for Columns {
    fn default() -> Self {
        Columns { key: "key".into(), value: ValueSpec::Column("value".into()), deleted: None }
    }
}

impl Columns {
    /// The value column's name when it is one column.
    pub(crate) fn single_value(&self, file: &InputFile) -> Result<&str, IngestError> {
        match &self.value {
            ValueSpec::Column(v) => Ok(v),
            ValueSpec::Json(_) => Err(IngestError::Invalid(format!(
                "{}: --value-columns needs Parquet input (its columns have types to write as JSON)",
                file.path.display()
            ))),
        }
    }
}

/// Collects bad-input reports up to a limit.
pub struct Problems {
    pub list: Vec<InputError>,
    limit: usize,
}

impl Problems {
    pub fn new(limit: usize) -> Self {
        Problems { list: Vec::new(), limit }
    }

    pub fn add(&mut self, file: &Path, line: u64, message: impl Into<String>) {
        if self.list.len() < self.limit {
            self.list.push(InputError { file: file.to_path_buf(), line, row: false, message: message.into() });
        }
    }

    /// A problem at a Parquet row (1-based over the file).
    pub fn add_row(&mut self, file: &Path, row: u64, message: impl Into<String>) {
        if self.list.len() < self.limit {
            self.list.push(InputError { file: file.to_path_buf(), line: row, row: true, message: message.into() });
        }
    }

    pub fn full(&self) -> bool {
        self.list.len() >= self.limit
    }
}

/// A record's key and value, checked: why it cannot be stored, if it cannot.
pub fn check_record(key: &[u8], value: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key (the line starts with a space)".into());
    }
    if let Some(why) = key_problem(key) {
        return Err(format!("invalid key: {why}"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("value is {} bytes, the limit is {MAX_VALUE_LEN}", value.len()));
    }
    Ok(())
}

/// Receives (key, value, line, shard) for each good record; a value of None deletes the key (a tombstone in a
/// delta: `cairn delete`, or a row `--deleted-column` marks). `shard` is the key's shard when the reader
/// placed it already (Parquet places a batch's keys on its decoding thread, off the thread that emits).
pub type Emit<'a> = dyn FnMut(&[u8], Option<&[u8]>, u64, Option<u32>) + 'a;

/// What a reader needs besides its file.
pub struct ReadContext<'a> {
    pub columns: &'a Columns,
    pub handle: &'a Handle,
    /// The memory budget: bounds what a Parquet object's row groups may hold.
    pub memory: usize,
    /// Where keys go: a reader that decodes in batches places a batch's keys where it decodes them.
    pub placement: &'a Placement,
}
