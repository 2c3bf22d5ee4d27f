//! A store decorator that injects faults, for tests: fail writes to matching paths after a number of them
//! succeeded (a crash mid-ingest), or fail every read (an outage).

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
}

impl FaultyStore {
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
        }
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
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.check_write(location)?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.delay().await;
        self.check_read(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.delay().await;
        self.check_read(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
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
