//! The command line. Every option also reads a `CAIRN_*` environment variable (shown in `--help`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "cairn: a serverless key-value store for immutable data in object storage.

With no command, cairn opens an interactive prompt (GET, MGET, EXISTS, INFO, KEYSPACE, HELP, QUIT)
against --url. Quick start:  cairn serve examples/example.data   then   cairn get <key>";

#[derive(Parser, Debug)]
#[command(name = "cairn", version, about = ABOUT, long_about = None)]
pub struct Cli {
    /// Server to talk to: a `cairn serve` address or a Lambda function URL.
    #[arg(long, global = true, env = "CAIRN_URL", default_value = "http://127.0.0.1:7878")]
    pub url: String,

    /// Keyspace for GET/MGET/EXISTS/INFO.
    #[arg(long, short = 'k', global = true, env = "CAIRN_KEYSPACE", default_value = "default")]
    pub keyspace: String,

    /// Request timeout for client commands (e.g. 5s, 500ms).
    #[arg(long, global = true, env = "CAIRN_TIMEOUT", default_value = "10s", value_parser = humantime_duration)]
    pub timeout: std::time::Duration,

    /// Sign requests with AWS SigV4 (service `lambda`): auto = when --url is a *.lambda-url.<region>.on.aws
    /// function URL; always (region from AWS_REGION); never.
    #[arg(long, global = true, env = "CAIRN_SIGV4", default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub sigv4: String,

    #[command(subcommand)]
    pub command: Option<Command>,
}

fn humantime_duration(s: &str) -> Result<std::time::Duration, String> {
    cairn_shared::config::parse_duration(s)
}

#[derive(Args, Debug, Clone)]
pub struct StoreArg {
    /// Store root: a directory (file:///abs/path or a plain path), s3://bucket/prefix, or memory://. The
    /// keyspace's primary root: a replica root is refused by the commands that publish or mend while the
    /// primary holds the keyspace (CAIRN_PRIMARY_LOST names a primary lost for good; docs/OPERATIONS.md).
    #[arg(long, env = "CAIRN_STORE", default_value = cairn_shared::stores::DEFAULT_STORE)]
    pub store: String,
}

/// Where to look for the published manifest's top level when the primary's copy is missing or damaged (it
/// lists the replica roots, so it cannot name them itself).
#[derive(Args, Debug)]
pub struct KnownReplicas {
    /// Replica roots to read the manifest's top level from if the primary's copy is missing or damaged,
    /// comma-separated. Tried before the roots earlier versions' manifests name; not needed otherwise.
    #[arg(long, env = "CAIRN_REPLICAS", value_delimiter = ',')]
    pub replicas: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API. With FILE, ingest it first into keyspace `default` (not again while FILE is
    /// unchanged since it was last published there: deletes, deltas and rollbacks made since are kept).
    #[command(after_help = cairn_shared::config::vars::help())]
    Serve {
        /// Data to serve as keyspace `default`: a file or directory of `<key> <value>` lines, JSON Lines, CSV
        /// or Parquet (gzip/zstd text too), or an s3:// URL.
        file: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArg,
        /// Port to listen on (0 picks a free one).
        #[arg(long, short = 'p', env = "CAIRN_PORT", default_value_t = 7878)]
        port: u16,
        /// Address to listen on. The default only accepts local connections.
        #[arg(long, env = "CAIRN_HOST", default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Threads answering requests (default: one per core). When load generators or other busy
        /// processes share the machine's cores, fewer threads than cores gives a shorter tail: see
        /// docs/benchmark-notes.md.
        #[arg(long, env = "CAIRN_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
        workers: Option<u16>,
        /// Serve FILE even if it holds no key (every lookup then answers "not found"); without it such a FILE
        /// is refused, as `cairn ingest` refuses it.
        #[arg(long, requires = "file")]
        allow_empty: bool,
    },
    /// Bulk-load files, directories, globs or s3:// prefixes (text, JSON Lines, CSV, Parquet; .gz/.zst text) into
    /// a keyspace, publishing a new version atomically.
    Ingest(IngestArgs),
    /// Delete keys: publish a delta layer of tombstones over the current version (those keys answer "not
    /// found" from then on; `cairn rollback` brings them back, `cairn compact` drops them for good).
    Delete {
        /// Keys to delete.
        #[arg(value_name = "KEY", required_unless_present = "keys_from")]
        keys: Vec<String>,
        /// Files (or s3:// objects) of keys to delete, one per line (.gz/.zst too).
        #[arg(long, value_name = "FILE")]
        keys_from: Vec<PathBuf>,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        layers: LayerArgs,
    },
    /// Merge every layer of the keyspace's current version into one base layer and publish it as a new
    /// version: the same answers, tombstones dropped, lookups back to one layer. Resumable; safe while
    /// queries are served.
    Compact {
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
        #[command(flatten)]
        store: StoreArg,
        /// Shards merged in parallel (default: number of cores).
        #[arg(long, env = "CAIRN_INGEST_THREADS")]
        threads: Option<usize>,
    },
    /// Print the value of KEY (exit status 1 if absent).
    Get { key: String },
    /// Print the values of several keys, one per line, `(nil)` for absent ones.
    Mget {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Print how many of the given keys exist.
    Exists {
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Show the keyspace's version, size, replication and the server's cache statistics, in redis-cli's
    /// INFO style (`# Section`, `field:value`, sizes also human-readable).
    Info {
        /// Print the server's JSON document instead (GET /v1/keyspaces/{ks}).
        #[arg(long)]
        json: bool,
    },
    /// List the published versions of a keyspace (newest last; * marks the current one).
    Versions {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
    },
    /// Check every copy of every shard: GREEN (all copies), YELLOW (≥1 good copy per shard), RED (a shard
    /// has none). Exit status 0 GREEN, 3 YELLOW, 4 RED.
    Health {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        replicas: KnownReplicas,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
        /// Read every copy and verify its checksum (default: presence and size only, one HEAD per copy).
        #[arg(long)]
        deep: bool,
        /// Print the full report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-copy missing or corrupt shard copies from a good one, and rewrite replicas' manifest and pointer
    /// copies that are missing or lag the primary (safe while queries are served; idempotent).
    Repair {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        replicas: KnownReplicas,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
    },
    /// Point a keyspace back at an earlier version (default: the one before the current).
    Rollback {
        #[command(flatten)]
        store: StoreArg,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
        /// Version to switch to (see `cairn versions`).
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete old versions (manifest, then shard objects, under every root) and shards left by crashed
    /// ingests. Keeps the current version, the one it replaced, the --keep newest, any version an unexpired
    /// ingest checkpoint or a replica's pointer names, and any version replaced less than --min-age ago.
    /// Deletes checkpoints abandoned for 7 days. Exit 1 if some object could not be deleted.
    Gc {
        #[command(flatten)]
        store: StoreArg,
        #[command(flatten)]
        replicas: KnownReplicas,
        #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
        keyspace: String,
        /// Newest versions to keep besides the current one and its predecessor.
        #[arg(long, default_value_t = 2)]
        keep: usize,
        /// Keep versions that stopped being current less than this ago (e.g. 1h, 30m; never-published ones:
        /// written less than this ago): readers hold a replaced version for up to 2 x CAIRN_POINTER_TTL.
        #[arg(long, default_value = "1h", value_parser = cairn_shared::config::parse_duration)]
        min_age: std::time::Duration,
        /// List what would be deleted; delete nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    /// Inputs: files, directories (every file below, skipping names starting with . or _), quoted globs
    /// ('data/*.parquet'), s3://bucket/prefix/ (every object under it) or s3://bucket/prefix/*.parquet.
    /// Formats by extension: .parquet/.pq, .jsonl/.ndjson/.json, .csv, anything else `<key> <value>` text;
    /// .gz and .zst text is decompressed on the fly. See docs/INPUTS.md.
    #[arg(required = true, value_name = "SOURCE")]
    pub inputs: Vec<PathBuf>,
    /// Keyspace to publish (a-z, 0-9, '-', '_').
    #[arg(long, short = 'k', env = "CAIRN_KEYSPACE")]
    pub keyspace: String,
    #[command(flatten)]
    pub store: StoreArg,
    /// Extra roots that receive a copy of every shard, comma-separated (e.g. s3://other-bucket/prefix).
    #[arg(long, env = "CAIRN_REPLICAS", value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// Number of shards (default: one per 512 KiB of input, compressed and Parquet input counted 3x, at most
    /// 65536).
    #[arg(long, env = "CAIRN_SHARDS")]
    pub shards: Option<u32>,
    /// Input format, when the file extension does not say: text, jsonl, csv or parquet.
    #[arg(long, env = "CAIRN_FORMAT")]
    pub format: Option<cairn_ingest::InputFormat>,
    /// Column holding the key (Parquet, CSV, JSON Lines): strings, or a dictionary of them.
    #[arg(long, env = "CAIRN_KEY_COLUMN", default_value = "key")]
    pub key_column: String,
    /// Column holding the value (Parquet, CSV, JSON Lines), stored byte for byte: strings or binary.
    #[arg(long, env = "CAIRN_VALUE_COLUMN", default_value = "value", conflicts_with = "value_columns")]
    pub value_column: String,
    /// Store as the value a JSON object of these Parquet columns, in this order (e.g. a,b,c): numbers as
    /// JSON numbers, nulls as null, lists as arrays, binary as hex (docs/INPUTS.md).
    #[arg(long, env = "CAIRN_VALUE_COLUMNS", value_delimiter = ',')]
    pub value_columns: Option<Vec<String>>,
    /// Place keys with a virtual-node ring of this many points per shard instead of jump hashing.
    #[arg(long, env = "CAIRN_RING_VNODES")]
    pub ring_vnodes: Option<u32>,
    /// Memory for buffering records before sorted runs spill to disk (e.g. 512MiB). Peak memory is this
    /// plus a small constant whatever the input's size (docs/OPERATIONS.md, "Ingest memory and files").
    #[arg(long, env = "CAIRN_INGEST_MEMORY", default_value = "512MiB", value_parser = bytes_arg)]
    pub memory: u64,
    /// Records per sorted run (default: 64MiB, or half of --memory if less: two runs are held at once).
    /// Smaller runs mean more of them to merge; for tuning and tests.
    #[arg(long, env = "CAIRN_INGEST_RUN_SIZE", value_parser = bytes_arg)]
    pub run_size: Option<u64>,
    /// Shards written in parallel (default: number of cores).
    #[arg(long, env = "CAIRN_INGEST_THREADS")]
    pub threads: Option<usize>,
    /// Directory for spilled runs and shard files before upload (default: the system temp dir). What a
    /// killed ingest left there is removed by the next one.
    #[arg(long, env = "CAIRN_TMP_DIR")]
    pub tmp_dir: Option<PathBuf>,
    /// Publish even if the input holds no key. Without it such an input (an empty file, footer-only Parquet,
    /// an empty export) is refused and nothing is published: a version with no key answers "not found" for
    /// every key of the keyspace it replaces.
    #[arg(long)]
    pub allow_empty: bool,
    /// Publish the input as a delta layer over the current version: its keys override older layers' (a key
    /// it does not name keeps its value), in seconds rather than a rebuild. The new version is the old one's
    /// layers plus this one; `cairn compact` merges them. Over a keyspace with no version, a full ingest.
    #[arg(long)]
    pub delta: bool,
    /// With --delta, a boolean Parquet column: rows where it is true delete their key (their value may be
    /// null).
    #[arg(long, env = "CAIRN_DELETED_COLUMN", requires = "delta")]
    pub deleted_column: Option<String>,
    #[command(flatten)]
    pub layers: LayerArgs,
}

/// How many layers a delta publish may stack.
#[derive(Args, Debug, Clone)]
pub struct LayerArgs {
    /// Most layers a version may have after a delta publish (a lookup visits each); past it the delta is
    /// refused with a message to compact.
    #[arg(long, env = "CAIRN_MAX_LAYERS", default_value_t = cairn_shared::format::layers::DEFAULT_MAX_LAYERS,
          value_parser = max_layers_arg)]
    pub max_layers: usize,
    /// When the delta would pass --max-layers, compact the keyspace first (`cairn compact`), then publish it.
    #[arg(long)]
    pub compact: bool,
}

fn max_layers_arg(s: &str) -> Result<usize, String> {
    let most = cairn_shared::format::layers::MAX_LAYERS - 1;
    match s.parse::<usize>() {
        Ok(n) if (2..=most).contains(&n) => Ok(n),
        _ => Err(format!("expected a number of layers from 2 to {most}, got {s:?}")),
    }
}

fn bytes_arg(s: &str) -> Result<u64, String> {
    cairn_shared::config::parse_bytes(s)
}
