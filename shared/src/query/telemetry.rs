//! The engine's figures for `/metrics` beyond its caches: per-root reads (through [`MeteredStore`]), replica
//! failover totals, checksum failures, hot shards, and the versions served. Counters only grow (a keyspace
//! version dropped from the caches keeps its counts here), so Prometheus `rate()` reads them correctly.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use crate::caches::arena::ArenaStats;
use crate::caches::counted::CacheStats;
use crate::stores::metered::{MeteredStore, RootMetrics, RootSnapshot};
use crate::stores::replicated::ReplicaTotals;
use crate::stores::url::Store;

#[derive(Debug, Default)]
pub(crate) struct EngineTelemetry {
    /// Per root URL, in the order the engine first opened them (the primary first).
    roots: Mutex<Vec<(String, Arc<RootMetrics>)>>,
    pub(crate) replicas: Arc<ReplicaTotals>,
    /// Reads from an unreplicated keyspace whose bytes failed verification (replicated ones count in
    /// `replicas.corrupt`).
    pub(crate) checksum_failures: AtomicU64,
    /// Whole shards in the data cache: +1 on insert, -1 on any removal (a replaced one included).
    pub(crate) hot_shards: Arc<AtomicI64>,
    pub(crate) switches: SwitchCounts,
}

/// Version switches a refresh warmed first (engine's `warm_switch`).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct SwitchTotals {
    pub warmed: u64,
    /// Of those, the ones cut short by the timeout.
    pub timed_out: u64,
    pub keys: u64,
    pub bytes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct SwitchCounts {
    warmed: AtomicU64,
    timed_out: AtomicU64,
    keys: AtomicU64,
    bytes: AtomicU64,
}

/// The engine's read totals and cache figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EngineStats {
    pub store: String,
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub caches: Vec<CacheStats>,
    pub hot_arena: ArenaStats,
    /// The shared cache tier's figures, when there is one (its hits and misses are also the `shared` cache
    /// in `caches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_tier: Option<crate::caches::tier::TierStats>,
    /// The local-disk tier's figures, when there is one (also the `disk` cache in `caches`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_tier: Option<crate::caches::tier::TierStats>,
    /// Version switches warmed before readers moved.
    pub switches: SwitchTotals,
}

/// A published version this process answers from.
#[derive(Debug, Clone)]
pub struct ServedKeyspace {
    pub keyspace: String,
    pub version: String,
    /// The pointer's sequence number: it grows with every publish and rollback.
    pub seq: u64,
    pub keys: u64,
    pub bytes: u64,
}

/// Replica read totals at one moment.
#[derive(Debug, Clone, Default)]
pub struct ReplicaCounts {
    pub reads: u64,
    pub failovers: u64,
    pub hedges: u64,
    pub hedge_wins: u64,
    pub failed_reads: u64,
}

/// Everything [`Engine::telemetry`](crate::query::Engine::telemetry) reports.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub caches: Vec<CacheStats>,
    pub roots: Vec<RootSnapshot>,
    pub replicas: ReplicaCounts,
    /// Copies (replicated keyspaces) or reads (unreplicated ones) whose bytes failed verification.
    pub checksum_failures: u64,
    pub hot_shards: u64,
    pub hot_arena: ArenaStats,
    pub keyspaces: Vec<ServedKeyspace>,
    pub switches: SwitchTotals,
    /// The cache tiers' own figures (name, figures), nearest first.
    pub tiers: Vec<(&'static str, crate::caches::tier::TierStats)>,
}

impl EngineTelemetry {
    /// `store` behind a [`MeteredStore`] counting into this root URL's figures (one set per URL, however
    /// often it is opened).
    pub(crate) fn metered(&self, store: Store) -> Store {
        let mut roots = self.roots.lock().expect("root metrics");
        let metrics = match roots.iter().find(|(url, _)| *url == store.url) {
            Some((_, m)) => m.clone(),
            None => {
                let m = Arc::new(RootMetrics::default());
                roots.push((store.url.clone(), m.clone()));
                m
            }
        };
        Store { inner: Arc::new(MeteredStore::new(store.inner, metrics)), url: store.url }
    }

    /// (failovers, hedges, checksum failures) so far: cheap enough per request.
    pub(crate) fn replica_counts(&self) -> (u64, u64, u64) {
        let r = &self.replicas;
        let checksum = self.checksum_failures.load(Relaxed) + r.corrupt.load(Relaxed);
        (r.failovers.load(Relaxed), r.hedges.load(Relaxed), checksum)
    }

    /// Counts one warmed switch.
    pub(crate) fn switched(&self, keys: u64, bytes: u64, finished: bool) {
        let s = &self.switches;
        s.warmed.fetch_add(1, Relaxed);
        s.timed_out.fetch_add(u64::from(!finished), Relaxed);
        s.keys.fetch_add(keys, Relaxed);
        s.bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn switch_totals(&self) -> SwitchTotals {
        let s = &self.switches;
        SwitchTotals {
            warmed: s.warmed.load(Relaxed),
            timed_out: s.timed_out.load(Relaxed),
            keys: s.keys.load(Relaxed),
            bytes: s.bytes.load(Relaxed),
        }
    }

    pub(crate) fn snapshot(&self, stats: EngineStats, keyspaces: Vec<ServedKeyspace>) -> Telemetry {
        let roots = self.roots.lock().expect("root metrics").iter().map(|(url, m)| m.snapshot(url)).collect();
        let r = &self.replicas;
        Telemetry {
            object_gets: stats.object_gets,
            bytes_fetched: stats.bytes_fetched,
            caches: stats.caches,
            roots,
            replicas: ReplicaCounts {
                reads: r.reads.load(Relaxed),
                failovers: r.failovers.load(Relaxed),
                hedges: r.hedges.load(Relaxed),
                hedge_wins: r.hedge_wins.load(Relaxed),
                failed_reads: r.failed_reads.load(Relaxed),
            },
            checksum_failures: self.checksum_failures.load(Relaxed) + r.corrupt.load(Relaxed),
            hot_shards: self.hot_shards.load(Relaxed).max(0) as u64,
            hot_arena: stats.hot_arena,
            keyspaces,
            switches: self.switch_totals(),
            tiers: [("disk", stats.disk_tier), ("shared", stats.shared_tier)]
                .into_iter()
                .filter_map(|(n, s)| Some((n, s?)))
                .collect(),
        }
    }
}
