//! Configuration of the query engine and of `cairn serve`, parsed and validated in one place from the
//! `CAIRN_*` environment (vars.rs lists every variable). Defaults suit a 1 GB Lambda. A value that cannot be
//! right (a zero timeout, a cache of 0 bytes, an unknown unit) is an error at start, naming the variable.

pub mod units;
pub mod vars;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::stores::replicated::FailoverConfig;

pub use units::{parse_bytes, parse_duration};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a keyspace's pointer is trusted before it is re-read (`CAIRN_POINTER_TTL`). Past it, one
    /// request re-reads the pointer while the others keep using it, for at most one more TTL
    /// (caches/ttl_map.rs): a publish or rollback reaches readers within the TTL plus one pointer read while
    /// requests keep coming, and within 2 × TTL at worst.
    pub pointer_ttl: Duration,
    /// Bytes of metadata kept (`CAIRN_METADATA_CACHE`): loaded versions get an eighth, shard index pieces the
    /// rest.
    pub metadata_cache_bytes: u64,
    /// Bytes of decoded data kept: blocks, and whole shards once lookups touch enough of them
    /// (`CAIRN_DATA_CACHE`).
    pub data_cache_bytes: u64,
    /// Replica failover and hedging (`CAIRN_ATTEMPT_TIMEOUT`, `CAIRN_HEDGE_AFTER` = a duration or `off`).
    pub failover: FailoverConfig,
    /// Replica roots to read a keyspace's pointer and manifest from when the primary root fails or does not
    /// answer within the attempt timeout (`CAIRN_REPLICAS`). Roots a keyspace's manifest names are tried
    /// too, once one version of it was read.
    pub replicas: Vec<String>,
    /// The most one MGET answers, encoded (`CAIRN_MGET_MAX_BYTES`): larger answers are refused, not built.
    pub mget_max_bytes: u64,
    /// Store requests in flight per root (`CAIRN_MAX_CONCURRENT_GETS`); more wait.
    pub max_concurrent_gets: usize,
    /// Whether `GET /v1/health` may be asked for its per-shard report or a deep check
    /// (`CAIRN_DEEP_HEALTH=on`): work proportional to the whole store, for operators only.
    pub deep_health: bool,
    /// The cache tier engines share (`CAIRN_SHARED_CACHE`): None when unset.
    pub shared_cache: Option<SharedCacheConfig>,
    /// The local-disk cache tier (`CAIRN_DISK_CACHE`): None when unset.
    pub disk_cache: Option<DiskCacheConfig>,
    /// Warming before a version switch: at most these bytes (`CAIRN_WARM_SWITCH`; 0: off) within this
    /// time (`CAIRN_WARM_SWITCH_TIMEOUT`, at most half the pointer TTL).
    pub warm_switch_bytes: u64,
    pub warm_switch_timeout: Duration,
}

/// Where the local-disk cache tier keeps its files (caches/disk_tier.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCacheConfig {
    pub path: std::path::PathBuf,
    /// The byte budget (`CAIRN_DISK_CACHE_SIZE`); None: 1 GiB, or half the file system if smaller.
    pub size: Option<u64>,
}

/// Where the shared cache tier is and how it is used (caches/shared_tier.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct SharedCacheConfig {
    /// `redis://` or `rediss://` (TLS), with AUTH credentials in the URL.
    pub url: String,
    /// A read not answered within this falls through to the store (`CAIRN_SHARED_CACHE_TIMEOUT`).
    pub timeout: Duration,
    /// Entry lifetime (`CAIRN_SHARED_CACHE_TTL`).
    pub ttl: Duration,
    /// Larger reads are not stored (`CAIRN_SHARED_CACHE_MAX_ENTRY`).
    pub max_entry: u64,
    /// The roots a `rediss://` tier's certificate must chain to (`CAIRN_SHARED_CACHE_CA`, else
    /// `SSL_CERT_FILE`): a PEM bundle; None: the Mozilla roots built in (ElastiCache's included).
    pub ca: Option<std::path::PathBuf>,
}

impl SharedCacheConfig {
    pub fn new(url: impl Into<String>) -> Self {
        SharedCacheConfig {
            url: url.into(),
            timeout: Duration::from_millis(20),
            ttl: Duration::from_secs(3600),
            max_entry: 8 << 20,
            ca: None,
        }
    }
}

/// Lookups one MGET keeps in flight (its keys are answered in order, this many at a time).
pub const MGET_CONCURRENCY: usize = 32;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pointer_ttl: Duration::from_secs(5),
            metadata_cache_bytes: 128 << 20,
            data_cache_bytes: 256 << 20,
            failover: FailoverConfig::default(),
            replicas: Vec::new(),
            mget_max_bytes: 8 << 20,
            max_concurrent_gets: 256,
            deep_health: false,
            shared_cache: None,
            disk_cache: None,
            warm_switch_bytes: 64 << 20,
            warm_switch_timeout: Duration::from_secs(2),
        }
    }
}

/// The least `CAIRN_METADATA_CACHE`.
const MIN_METADATA_CACHE: u64 = 1 << 20;

fn config(e: String) -> Error {
    Error::Config(e)
}

impl EngineConfig {
    pub fn from_env() -> Result<Self> {
        use vars::*;
        let mut c = EngineConfig::default();
        if let Some(v) = POINTER_TTL.parse(units::parse_duration).map_err(config)? {
            c.pointer_ttl = v;
        }
        if let Some(v) = METADATA_CACHE.parse(units::parse_size).map_err(config)? {
            // An eighth of it holds loaded versions: below this, not even one small version would fit.
            if v < MIN_METADATA_CACHE {
                return Err(config(format!(
                    "{}: {v} bytes is below the least it works with, 1MiB",
                    METADATA_CACHE.name
                )));
            }
            c.metadata_cache_bytes = v;
        }
        if let Some(v) = DATA_CACHE.parse(units::parse_size).map_err(config)? {
            c.data_cache_bytes = v;
        }
        if let Some(v) = ATTEMPT_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.failover.attempt_timeout = v;
        }
        c.replicas = list(REPLICAS.get());
        if let Some(v) = MGET_MAX_BYTES.parse(units::parse_size).map_err(config)? {
            c.mget_max_bytes = v;
        }
        if let Some(v) = MAX_CONCURRENT_GETS.parse(units::parse_count).map_err(config)? {
            c.max_concurrent_gets = v;
        }
        if let Some(v) = DEEP_HEALTH.parse(units::parse_switch).map_err(config)? {
            c.deep_health = v;
        }
        if let Some(url) = SHARED_CACHE.get().filter(|u| !u.trim().is_empty()) {
            let url = url.trim().to_string();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(config(format!("{}: {url:?} is not a redis:// or rediss:// URL", SHARED_CACHE.name)));
            }
            let mut s = SharedCacheConfig::new(url);
            if let Some(v) = SHARED_CACHE_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
                s.timeout = v;
            }
            if let Some(v) = SHARED_CACHE_TTL.parse(units::parse_timeout).map_err(config)? {
                s.ttl = v;
            }
            if let Some(v) = SHARED_CACHE_MAX_ENTRY.parse(units::parse_size).map_err(config)? {
                s.max_entry = v;
            }
            if s.url.starts_with("rediss://") {
                let ca = SHARED_CACHE_CA.get().or_else(|| std::env::var("SSL_CERT_FILE").ok());
                s.ca = ca.map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).map(Into::into);
            }
            c.shared_cache = Some(s);
        }
        let disk_size = DISK_CACHE_SIZE.parse(units::parse_size).map_err(config)?;
        if disk_size.is_some_and(|s| s < 1 << 20) {
            return Err(config(format!("{}: below the least it works with, 1MiB", DISK_CACHE_SIZE.name)));
        }
        if let Some(path) = DISK_CACHE.get().filter(|p| !p.trim().is_empty()) {
            // Absolute now: a later change of working directory must not move the cache.
            let path = std::path::absolute(path.trim()).map_err(|e| config(format!("{}: {e}", DISK_CACHE.name)))?;
            c.disk_cache = Some(DiskCacheConfig { path, size: disk_size });
        }
        match WARM_SWITCH.get().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("on") => {}
            Some("off") => c.warm_switch_bytes = 0,
            Some(v) => {
                c.warm_switch_bytes = units::parse_bytes(v).map_err(|e| config(format!("{}: {e}", WARM_SWITCH.name)))?
            }
        }
        if let Some(v) = WARM_SWITCH_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.warm_switch_timeout = v;
        }
        match HEDGE_AFTER.get().map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            Some("off") => c.failover.hedging = false,
            Some("p95") => {} // the default, as --help shows it
            Some(v) => {
                c.failover.hedge_after =
                    Some(units::parse_timeout(v).map_err(|e| config(format!("{}: {e}", HEDGE_AFTER.name)))?)
            }
            None => {}
        }
        Ok(c)
    }
}

/// What one `cairn serve` lets its clients hold.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// A request's headers must arrive within this (`CAIRN_HEADER_TIMEOUT`), or the connection is closed.
    pub header_timeout: Duration,
    /// A request's body must arrive within this (`CAIRN_BODY_TIMEOUT`), or it is answered 408.
    pub body_timeout: Duration,
    /// A response write that makes no progress for this long (`CAIRN_WRITE_TIMEOUT`: the client stopped
    /// reading) ends the connection.
    pub write_timeout: Duration,
    /// Connections served at once (`CAIRN_MAX_CONNECTIONS`); further ones wait in the listen backlog.
    pub max_connections: usize,
    /// After SIGTERM, how long requests in flight get to finish (`CAIRN_DRAIN_TIMEOUT`).
    pub drain_timeout: Duration,
    /// Keyspaces loaded before the server answers ready (`CAIRN_WARM_KEYSPACES`).
    pub warm_keyspaces: Vec<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(25),
            warm_keyspaces: Vec::new(),
        }
    }
}

impl ServeConfig {
    pub fn from_env() -> Result<Self> {
        use vars::*;
        let mut c = ServeConfig::default();
        if let Some(v) = HEADER_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.header_timeout = v;
        }
        if let Some(v) = BODY_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.body_timeout = v;
        }
        if let Some(v) = WRITE_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.write_timeout = v;
        }
        if let Some(v) = MAX_CONNECTIONS.parse(units::parse_count).map_err(config)? {
            c.max_connections = v;
        }
        if let Some(v) = DRAIN_TIMEOUT.parse(units::parse_timeout).map_err(config)? {
            c.drain_timeout = v;
        }
        c.warm_keyspaces = keyspaces(WARM_KEYSPACES.get())?;
        Ok(c)
    }
}

/// What the Lambda reads beyond the engine's configuration.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    /// The store root (`CAIRN_STORE`): required.
    pub store: String,
    /// Keyspaces whose pointer and manifest are loaded at init (`CAIRN_WARM_KEYSPACES`).
    pub warm_keyspaces: Vec<String>,
    /// The CloudWatch namespace of its EMF lines (`CAIRN_METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl LambdaConfig {
    pub fn from_env() -> Result<Self> {
        use vars::*;
        let store = STORE
            .get()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| config(format!("{} must name the store root, e.g. s3://bucket/prefix", STORE.name)))?;
        Ok(LambdaConfig {
            store,
            warm_keyspaces: keyspaces(WARM_KEYSPACES.get())?,
            metrics_namespace: metrics_namespace(),
        })
    }
}

/// The CloudWatch namespace of EMF lines (`CAIRN_METRICS_NAMESPACE`, blank: the default).
pub fn metrics_namespace() -> String {
    vars::METRICS_NAMESPACE
        .get()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| vars::METRICS_NAMESPACE.default.into())
}

/// How logs are written (`CAIRN_LOG`, `CAIRN_LOG_FORMAT`).
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// tracing's EnvFilter syntax.
    pub filter: String,
    /// JSON lines (`Some(true)`), text (`Some(false)`), or whichever suits where logs go (`None`).
    pub json: Option<bool>,
}

impl LogConfig {
    pub fn from_env() -> Result<Self> {
        use vars::*;
        let json = match LOG_FORMAT.get().as_deref().map(str::trim) {
            None | Some("") => None,
            Some("json") => Some(true),
            Some("text") => Some(false),
            Some(other) => return Err(config(format!("{}: {other:?} is not json or text", LOG_FORMAT.name))),
        };
        let filter = LOG.get().filter(|f| !f.trim().is_empty()).unwrap_or_else(|| LOG.default.into());
        Ok(LogConfig { filter, json })
    }
}

/// `CAIRN_WARM_KEYSPACES`: names a keyspace can have (a typo would otherwise keep a server not ready for
/// good, retrying).
fn keyspaces(v: Option<String>) -> Result<Vec<String>> {
    let names = list(v);
    for n in &names {
        crate::key::validate_keyspace(n)
            .map_err(|e| config(format!("{}: {n:?} is not a keyspace name: {e}", vars::WARM_KEYSPACES.name)))?;
    }
    Ok(names)
}

/// A comma-separated list, blanks dropped.
fn list(v: Option<String>) -> Vec<String> {
    v.unwrap_or_default().split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test touches the environment (tests run on threads of one process).
    #[test]
    fn the_environment_is_read_validated_and_old_names_still_work() {
        let set = |k: &str, v: &str| unsafe { std::env::set_var(k, v) };
        let unset = |k: &str| unsafe { std::env::remove_var(k) };
        set("CAIRN_MANIFEST_TTL", "7s");
        set("CAIRN_PAGE_CACHE", "3MiB");
        let c = EngineConfig::from_env().unwrap();
        assert_eq!((c.pointer_ttl, c.data_cache_bytes), (Duration::from_secs(7), 3 << 20), "old names are read");
        set("CAIRN_POINTER_TTL", "1s");
        assert_eq!(EngineConfig::from_env().unwrap().pointer_ttl, Duration::from_secs(1), "the new name wins");
        for (k, v, why) in [
            ("CAIRN_ATTEMPT_TIMEOUT", "0s", "above 0"),
            ("CAIRN_METADATA_CACHE", "0", "above 0"),
            ("CAIRN_METADATA_CACHE", "7", "least"),
            ("CAIRN_DATA_CACHE", "0", "above 0"),
            ("CAIRN_MAX_CONCURRENT_GETS", "18446744073709551615", "allowed"),
            ("CAIRN_HEDGE_AFTER", "0s", "above 0"),
            ("CAIRN_MGET_MAX_BYTES", "12 parsecs", "unknown unit"),
            ("CAIRN_MAX_CONCURRENT_GETS", "-1", "positive"),
        ] {
            set(k, v);
            let e = EngineConfig::from_env().unwrap_err().to_string();
            assert!(e.contains(k) && e.contains(why), "{k}={v}: {e}");
            unset(k);
        }
        for (v, hedging) in [("p95", true), (" OFF ", false)] {
            set("CAIRN_HEDGE_AFTER", v);
            let f = EngineConfig::from_env().unwrap().failover;
            assert_eq!((f.hedging, f.hedge_after), (hedging, None), "CAIRN_HEDGE_AFTER={v}");
        }
        unset("CAIRN_HEDGE_AFTER");
        set("CAIRN_WRITE_TIMEOUT", "0ms");
        assert!(ServeConfig::from_env().unwrap_err().to_string().contains("CAIRN_WRITE_TIMEOUT"));
        for k in ["CAIRN_MANIFEST_TTL", "CAIRN_PAGE_CACHE", "CAIRN_POINTER_TTL", "CAIRN_WRITE_TIMEOUT"] {
            unset(k);
        }
        assert!(vars::help().contains("CAIRN_DATA_CACHE (was CAIRN_PAGE_CACHE)"));
        set("CAIRN_LOG_FORMAT", "yaml");
        assert!(LogConfig::from_env().unwrap_err().to_string().contains("CAIRN_LOG_FORMAT"));
        unset("CAIRN_LOG_FORMAT");
        assert!(LambdaConfig::from_env().unwrap_err().to_string().contains("CAIRN_STORE"));
        set("CAIRN_STORE", "s3://b/p");
        set("CAIRN_WARM_KEYSPACES", "a,Not Valid");
        assert!(LambdaConfig::from_env().unwrap_err().to_string().contains("CAIRN_WARM_KEYSPACES"));
        set("CAIRN_DISK_CACHE_SIZE", "1KiB");
        assert!(EngineConfig::from_env().unwrap_err().to_string().contains("CAIRN_DISK_CACHE_SIZE"));
        set("CAIRN_DISK_CACHE_SIZE", "2MiB");
        set("CAIRN_DISK_CACHE", "rel/dir");
        let d = EngineConfig::from_env().unwrap().disk_cache.unwrap();
        assert!(d.path.is_absolute() && d.path.ends_with("rel/dir") && d.size == Some(2 << 20), "{d:?}");
        unset("CAIRN_DISK_CACHE");
        unset("CAIRN_DISK_CACHE_SIZE");
        set("CAIRN_WARM_SWITCH", "off");
        assert_eq!(EngineConfig::from_env().unwrap().warm_switch_bytes, 0);
        set("CAIRN_WARM_SWITCH", "12 parsecs");
        assert!(EngineConfig::from_env().unwrap_err().to_string().contains("CAIRN_WARM_SWITCH"));
        unset("CAIRN_WARM_SWITCH");
        set("CAIRN_WARM_KEYSPACES", " a, ,b ");
        let l = LambdaConfig::from_env().unwrap();
        assert_eq!((l.store.as_str(), l.warm_keyspaces), ("s3://b/p", vec!["a".to_string(), "b".to_string()]));
        unset("CAIRN_STORE");
        unset("CAIRN_WARM_KEYSPACES");
    }
}
