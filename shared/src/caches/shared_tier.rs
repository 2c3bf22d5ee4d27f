//! The cache tier engines share (`CAIRN_SHARED_CACHE`): a Redis-protocol server (Redis, Valkey, ElastiCache,
//! MemoryDB) between each engine's memory caches and the object store, so a fleet of Lambda environments or
//! `cairn serve` nodes fetches an object range from the store about once, not once per engine.
//!
//! It only ever makes reads faster: what it holds is immutable object ranges keyed by path and range, and the
//! caller verifies every entry with the checksum it already has before using it (a poisoned entry is
//! deleted, refetched from the store and written again). A read it does not answer within its timeout, an
//! error, or no connection at all falls through to the store; the connection is made in the background,
//! remade by the client after a network error and by the tier after reads that keep failing, so an outage
//! costs speed only. What a server returns is bounded by the largest entry, and so are writes in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use redis::aio::ConnectionManager;

use crate::caches::tier::{CacheTier, TierHealth, TierStats};
use crate::config::SharedCacheConfig;

pub struct SharedTier {
    /// Itself, for the background tasks it starts.
    me: Weak<SharedTier>,
    config: SharedCacheConfig,
    client: redis::Client,
    conn: ArcSwapOption<ConnectionManager>,
    connecting: AtomicBool,
    /// Background writes not yet answered, and their bytes.
    writing: AtomicU64,
    writing_bytes: AtomicU64,
    /// Reads failed or late in a row: past [`STALE_AFTER`], the connection is made anew.
    failing: AtomicU64,
    health: TierHealth,
}

/// Writes in flight at once, and their bytes (one larger entry is let through alone); more are skipped: a
/// cache write never waits, and what waits is bounded.
const MAX_WRITES: u64 = 32;
const MAX_WRITING_BYTES: u64 = 64 << 20;
/// Failed reads in a row after which the connection is dropped and made anew: the client remakes it after a
/// network error only, not after a server that stopped answering on it (a hung node, a failover that
/// black-holed it), nor after its own reconnect failed in setup (a refused AUTH during a password rotation,
/// which it then returns for ever): either would keep the tier dead until the process restarts. A late or
/// lost read counts [`LATE`] towards it, an error the server answered 1 (a missing permission is more
/// likely than a broken connection, so it takes longer to remake).
const STALE_AFTER: u64 = 12;
const LATE: u64 = 4;

impl std::fmt::Debug for SharedTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTier").field("connected", &self.conn.load().is_some()).finish()
    }
}

/// A connection attempt in flight: clears `connecting` when dropped.
struct Attempt(Arc<SharedTier>);

impl Drop for Attempt {
    fn drop(&mut self) {
        self.0.connecting.store(false, Relaxed);
    }
}

/// Key prefix: the layout revision of entries, so a change of what is stored never reads old entries.
const PREFIX: &str = "cairn:1:";

impl SharedTier {
    /// The tier `config` names; an unparsable URL is an error (a running tier's outage is not).
    pub fn new(config: SharedCacheConfig) -> Result<Arc<SharedTier>, String> {
        // rustls is built with two providers in this workspace (aws-lc-rs, and ring through the CLI's
        // reqwest), so it cannot pick one itself: without a process default, a rediss:// connection panicked
        // in the background and the tier never came up. One already installed is kept.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let tls = config.url.starts_with("rediss://");
        let client = match config.ca.as_ref().filter(|_| tls) {
            // Exactly these roots for the tier (rediss:// only), instead of the Mozilla roots built in.
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("CAIRN_SHARED_CACHE_CA {}: {e}", path.display()))?;
                let certs = redis::TlsCertificates { client_tls: None, root_cert: Some(pem) };
                redis::Client::build_with_tls(config.url.as_str(), certs)
            }
            None => redis::Client::open(config.url.as_str()),
        }
        .map_err(|e| format!("CAIRN_SHARED_CACHE: {e}"))?;
        Ok(Arc::new_cyclic(|me| SharedTier {
            me: me.clone(),
            config,
            client,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            writing: AtomicU64::new(0),
            writing_bytes: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            health: TierHealth::default(),
        }))
    }

    /// The connection, or None while there is none: one is then being made in the background.
    fn connection(&self) -> Option<ConnectionManager> {
        if let Some(c) = self.conn.load_full() {
            return Some((*c).clone());
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current()
            && let Some(me) = self.me.upgrade()
            && !self.connecting.swap(true, Relaxed)
        {
            rt.spawn(async move {
                // Cleared however the attempt ends (a panic in the client included), so a later lookup
                // tries again.
                let _attempt = Attempt(me.clone());
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(me.config.timeout.max(Duration::from_millis(200))));
                match me.client.get_connection_manager_with_config(config).await {
                    Ok(c) => me.conn.store(Some(Arc::new(c))),
                    Err(e) => {
                        me.health.failed();
                        tracing::warn!(error = %e, "shared cache unreachable; reading from the store");
                        // Try again a little later, not on every lookup.
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            });
        }
        None
    }
}

/// A background write (a SET, or a DEL of a poisoned entry) in flight, given back however it ends.
struct WriteSlot(Arc<SharedTier>, u64);

impl WriteSlot {
    /// Counted first, then checked (and given back when over): two lookups at once cannot both pass a check
    /// of the same count.
    fn take(tier: &Arc<SharedTier>, bytes: u64) -> Option<WriteSlot> {
        let writes = tier.writing.fetch_add(1, Relaxed);
        let queued = tier.writing_bytes.fetch_add(bytes, Relaxed);
        let slot = WriteSlot(tier.clone(), bytes);
        (writes < MAX_WRITES && (queued == 0 || queued + bytes <= MAX_WRITING_BYTES)).then_some(slot)
    }
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        self.0.writing.fetch_sub(1, Relaxed);
        self.0.writing_bytes.fetch_sub(self.1, Relaxed);
    }
}

#[async_trait::async_trait]
impl CacheTier for SharedTier {
    fn name(&self) -> &'static str {
        "shared"
    }

    async fn get(&self, key: &str) -> Option<Bytes> {
        if self.health.resting() {
            return None;
        }
        let mut conn = self.connection()?;
        // At most one byte past the largest entry the tier stores: a larger value is not read whole.
        let mut get = redis::cmd("GETRANGE");
        get.arg(format!("{PREFIX}{key}")).arg(0).arg(self.config.max_entry);
        let read = get.query_async::<Vec<u8>>(&mut conn);
        match tokio::time::timeout(self.config.timeout, read).await {
            // Another engine's, whose limit is larger (a fleet changing it): a miss, left to it.
            Ok(Ok(v)) if v.len() as u64 > self.config.max_entry => {
                self.failing.store(0, Relaxed);
                self.health.misses.add(1);
                None
            }
            // A missing key reads as empty; no entry is.
            Ok(Ok(v)) if v.is_empty() => {
                self.failing.store(0, Relaxed);
                self.health.misses.add(1);
                None
            }
            Ok(Ok(v)) => {
                self.failing.store(0, Relaxed);
                self.health.hits.add(1);
                Some(Bytes::from(v))
            }
            failed => {
                self.health.failed();
                let weight = match failed {
                    Ok(Err(e)) if !(e.is_timeout() || e.is_io_error() || e.is_connection_dropped()) => 1,
                    _ => LATE,
                };
                if self.failing.fetch_add(weight, Relaxed) + weight >= STALE_AFTER {
                    self.failing.store(0, Relaxed);
                    if self.conn.swap(None).is_some() {
                        tracing::warn!("shared cache not answering: making a new connection");
                    }
                }
                None
            }
        }
    }

    /// Counted, and deleted: the caller's [`put`](CacheTier::put) of the right bytes is skipped while the
    /// tier rests or when they are too large, and the bad entry must not be read again meanwhile.
    fn poisoned(&self, key: &str) {
        self.health.poisoned.add(1);
        let (Some(mut conn), Some(me)) = (self.connection(), self.me.upgrade()) else { return };
        let Some(_write) = WriteSlot::take(&me, 0) else { return };
        let key = format!("{PREFIX}{key}");
        tokio::spawn(async move {
            let _write = _write;
            let mut delete = redis::cmd("DEL");
            delete.arg(&key);
            let delete = delete.query_async::<()>(&mut conn);
            if !matches!(tokio::time::timeout(Duration::from_secs(2), delete).await, Ok(Ok(()))) {
                me.health.errors.add(1);
            }
        });
    }

    /// Too large entries are not stored, nor any while the tier rests after a failure or while too many
    /// writes are in flight. A failed write is counted but does not rest the tier: a full server still reads.
    fn put(&self, key: &str, bytes: Bytes) {
        if bytes.len() as u64 > self.config.max_entry || self.health.resting() {
            return;
        }
        let Some(mut conn) = self.connection() else { return };
        let Some(me) = self.me.upgrade() else { return };
        let Some(write) = WriteSlot::take(&me, bytes.len() as u64) else { return };
        let ttl = self.config.ttl.as_secs().max(1);
        let key = format!("{PREFIX}{key}");
        tokio::spawn(async move {
            let _write = write;
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(bytes.as_ref()).arg("EX").arg(ttl);
            let write = set.query_async::<()>(&mut conn);
            match tokio::time::timeout(Duration::from_secs(2), write).await {
                Ok(Ok(())) => me.health.stored.add(1),
                _ => me.health.errors.add(1),
            }
        });
    }

    fn stats(&self) -> TierStats {
        self.health.stats(self.writing.load(Relaxed), self.conn.load().is_some())
    }
}
