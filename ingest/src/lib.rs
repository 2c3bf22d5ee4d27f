//! Bulk ingest: input files → sorted runs (spilled to a temp dir when they exceed the memory budget; merged
//! together first when they outnumber the open-file limit's fan-in) → per-shard-range heap merge → one Parquet object per shard under every replica root → manifest → conditional
//! pointer switch. Checkpointed in the store, so a rerun after a crash resumes (at-least-once writes,
//! exactly-once result).

pub mod batch_rows;
pub mod build;
pub mod byte_column;
pub mod checkpoint;
pub mod compact;
mod csv_input;
pub mod cursor;
pub mod delta;
pub mod error;
pub mod input;
mod json_value;
mod jsonl_input;
pub mod lease;
pub mod listing;
pub mod merge;
mod merge_width;
pub mod object_read;
pub mod options;
pub mod owner;
mod parquet_fetch;
pub mod parquet_input;
mod parquet_plan;
mod parquet_stream;
pub mod partition_writer;
pub mod pipeline;
pub mod progress;
pub mod publish;
mod read_ahead;
mod read_phase;
pub mod record;
mod reduce;
mod resume;
mod roots;
pub mod run;
mod run_file;
pub mod scratch;
pub mod shard_object;
mod sizing;
pub mod source;
pub mod staged_merge;
pub mod staged_run;
mod text_input;
mod write_phase;

pub use build::{Build, BuildOptions, PublishOptions};
pub use compact::{CompactOptions, compact};
pub use error::{IngestError, InputError};
pub use input::{InputFile, InputFormat};
pub use listing::{fingerprint, list_local, list_sources};
pub use partition_writer::PartitionWriter;
pub use pipeline::{IngestOptions, IngestReport, auto_shards, ingest};
pub use progress::{NoProgress, Progress};
pub use record::{Columns, ValueSpec};
pub use shard_object::{ShardObject, VersionTarget};
pub use staged_merge::{discard_staged, merge_staged};
pub use staged_run::{RunStager, StagedRun};
