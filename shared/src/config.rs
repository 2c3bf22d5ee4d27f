//! Query engine configuration: defaults suit a 1 GB Lambda; every field also reads a `CAIRN_*` variable.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::failover::FailoverConfig;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How long a keyspace's pointer is trusted before it is re-read (`CAIRN_MANIFEST_TTL`, e.g. `5s`). Past
    /// it, one request re-reads the pointer while the others keep using it, for at most one more TTL
    /// ([`crate::ttl_map`]). A newly published version or a rollback reaches readers within the TTL plus one
    /// pointer read while requests keep coming, and within 2 × TTL at worst.
    pub manifest_ttl: Duration,
    /// Bytes of shard metadata (footers: every block's key range and place) kept (`CAIRN_METADATA_CACHE`,
    /// e.g. `128MiB`).
    pub metadata_cache_bytes: u64,
    /// Bytes of decoded data kept: blocks, and whole shards once lookups touch enough of them
    /// (`CAIRN_PAGE_CACHE`, e.g. `256MiB`).
    pub page_cache_bytes: u64,
    /// Replica failover and hedging (`CAIRN_ATTEMPT_TIMEOUT`, `CAIRN_HEDGE_AFTER` = a duration or `off`).
    pub failover: FailoverConfig,
    /// Replica roots to read a keyspace's pointer and manifest from when the primary root fails or does not
    /// answer within the attempt timeout (`CAIRN_REPLICAS`, comma-separated, as `cairn ingest --replicas`).
    /// Roots named by a keyspace's manifest are tried too, once one version of it was read.
    pub replicas: Vec<String>,
    /// Value bytes one MGET may return (`CAIRN_MGET_MAX_BYTES`): larger answers are refused, not built.
    pub mget_max_bytes: u64,
    /// Store reads (shard footers and blocks) in flight per process (`CAIRN_MAX_CONCURRENT_GETS`); more wait.
    pub max_concurrent_gets: usize,
    /// Whether `GET /v1/health?deep=true` may run (`CAIRN_DEEP_HEALTH=on`): it reads every shard of every
    /// keyspace from every root, too much to offer any caller. Off by default; `cairn health --deep` is the
    /// operator's way.
    pub deep_health: bool,
}

/// Lookups one MGET keeps in flight (its keys are answered in order, this many at a time).
pub const MGET_CONCURRENCY: usize = 32;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            manifest_ttl: Duration::from_secs(5),
            metadata_cache_bytes: 128 << 20,
            page_cache_bytes: 256 << 20,
            failover: FailoverConfig::default(),
            replicas: Vec::new(),
            mget_max_bytes: 8 << 20,
            max_concurrent_gets: 256,
            deep_health: false,
        }
    }
}

impl EngineConfig {
    pub fn from_env() -> Result<Self> {
        let mut c = EngineConfig::default();
        if let Ok(v) = std::env::var("CAIRN_MANIFEST_TTL") {
            c.manifest_ttl = parse_duration(&v).map_err(|e| Error::Config(format!("CAIRN_MANIFEST_TTL: {e}")))?;
        }
        if let Ok(v) = std::env::var("CAIRN_METADATA_CACHE") {
            c.metadata_cache_bytes =
                parse_bytes(&v).map_err(|e| Error::Config(format!("CAIRN_METADATA_CACHE: {e}")))?;
        }
        if let Ok(v) = std::env::var("CAIRN_PAGE_CACHE") {
            c.page_cache_bytes = parse_bytes(&v).map_err(|e| Error::Config(format!("CAIRN_PAGE_CACHE: {e}")))?;
        }
        if let Ok(v) = std::env::var("CAIRN_ATTEMPT_TIMEOUT") {
            c.failover.attempt_timeout =
                parse_duration(&v).map_err(|e| Error::Config(format!("CAIRN_ATTEMPT_TIMEOUT: {e}")))?;
        }
        if let Ok(v) = std::env::var("CAIRN_REPLICAS") {
            c.replicas = v.split(',').map(str::trim).filter(|u| !u.is_empty()).map(String::from).collect();
        }
        if let Ok(v) = std::env::var("CAIRN_MGET_MAX_BYTES") {
            c.mget_max_bytes = parse_bytes(&v).map_err(|e| Error::Config(format!("CAIRN_MGET_MAX_BYTES: {e}")))?;
        }
        if let Ok(v) = std::env::var("CAIRN_MAX_CONCURRENT_GETS") {
            c.max_concurrent_gets = match v.trim().parse() {
                Ok(n) if n > 0 => n,
                _ => return Err(Error::Config(format!("CAIRN_MAX_CONCURRENT_GETS: {v:?} is not a positive count"))),
            };
        }
        if let Ok(v) = std::env::var("CAIRN_DEEP_HEALTH") {
            c.deep_health = match v.trim() {
                "on" | "true" | "1" => true,
                "off" | "false" | "0" | "" => false,
                _ => return Err(Error::Config(format!("CAIRN_DEEP_HEALTH: {v:?} (use on or off)"))),
            };
        }
        match std::env::var("CAIRN_HEDGE_AFTER").as_deref() {
            Ok("off") => c.failover.hedging = false,
            Ok(v) => {
                c.failover.hedge_after =
                    Some(parse_duration(v).map_err(|e| Error::Config(format!("CAIRN_HEDGE_AFTER: {e}")))?)
            }
            Err(_) => {}
        }
        Ok(c)
    }
}

/// `5s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e} (expected e.g. 5s or 500ms)"))
}

/// `1048576`, `64KiB`, `128MiB`, `2GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (expected e.g. 128MiB)"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        u => return Err(format!("unknown unit {u:?} in {s:?}")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(super::parse_bytes("42"), Ok(42));
        assert!(super::parse_bytes("12 parsecs").is_err());
        assert!(super::parse_bytes("MiB").is_err());
    }
}
