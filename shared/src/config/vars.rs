//! Every `CAIRN_*` variable the query engine, `cairn serve` and the Lambda read, in one table: what each
//! means and its default (what `cairn serve --help` prints), and the names they replaced, still read with a
//! deprecation warning.

/// One configuration variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// The name it had before, still read (with a warning) when `name` is unset.
    pub replaces: Option<&'static str>,
    pub default: &'static str,
    pub help: &'static str,
}

macro_rules! var {
    ($name:literal, $default:literal, $help:literal) => {
        Var { name: $name, replaces: None, default: $default, help: $help }
    };
    ($name:literal replaces $old:literal, $default:literal, $help:literal) => {
        Var { name: $name, replaces: Some($old), default: $default, help: $help }
    };
}

pub const POINTER_TTL: Var = var!("CAIRN_POINTER_TTL" replaces "CAIRN_MANIFEST_TTL", "5s",
    "how long a keyspace's pointer is trusted before it is read again (0: every request reads it); a publish or rollback reaches readers within it");
pub const METADATA_CACHE: Var =
    var!("CAIRN_METADATA_CACHE", "128MiB", "loaded versions (an eighth) and shard index pieces, in all");
pub const DATA_CACHE: Var = var!("CAIRN_DATA_CACHE" replaces "CAIRN_PAGE_CACHE", "256MiB",
    "decoded blocks and hot shards; size it to the working set for memory-speed lookups");
pub const ATTEMPT_TIMEOUT: Var = var!(
    "CAIRN_ATTEMPT_TIMEOUT",
    "2s",
    "a read of one copy is given up after this (replicated keyspaces fail over to the next copy)"
);
pub const HEDGE_AFTER: Var = var!(
    "CAIRN_HEDGE_AFTER",
    "p95",
    "a read also sent to the next copy after this long (a duration, or off); default the observed p95"
);
pub const REPLICAS: Var = var!(
    "CAIRN_REPLICAS",
    "",
    "replica roots (comma-separated) to read pointers and manifests from when the primary fails"
);
pub const MGET_MAX_BYTES: Var = var!(
    "CAIRN_MGET_MAX_BYTES",
    "8MiB",
    "the most one MGET answers, as encoded (on the Lambda also at most what a function URL returns)"
);
pub const MAX_CONCURRENT_GETS: Var =
    var!("CAIRN_MAX_CONCURRENT_GETS", "256", "store requests in flight per root; more wait");
pub const DEEP_HEALTH: Var = var!(
    "CAIRN_DEEP_HEALTH",
    "off",
    "on: GET /v1/health may be asked for the per-shard report (?shards=true) and checksums (?deep=true)"
);
pub const HEADER_TIMEOUT: Var =
    var!("CAIRN_HEADER_TIMEOUT", "10s", "cairn serve: a request's headers must arrive within this");
pub const BODY_TIMEOUT: Var =
    var!("CAIRN_BODY_TIMEOUT", "10s", "cairn serve: a request's body must arrive within this");
pub const WRITE_TIMEOUT: Var = var!(
    "CAIRN_WRITE_TIMEOUT",
    "10s",
    "cairn serve: a response must be read within this, from its first write that had to wait"
);
pub const MAX_CONNECTIONS: Var =
    var!("CAIRN_MAX_CONNECTIONS", "4096", "cairn serve: connections served at once; more wait in the listen backlog");
pub const STORE: Var =
    var!("CAIRN_STORE", "", "the Lambda: the store root, e.g. s3://bucket/prefix (cairn serve: --store)");
pub const WARM_KEYSPACES: Var = var!(
    "CAIRN_WARM_KEYSPACES",
    "",
    "keyspaces (comma-separated) whose pointer and manifest are loaded at start: the Lambda at init, cairn serve before GET /v1/ready answers ready"
);
pub const METRICS_NAMESPACE: Var =
    var!("CAIRN_METRICS_NAMESPACE", "cairn", "the Lambda: the CloudWatch namespace of its log lines' metrics");
pub const SHARED_CACHE: Var = var!(
    "CAIRN_SHARED_CACHE",
    "",
    "a cache tier every engine shares, over the Redis protocol: redis://[user:password@]host:port or rediss:// (TLS); off when unset"
);
pub const SHARED_CACHE_TIMEOUT: Var = var!(
    "CAIRN_SHARED_CACHE_TIMEOUT",
    "20ms",
    "a shared-cache read not answered within this falls through to the store"
);
pub const SHARED_CACHE_TTL: Var =
    var!("CAIRN_SHARED_CACHE_TTL", "1h", "how long an entry stays in the shared cache (objects never change)");
pub const SHARED_CACHE_CA: Var = var!(
    "CAIRN_SHARED_CACHE_CA",
    "",
    "rediss:// only: a PEM bundle of the roots the tier's certificate must chain to (default: SSL_CERT_FILE if set, else the Mozilla roots built in)"
);
pub const SHARED_CACHE_MAX_ENTRY: Var =
    var!("CAIRN_SHARED_CACHE_MAX_ENTRY", "8MiB", "larger reads (whole hot shards) are not put in the shared cache");
pub const DRAIN_TIMEOUT: Var = var!(
    "CAIRN_DRAIN_TIMEOUT",
    "25s",
    "cairn serve: on SIGTERM it answers not ready, stops accepting, and gives requests in flight this long"
);
pub const DISK_CACHE: Var = var!(
    "CAIRN_DISK_CACHE",
    "",
    "a cache tier on local disk (a node's SSD, the Lambda's /tmp): its directory, reused after a restart; off when unset"
);
pub const DISK_CACHE_SIZE: Var = var!(
    "CAIRN_DISK_CACHE_SIZE",
    "1GiB",
    "the disk tier's budget (default 1GiB, or half the file system when that is smaller)"
);
pub const WARM_SWITCH: Var = var!(
    "CAIRN_WARM_SWITCH",
    "64MiB",
    "before answering from a newly published version, read what the keys recently asked need (off: switch cold)"
);
pub const WARM_SWITCH_TIMEOUT: Var = var!(
    "CAIRN_WARM_SWITCH_TIMEOUT",
    "2s",
    "the longest a switch is warmed (at most half CAIRN_POINTER_TTL; the old version answers meanwhile)"
);
pub const LOG: Var = var!("CAIRN_LOG", "info", "log filter (tracing's EnvFilter syntax)");
pub const LOG_FORMAT: Var = var!("CAIRN_LOG_FORMAT", "text", "log format: text or json");

/// Read by the commands that publish or mend a keyspace (not the server): the primaries the operator says
/// are lost, so a replica given as `--store` may stand in for one that cannot be read
/// (versions/replica_pointer.rs).
pub const PRIMARY_LOST: Var = var!(
    "CAIRN_PRIMARY_LOST",
    "",
    "primary roots (comma-separated URLs) that are lost for good: a replica given as --store stands in for them"
);

/// The table, in the order `--help` prints it.
pub const ALL: [Var; 28] = [
    POINTER_TTL,
    METADATA_CACHE,
    DATA_CACHE,
    ATTEMPT_TIMEOUT,
    HEDGE_AFTER,
    REPLICAS,
    MGET_MAX_BYTES,
    MAX_CONCURRENT_GETS,
    DEEP_HEALTH,
    SHARED_CACHE,
    SHARED_CACHE_TIMEOUT,
    SHARED_CACHE_TTL,
    SHARED_CACHE_MAX_ENTRY,
    SHARED_CACHE_CA,
    DISK_CACHE,
    DISK_CACHE_SIZE,
    WARM_SWITCH,
    WARM_SWITCH_TIMEOUT,
    HEADER_TIMEOUT,
    BODY_TIMEOUT,
    WRITE_TIMEOUT,
    MAX_CONNECTIONS,
    DRAIN_TIMEOUT,
    STORE,
    WARM_KEYSPACES,
    METRICS_NAMESPACE,
    LOG,
    LOG_FORMAT,
];

impl Var {
    /// Its value in the environment: under its name, else under the name it replaced (with a warning).
    pub fn get(&self) -> Option<String> {
        if let Ok(v) = std::env::var(self.name) {
            if let Some(old) = self.replaces.filter(|old| std::env::var_os(old).is_some()) {
                tracing::warn!("{old} is deprecated and ignored: {} is set too, and wins", self.name);
            }
            return Some(v);
        }
        let old = self.replaces?;
        let v = std::env::var(old).ok()?;
        tracing::warn!("{old} is deprecated: it is read as {} (rename it; the old name will go)", self.name);
        Some(v)
    }

    /// Parses its value with `parse`; an error names the variable.
    pub fn parse<T>(&self, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, String> {
        self.get().map(|v| parse(&v).map_err(|e| format!("{}: {e}", self.name))).transpose()
    }
}

/// The table as `--help` shows it.
pub fn help() -> String {
    let mut out = String::from("Environment (also read by the Lambda):\n");
    for v in ALL {
        let default = if v.default.is_empty() { String::new() } else { format!(" [default: {}]", v.default) };
        let replaces = v.replaces.map(|o| format!(" (was {o})")).unwrap_or_default();
        out.push_str(&format!("  {}{replaces}{default}\n      {}\n", v.name, v.help));
    }
    out
}
