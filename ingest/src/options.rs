//! What an ingest is asked to do (its options, with their defaults) and what it reports.

use std::path::PathBuf;
use std::time::Duration;

use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::stores::Store;

use crate::input::InputFormat;
use crate::record::Columns;

/// Largest run by default: sorting a larger one is slower per record (measured: 10M keys read and sorted in
/// half the time with 64 MiB runs as with 256 MiB ones), and smaller runs let sorting one overlap reading the
/// next. Merging many is cheap (a heap, bounded fan-in: merge_width.rs).
pub const DEFAULT_RUN_BYTES: usize = 64 << 20;
/// Smallest run size `--run-size` accepts.
pub const MIN_RUN_BYTES: usize = 64 << 10;
/// Largest run: a run's records are addressed by 32-bit offsets.
pub const MAX_RUN_BYTES: usize = 1 << 30;

/// Input bytes per shard when `--shards` is not given. A cold lookup costs the same at any shard size (one
/// index piece, one block); this size is what a hot shard is read and kept as: small enough that promotion
/// pays under skew and one shard never holds much of the data cache, large enough that a shard's index has
/// at most three pieces (listed in the manifest entry: no root to read) (docs/FORMAT.md).
pub const AUTO_SHARD_BYTES: u64 = 512 << 10;
/// Most shards `--shards` may pick by itself (32 GiB of input; above it shards grow). Past 1,024 shards the
/// manifest lists them 128 to a group object, so what a reader loads at start stays ~100 bytes per 128
/// shards; this bounds the ingest's per-shard work (a checkpoint entry, one object per root).
pub const AUTO_SHARDS_MAX: u64 = 65_536;
/// How much larger than it is stored a compressed text input is assumed to be when the shard count is
/// picked (before anything is read: placement needs the count from the first key on; Parquet is measured
/// from its footers instead: sizing.rs).
pub const COMPRESSED_EXPANSION: u64 = 3;

/// The shard count `cairn ingest` picks for this much data (as text: key, space, value, newline).
pub fn auto_shards(data_bytes: u64) -> u32 {
    data_bytes.div_ceil(AUTO_SHARD_BYTES).clamp(1, AUTO_SHARDS_MAX) as u32
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// SOURCE arguments: local files, directories or globs, `s3://bucket/prefix/` URLs (listing.rs).
    pub inputs: Vec<PathBuf>,
    pub keyspace: String,
    /// Primary root: holds pointer, manifests, checkpoints and a copy of every shard.
    pub store: Store,
    /// Further roots that get a copy of every shard (and of the manifest).
    pub replicas: Vec<Store>,
    /// Shard count; None picks one shard per [`AUTO_SHARD_BYTES`] of input, at most [`AUTO_SHARDS_MAX`].
    pub shards: Option<u32>,
    /// Use a virtual-node ring with this many points per shard instead of jump hashing.
    pub ring_vnodes: Option<u32>,
    pub format: Option<InputFormat>,
    /// Key and value columns of Parquet, CSV and JSON Lines inputs.
    pub columns: Columns,
    /// `AWS_*`-style settings for object-store SOURCEs, over the environment (tests, tools).
    pub source_settings: Vec<(String, String)>,
    pub shard_format: ShardFormat,
    /// Shards written in parallel.
    pub threads: usize,
    /// Memory for buffered records; beyond it sorted runs spill to `tmp_dir`.
    pub memory_budget: usize,
    pub tmp_dir: Option<PathBuf>,
    /// Records buffered per sorted run (two runs are held at once, so at most half the budget); None:
    /// [`DEFAULT_RUN_BYTES`], or half the budget if that is less.
    pub run_bytes: Option<usize>,
    /// Stop reading after this many bad records.
    pub max_errors: usize,
    /// The checkpoint owner's lease: another run takes over a checkpoint whose heartbeat is older than this
    /// (sooner when its owner is provably gone: docs/FORMAT.md, "Checkpoints").
    pub lease: Duration,
    /// A checkpoint without a heartbeat for this long is abandoned: gc deletes it and frees its version.
    pub checkpoint_expiry: Duration,
    /// Publish even when the input holds no key (a version that answers "absent" for every key). Off, such an
    /// input is refused and nothing is published: an empty file or an empty export replacing a live
    /// keyspace is almost always a mistake.
    pub allow_empty: bool,
    /// Publish the input as a delta layer over the current version (`--delta`): its keys override the
    /// older layers', its deletions hide them.
    pub delta: bool,
    /// Most layers a version may have after a delta publish (`--max-layers`).
    pub max_layers: usize,
    /// What names `inputs` in the job's id where their paths do not: keys `cairn delete` took on its command
    /// line and wrote to a private temporary file are named by their hash, so the same command finds its
    /// checkpoint. None: the paths as given.
    pub job_inputs: Option<Vec<String>>,
}

impl IngestOptions {
    /// Bytes of records per sorted run.
    pub fn run_bytes(&self) -> usize {
        self.run_bytes.unwrap_or(DEFAULT_RUN_BYTES.min(self.memory_budget / 2)).min(MAX_RUN_BYTES)
    }

    pub fn new(input: impl Into<PathBuf>, keyspace: impl Into<String>, store: Store) -> Self {
        IngestOptions {
            inputs: vec![input.into()],
            keyspace: keyspace.into(),
            store,
            replicas: Vec::new(),
            shards: None,
            ring_vnodes: None,
            format: None,
            columns: Columns::default(),
            source_settings: Vec::new(),
            shard_format: ShardFormat::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_budget: 512 << 20,
            tmp_dir: None,
            run_bytes: None,
            max_errors: 20,
            lease: crate::checkpoint::DEFAULT_LEASE,
            checkpoint_expiry: crate::checkpoint::DEFAULT_EXPIRY,
            allow_empty: false,
            delta: false,
            max_layers: cairn_shared::format::layers::DEFAULT_MAX_LAYERS,
            job_inputs: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestReport {
    pub keyspace: String,
    pub version: String,
    pub rows: u64,
    pub shards: u32,
    pub bytes: u64,
    pub shard_rows: Vec<u64>,
    /// (largest - smallest) / smallest shard, in rows.
    pub imbalance: f64,
    /// Shards taken from a checkpoint instead of being rewritten.
    pub resumed_shards: usize,
    pub runs_spilled: usize,
    /// Merge passes over spilled runs before the shards were written (0 unless the runs outnumbered the fan-in).
    pub run_merges: usize,
    pub fingerprint: String,
    pub elapsed: Duration,
    /// Layers of the published version (1: a base alone).
    pub layers: usize,
    /// Deletions in the published layer.
    pub tombstones: u64,
}
