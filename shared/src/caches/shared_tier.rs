//! The cache tier engines share (`CAIRN_SHARED_CACHE`): a Redis-protocol server (Redis, Valkey, ElastiCache,
//! MemoryDB) between each engine's memory caches and the object store, so a fleet of Lambda environments or
//! `cairn serve` nodes fetches an object range from the store about once, not once per engine.
//!
//! It only ever makes reads faster: what it holds is immutable object ranges keyed by path and range, and the
//! caller verifies every entry with the checksum it already has before using it (a poisoned entry is
//! refetched from the store and overwritten). A read it does not answer within its timeout, an error, or no
//! connection at all falls through to the store; the connection is made in the background and remade by
//! the client after an outage, so an outage costs speed only.

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
    /// Background writes not yet answered.
    writing: AtomicU64,
    health: TierHealth,
}

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
        let mut get = redis::cmd("GET");
        get.arg(format!("{PREFIX}{key}"));
        let read = get.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(self.config.timeout, read).await {
            Ok(Ok(Some(v))) => {
                self.health.hits.add(1);
                Some(Bytes::from(v))
            }
            Ok(Ok(None)) => {
                self.health.misses.add(1);
                None
            }
            Ok(Err(_)) | Err(_) => {
                self.health.failed();
                None
            }
        }
    }

    /// Counted only: the caller's [`put`](CacheTier::put) of the right bytes overwrites the entry.
    fn poisoned(&self, _key: &str) {
        self.health.poisoned.add(1);
    }

    /// Too large entries are not stored, nor any while the tier rests after a failure.
    fn put(&self, key: &str, bytes: Bytes) {
        if bytes.len() as u64 > self.config.max_entry || self.health.resting() {
            return;
        }
        let Some(mut conn) = self.connection() else { return };
        let Some(me) = self.me.upgrade() else { return };
        let ttl = self.config.ttl.as_secs().max(1);
        let key = format!("{PREFIX}{key}");
        self.writing.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(bytes.as_ref()).arg("EX").arg(ttl);
            let write = set.query_async::<()>(&mut conn);
            match tokio::time::timeout(Duration::from_secs(2), write).await {
                Ok(Ok(())) => me.health.stored.add(1),
                _ => me.health.failed(),
            }
            me.writing.fetch_sub(1, Relaxed);
        });
    }

    fn stats(&self) -> TierStats {
        self.health.stats(self.writing.load(Relaxed), self.conn.load().is_some())
    }
}
