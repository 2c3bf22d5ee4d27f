//! Reads that survive a lost or slow copy: an `ObjectStore` decorator over R replica roots holding the same
//! objects at the same paths. For each read it orders the roots by rendezvous hashing of the path (so load
//! spreads over the roots instead of always hitting the primary), moves roots that are currently slow or
//! failing to the back, tries the first with a per-attempt timeout, and on an error or timeout goes to the
//! next. If the first has not answered within the hedge delay (the observed p95 of reads, with a floor), it
//! sends the same read to the next copy and takes whichever answers first; hedges are capped at a fraction of
//! reads so a partial outage cannot double the load. Writes, lists and deletes go to the primary.
//!
//! Budget per read: at most `attempt_timeout` per copy, copies tried in turn, so ≤ R × attempt_timeout in
//! the worst case (defaults: 2 s, 3 copies); a healthy read costs one request.

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::stores::replica_stats::RootStats;
pub use crate::stores::replica_stats::{FailoverStats, ReplicaTotals};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, FuturesUnordered, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug, Clone)]
pub struct FailoverConfig {
    /// Give up on one copy after this long (`CAIRN_ATTEMPT_TIMEOUT`).
    pub attempt_timeout: Duration,
    /// Fixed hedge delay; None = the observed p95 of reads (`CAIRN_HEDGE_AFTER`, `off` disables hedging).
    pub hedge_after: Option<Duration>,
    pub hedging: bool,
    /// Lower bound of the adaptive hedge delay.
    pub hedge_floor: Duration,
    /// Hedges allowed as a fraction of reads.
    pub max_hedge_fraction: f64,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            attempt_timeout: Duration::from_secs(2),
            hedge_after: None,
            hedging: true,
            hedge_floor: Duration::from_millis(2),
            max_hedge_fraction: 0.2,
        }
    }
}

pub struct ReplicatedStore {
    roots: Vec<Arc<dyn ObjectStore>>,
    config: FailoverConfig,
    stats: Vec<RootStats>,
    recent: Mutex<VecDeque<u32>>,
    reads: AtomicU64,
    failovers: AtomicU64,
    hedges: AtomicU64,
    hedge_wins: AtomicU64,
    failed_reads: AtomicU64,
    corrupt: AtomicU64,
    /// The same counts summed with every other replicated store sharing it (the engine's, for `/metrics`:
    /// one per keyspace version, outliving none of them).
    totals: Arc<ReplicaTotals>,
}

/// How one read is made.
#[derive(Debug, Clone, Copy)]
struct Mode {
    hedged: bool,
    /// Its latency counts in the hedge delay and root ordering (small reads only: a whole shard's would
    /// skew both).
    timed: bool,
}

impl Mode {
    const SMALL: Mode = Mode { hedged: true, timed: true };
    const BULK: Mode = Mode { hedged: false, timed: false };
}

/// The least attempt timeout of a bulk read: a whole shard takes longer than a block.
const BULK_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The store name of the error a read gives when every copy it could read failed verification.
const CORRUPT: &str = "ReplicatedStore(no intact copy)";

/// Whether a read failed because the copies it reached were corrupt (not missing, not unreachable).
pub fn is_corrupt(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::Generic { store, .. } if *store == CORRUPT)
}

/// Accepts or rejects the bytes of a read (checksum verification).
pub type Validator<'a> = &'a (dyn Fn(&[u8]) -> bool + Send + Sync);

impl ReplicatedStore {
    /// `roots[0]` is the primary (writes go there).
    pub fn new(roots: Vec<Arc<dyn ObjectStore>>, config: FailoverConfig) -> Self {
        assert!(!roots.is_empty(), "a replicated store needs a root");
        let stats = roots.iter().map(|_| RootStats::default()).collect();
        ReplicatedStore {
            roots,
            config,
            stats,
            recent: Mutex::new(VecDeque::with_capacity(512)),
            reads: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            hedges: AtomicU64::new(0),
            hedge_wins: AtomicU64::new(0),
            failed_reads: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            totals: Default::default(),
        }
    }

    /// Adds this store's counts to `totals` as well.
    pub fn with_totals(mut self, totals: Arc<ReplicaTotals>) -> Self {
        self.totals = totals;
        self
    }

    pub fn stats(&self) -> FailoverStats {
        FailoverStats {
            reads: self.reads.load(Relaxed),
            failovers: self.failovers.load(Relaxed),
            hedges: self.hedges.load(Relaxed),
            hedge_wins: self.hedge_wins.load(Relaxed),
            failed_reads: self.failed_reads.load(Relaxed),
            corrupt_copies: self.corrupt.load(Relaxed),
            root_errors: self.stats.iter().map(|s| s.errors.load(Relaxed)).collect(),
            root_latency_us: self.stats.iter().map(|s| s.ewma_us.load(Relaxed)).collect(),
        }
    }

    /// Rendezvous order for `path`, with currently failing or slow roots moved to the back — except for one
    /// read in 64, which keeps the plain order so a demoted root is probed (under the hedge) and can recover.
    pub fn order(&self, path: &Path) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.roots.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(xxhash_rust::xxh64::xxh64(path.as_ref().as_bytes(), i as u64)));
        if self.reads.load(Relaxed).is_multiple_of(64) {
            return order;
        }
        let best = self.stats.iter().map(|s| s.ewma_us.load(Relaxed)).filter(|&l| l > 0).min().unwrap_or(0);
        let degraded = |i: usize| {
            let s = &self.stats[i];
            let lat = s.ewma_us.load(Relaxed);
            s.recent_errors.load(Relaxed) > 0 || (best > 0 && lat > 4 * best && lat > 2_000)
        };
        order.sort_by_key(|&i| degraded(i)); // stable: rendezvous order kept within each group
        order
    }

    fn hedge_delay(&self) -> Duration {
        if let Some(d) = self.config.hedge_after {
            return d;
        }
        let recent = self.recent.lock().expect("latency window");
        if recent.len() < 32 {
            return Duration::from_millis(20).max(self.config.hedge_floor);
        }
        let mut v: Vec<u32> = recent.iter().copied().collect();
        let i = (v.len() * 95 / 100).min(v.len() - 1);
        let (_, p95, _) = v.select_nth_unstable(i);
        Duration::from_micros(*p95 as u64).max(self.config.hedge_floor)
    }

    fn hedge_allowed(&self) -> bool {
        let reads = self.reads.load(Relaxed) as f64;
        (self.hedges.load(Relaxed) as f64) < reads * self.config.max_hedge_fraction + 1.0
    }

    fn record_read(&self, took: Duration) {
        let mut recent = self.recent.lock().expect("latency window");
        if recent.len() == 512 {
            recent.pop_front();
        }
        recent.push_back(took.as_micros().min(u32::MAX as u128) as u32);
    }

    /// Reads from the first copy whose bytes `valid` accepts (a corrupt copy counts as a failed one).
    pub async fn get_verified(&self, location: &Path, options: GetOptions, valid: Validator<'_>) -> Result<Bytes> {
        Ok(self.read(location, &options, Some(valid), Mode::SMALL).await?.0)
    }

    /// As [`Self::get_verified`], for a large read (a whole shard): not hedged (it would always outlast
    /// the small reads' p95 and be sent twice), its time kept out of what hedging and root ordering are
    /// judged by, and a longer attempt timeout.
    pub async fn get_verified_bulk(&self, location: &Path, options: GetOptions, valid: Validator<'_>) -> Result<Bytes> {
        Ok(self.read(location, &options, Some(valid), Mode::BULK).await?.0)
    }

    /// One logical read: the bytes from whichever copy answers first (and passes `valid`).
    async fn read(
        &self,
        location: &Path,
        options: &GetOptions,
        valid: Option<Validator<'_>>,
        mode: Mode,
    ) -> Result<(Bytes, GetResult)> {
        self.reads.fetch_add(1, Relaxed);
        self.totals.reads.fetch_add(1, Relaxed);
        let started = Instant::now();
        let order = self.order(location);
        let mut next = 0usize;
        let mut running = FuturesUnordered::new();
        // What the failed copies say, judged at the end: all missing is NotFound; any corrupt (and none
        // unreachable) is corruption; otherwise the last outage.
        let (mut missing, mut corrupt, mut outage) = (None, None, None);
        let timeout = match mode.timed {
            true => self.config.attempt_timeout,
            false => self.config.attempt_timeout.max(BULK_ATTEMPT_TIMEOUT),
        };
        let attempt = |i: usize| {
            let (store, opts, loc) = (self.roots[i].clone(), options.clone(), location.clone());
            async move {
                let t = Instant::now();
                let r = tokio::time::timeout(timeout, async {
                    let got = store.get_opts(&loc, opts).await?;
                    let meta = got.meta.clone();
                    let (range, attributes, extensions) =
                        (got.range.clone(), got.attributes.clone(), got.extensions.clone());
                    let bytes = got.bytes().await?;
                    let shell = GetResult {
                        payload: GetResultPayload::Stream(futures::stream::empty().boxed()),
                        meta,
                        range,
                        attributes,
                        extensions,
                    };
                    Ok::<_, object_store::Error>((bytes, shell))
                })
                .await
                .unwrap_or_else(|_| {
                    Err(object_store::Error::Generic {
                        store: "ReplicatedStore",
                        source: format!("{loc}: timed out after {timeout:?}").into(),
                    })
                });
                (i, t, r)
            }
        };
        let mut started_at: Vec<Option<Instant>> = vec![None; self.roots.len()];
        while next < order.len() || !running.is_empty() {
            if running.is_empty() {
                if next > 0 {
                    self.failovers.fetch_add(1, Relaxed);
                    self.totals.failovers.fetch_add(1, Relaxed);
                    crate::cost::failover();
                }
                started_at[order[next]] = Some(Instant::now());
                running.push(attempt(order[next]));
                next += 1;
            }
            let hedge = if mode.hedged && self.config.hedging && next < order.len() && running.len() == 1 {
                Some(tokio::time::sleep(self.hedge_delay()))
            } else {
                None
            };
            let outcome = match hedge {
                Some(sleep) => tokio::select! {
                    r = running.next() => r,
                    _ = sleep => {
                        if self.hedge_allowed() {
                            self.hedges.fetch_add(1, Relaxed);
                            self.totals.hedges.fetch_add(1, Relaxed);
                            crate::cost::hedge();
                            started_at[order[next]] = Some(Instant::now());
                            running.push(attempt(order[next]));
                            next += 1;
                        }
                        continue;
                    }
                },
                None => running.next().await,
            };
            let Some((i, t, result)) = outcome else { continue };
            started_at[i] = None;
            let result = match result {
                Ok((bytes, _)) if valid.is_some_and(|v| !v(&bytes)) => {
                    self.corrupt.fetch_add(1, Relaxed);
                    self.totals.corrupt.fetch_add(1, Relaxed);
                    crate::cost::checksum_failure();
                    Err(object_store::Error::Generic {
                        store: CORRUPT,
                        source: format!("{location}: copy {i} failed checksum verification").into(),
                    })
                }
                other => other,
            };
            match result {
                Ok(found) => {
                    if !mode.timed {
                        self.stats[i].recent_errors.store(0, Relaxed);
                        return Ok(found);
                    }
                    self.stats[i].observe(t.elapsed(), true);
                    if i != order[0] && started_at[order[0]].is_some() {
                        self.hedge_wins.fetch_add(1, Relaxed);
                        self.totals.hedge_wins.fetch_add(1, Relaxed);
                    }
                    // Copies still running lost the race: remember how slow they were at least.
                    for (j, s) in started_at.iter().enumerate() {
                        if let Some(s) = s {
                            self.stats[j].observe_at_least(s.elapsed());
                        }
                    }
                    self.record_read(started.elapsed());
                    return Ok(found);
                }
                Err(e) => {
                    let not_found = matches!(e, object_store::Error::NotFound { .. });
                    match mode.timed {
                        true => self.stats[i].observe(t.elapsed(), not_found),
                        false => self.stats[i].observe_error(not_found),
                    }
                    match &e {
                        object_store::Error::NotFound { .. } => missing = Some(e),
                        e if is_corrupt(e) => corrupt = Some(e.to_string()),
                        _ => outage = Some(e),
                    }
                }
            }
        }
        self.failed_reads.fetch_add(1, Relaxed);
        self.totals.failed_reads.fetch_add(1, Relaxed);
        Err(match (outage, corrupt, missing) {
            (Some(e), _, _) => e,
            (None, Some(why), _) => object_store::Error::Generic { store: CORRUPT, source: why.into() },
            (None, None, Some(e)) => e,
            (None, None, None) => unreachable!("a read with no copy to try"),
        })
    }
}

impl fmt::Debug for ReplicatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplicatedStore({} roots)", self.roots.len())
    }
}

impl fmt::Display for ReplicatedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roots: Vec<String> = self.roots.iter().map(|r| r.to_string()).collect();
        write!(f, "ReplicatedStore[{}]", roots.join(", "))
    }
}

#[async_trait]
impl ObjectStore for ReplicatedStore {
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (bytes, mut shell) = self.read(location, &options, None, Mode::SMALL).await?;
        shell.payload = GetResultPayload::Stream(futures::stream::once(async move { Ok(bytes) }).boxed());
        Ok(shell)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(ranges.len());
        for r in ranges {
            let opts = GetOptions { range: Some(r.clone().into()), ..Default::default() };
            out.push(self.read(location, &opts, None, Mode::SMALL).await?.0);
        }
        Ok(out)
    }

    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.roots[0].put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.roots[0].put_multipart_opts(location, opts).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.roots[0].delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.roots[0].list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.roots[0].list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.roots[0].copy_opts(from, to, options).await
    }
}
