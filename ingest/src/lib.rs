//! Bulk ingest: input files → sorted runs (spilled to a temp dir when they exceed the memory budget) →
//! per-shard k-way merge → one Parquet object per shard under every replica root → manifest → conditional
//! pointer switch. Checkpointed in the store, so a rerun after a crash resumes (at-least-once writes,
//! exactly-once result).

pub mod byte_column;
pub mod checkpoint;
pub mod error;
pub mod input;
pub mod listing;
pub mod merge;
pub mod object_read;
pub mod parquet_input;
pub mod pipeline;
pub mod progress;
pub mod run;
pub mod source;

pub use error::{IngestError, InputError};
pub use input::{InputFile, InputFormat};
pub use listing::{fingerprint, list_local, list_sources};
pub use pipeline::{IngestOptions, IngestReport, ingest};
pub use progress::{NoProgress, Progress};
pub use source::{Columns, ValueSpec};
