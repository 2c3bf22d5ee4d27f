//! A store decorator that injects faults, for tests: fail writes to matching paths after a number of them
//! succeeded (a crash mid-ingest), fail every read (an outage), apply writes and then fail them as if their
//! response were lost, or refuse deletes.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    /// Writes to paths containing this are counted...
    pub write_filter: String,
    /// ...and fail once this many have succeeded.
    pub writes_allowed: usize,
    writes: AtomicUsize,
    pub fail_reads: AtomicBool,
    /// Every read first waits `base + uniform(0..jitter)` (microseconds), to model a remote store.
    pub read_delay_us: AtomicU64,
    pub read_jitter_us: AtomicU64,
    reads: AtomicU64,
    /// Bytes those reads returned (as their ranges say).
    read_bytes: AtomicU64,
    /// Reads running now, and the most seen at once.
    in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Writes to paths containing `.0` apply and then fail (`.1` more of them), answered as a 412/409 when
    /// `.2` (a client's retry finding its own write) or as a timeout otherwise.
    lose: std::sync::Mutex<Option<(String, usize, bool)>>,
    /// Deletes of paths containing this fail and delete nothing.
    refuse_deletes: std::sync::Mutex<Option<String>>,
    /// Reads of paths containing this never answer (a copy that hangs).
    hang_reads: std::sync::Mutex<Option<String>>,
    /// Writes of paths containing `.0` first wait `.1`; every delete waits `delete_delay`.
    write_delay: std::sync::Mutex<Option<(String, std::time::Duration)>>,
    pub delete_delay: std::sync::Mutex<std::time::Duration>,
    /// Deletes running now, and the most seen at once.
    deletes_in_flight: Arc<AtomicU64>,
    pub max_deletes_in_flight: Arc<AtomicU64>,
    /// Every write that applied: its path and size, in order.
    pub written: std::sync::Mutex<Vec<(String, usize)>>,
    /// Reads of ranges larger than `.0` bytes (a whole shard, not a block or index piece) meet `.1`.
    large_reads: std::sync::Mutex<Option<(u64, LargeRead)>>,
    /// Large reads asked, running now and the most at once.
    pub large_reads_asked: AtomicU64,
    /// The path of every large read asked, in order.
    pub large_read_paths: std::sync::Mutex<Vec<String>>,
    large_in_flight: AtomicU64,
    pub max_large_in_flight: AtomicU64,
    /// Opened by [`FaultyStore::release_large_reads`]: what [`LargeRead::Held`] reads wait for.
    large_gate: tokio::sync::watch::Sender<bool>,
}

/// What a large read meets.
#[derive(Debug, Clone, Copy)]
pub enum LargeRead {
    Hang,
    /// Waits until [`FaultyStore::release_large_reads`], then answers: a test decides when, not a clock.
    Held,
    Delay(std::time::Duration),
    Fail,
}

impl FaultyStore {
    /// Loses the response of the next `count` writes to paths containing `filter`.
    pub fn lose_responses(self, filter: &str, count: usize, as_precondition: bool) -> Self {
        *self.lose.lock().unwrap() = Some((filter.into(), count, as_precondition));
        self
    }

    /// Refuses deletes of paths containing `filter` (None: allow them again).
    pub fn refuse_deletes(&self, filter: Option<&str>) {
        *self.refuse_deletes.lock().unwrap() = filter.map(String::from);
    }

    /// Whether this write's response is to be lost, and how.
    fn lost(&self, location: &Path) -> Option<bool> {
        let mut lose = self.lose.lock().unwrap();
        match lose.as_mut() {
            Some((filter, n, precondition)) if *n > 0 && location.as_ref().contains(filter.as_str()) => {
                *n -= 1;
                Some(*precondition)
            }
            _ => None,
        }
    }

    pub fn new(inner: Arc<dyn ObjectStore>, write_filter: &str, writes_allowed: usize) -> Self {
        FaultyStore {
            inner,
            write_filter: write_filter.into(),
            writes_allowed,
            writes: AtomicUsize::new(0),
            fail_reads: AtomicBool::new(false),
            read_delay_us: AtomicU64::new(0),
            read_jitter_us: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            read_bytes: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            lose: Default::default(),
            refuse_deletes: Default::default(),
            hang_reads: Default::default(),
            write_delay: Default::default(),
            delete_delay: Default::default(),
            deletes_in_flight: Default::default(),
            max_deletes_in_flight: Default::default(),
            written: Default::default(),
            large_reads: Default::default(),
            large_reads_asked: Default::default(),
            large_read_paths: Default::default(),
            large_in_flight: Default::default(),
            max_large_in_flight: Default::default(),
            large_gate: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Answers every [`LargeRead::Held`] read, waiting or to come.
    pub fn release_large_reads(&self) {
        self.large_gate.send_replace(true);
    }

    /// Reads of more than `bytes` bytes meet `fault` (None: no fault).
    pub fn large_reads(&self, bytes: u64, fault: Option<LargeRead>) {
        *self.large_reads.lock().unwrap() = fault.map(|f| (bytes, f));
    }

    /// Counts a read of `options`' range if it is large, and applies its fault.
    async fn large_read(&self, location: &Path, options: &GetOptions) -> Result<()> {
        let Some((threshold, fault)) = *self.large_reads.lock().unwrap() else { return Ok(()) };
        let len = match &options.range {
            Some(object_store::GetRange::Bounded(r)) => r.end - r.start,
            _ => 0,
        };
        if len <= threshold || options.head {
            return Ok(());
        }
        self.large_reads_asked.fetch_add(1, Ordering::SeqCst);
        self.large_read_paths.lock().unwrap().push(location.to_string());
        let now = self.large_in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_large_in_flight.fetch_max(now, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicU64);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&self.large_in_flight);
        match fault {
            LargeRead::Hang => std::future::pending::<()>().await,
            LargeRead::Held => {
                let mut open = self.large_gate.subscribe();
                let _ = open.wait_for(|open| *open).await;
            }
            LargeRead::Delay(d) => tokio::time::sleep(d).await,
            LargeRead::Fail => return Err(injected(location)),
        }
        Ok(())
    }

    /// Reads of paths containing `filter` do not answer until the filter is lifted (None: they answer, those
    /// waiting included).
    pub fn hang_reads(&self, filter: Option<&str>) {
        *self.hang_reads.lock().unwrap() = filter.map(String::from);
    }

    /// Writes of paths containing `filter` take `delay` first.
    pub fn delay_writes(&self, filter: &str, delay: std::time::Duration) {
        *self.write_delay.lock().unwrap() = Some((filter.into(), delay));
    }

    /// GETs running now (a hung one included).
    pub fn reads_in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// A wrapper that only delays reads.
    pub fn slow(inner: Arc<dyn ObjectStore>, base: std::time::Duration, jitter: std::time::Duration) -> Self {
        let s = FaultyStore::new(inner, "\0never", usize::MAX);
        s.read_delay_us.store(base.as_micros() as u64, Ordering::SeqCst);
        s.read_jitter_us.store(jitter.as_micros() as u64, Ordering::SeqCst);
        s
    }

    /// Reads (GETs) asked of this store so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::SeqCst)
    }

    /// Bytes the successful reads returned so far.
    pub fn read_bytes(&self) -> u64 {
        self.read_bytes.load(Ordering::SeqCst)
    }

    async fn delay(&self) {
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        let (base, jitter) = (self.read_delay_us.load(Ordering::SeqCst), self.read_jitter_us.load(Ordering::SeqCst));
        if base + jitter == 0 {
            return;
        }
        let extra = if jitter == 0 { 0 } else { xxhash_rust::xxh3::xxh3_64(&n.to_le_bytes()) % jitter };
        tokio::time::sleep(std::time::Duration::from_micros(base + extra)).await;
    }

    fn check_write(&self, location: &Path) -> Result<()> {
        if location.as_ref().contains(&self.write_filter)
            && self.writes.fetch_add(1, Ordering::SeqCst) >= self.writes_allowed
        {
            return Err(injected(location));
        }
        Ok(())
    }

    async fn maybe_hang(&self, location: &Path) {
        let hang = self.hang_reads.lock().unwrap().clone();
        // Until the filter is lifted (or forever): a read hung here answers once `hang_reads(None)`.
        let hangs = || {
            let hang = self.hang_reads.lock().unwrap().clone();
            hang.is_some_and(|f| location.as_ref().contains(f.as_str()))
        };
        if hang.is_some_and(|f| location.as_ref().contains(f.as_str())) {
            while hangs() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    async fn write_delay(&self, location: &Path) {
        let delay = self.write_delay.lock().unwrap().clone();
        if let Some((filter, d)) = delay
            && location.as_ref().contains(filter.as_str())
        {
            tokio::time::sleep(d).await;
        }
    }

    fn check_read(&self, location: &Path) -> Result<()> {
        if self.fail_reads.load(Ordering::SeqCst) { Err(injected(location)) } else { Ok(()) }
    }
}

fn injected(location: &Path) -> object_store::Error {
    object_store::Error::Generic { store: "FaultyStore", source: format!("injected fault at {location}").into() }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.check_write(location)?;
        self.write_delay(location).await;
        let create = matches!(opts.mode, object_store::PutMode::Create);
        let size = payload.content_length();
        let done = self.inner.put_opts(location, payload, opts).await?;
        self.written.lock().unwrap().push((location.to_string(), size));
        match self.lost(location) {
            None => Ok(done),
            Some(true) => {
                let (path, source) = (location.to_string(), "injected: the retry of an applied write".into());
                Err(if create {
                    object_store::Error::AlreadyExists { path, source }
                } else {
                    object_store::Error::Precondition { path, source }
                })
            }
            Some(false) => Err(injected(location)),
        }
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.check_write(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.delay().await;
        self.maybe_hang(location).await;
        if let Err(e) = self.large_read(location, &options).await {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(e);
        }
        let got = match self.check_read(location) {
            Ok(()) => self.inner.get_opts(location, options).await,
            Err(e) => Err(e),
        };
        if let Ok(r) = &got {
            self.read_bytes.fetch_add(r.range.end - r.range.start, Ordering::SeqCst);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        got
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.delay().await;
        self.check_read(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    /// Each path is deleted on its own, up to 64 at once (so a caller that hands over many paths at once
    /// shows as many deletes in flight), after `delete_delay`; answered in the order given, as the trait
    /// requires (store_conformance.rs caught out-of-order answers).
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let filter = self.refuse_deletes.lock().unwrap().clone();
        let delay = *self.delete_delay.lock().unwrap();
        let (inner, now, max) =
            (self.inner.clone(), self.deletes_in_flight.clone(), self.max_deletes_in_flight.clone());
        use futures::StreamExt;
        locations
            .map(move |p| {
                let (inner, filter, now, max) = (inner.clone(), filter.clone(), now.clone(), max.clone());
                async move {
                    let p = p?;
                    if filter.is_some_and(|f| p.as_ref().contains(&f)) {
                        return Err(injected(&p));
                    }
                    max.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let r = inner.delete_stream(futures::stream::once(async { Ok(p) }).boxed()).next().await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    r.expect("one")
                }
            })
            .buffered(64)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
