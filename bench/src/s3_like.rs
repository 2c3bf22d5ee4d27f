//! A store decorator with an object store's timing, for benchmarks: every read waits a first-byte latency
//! drawn from a log-normal with S3's usual shape (median 20 ms, p99 80 ms), then the transfer at a per-
//! connection throughput. Seeded, so runs compare. Writes, lists and deletes pass through untimed.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct S3Like {
    inner: Arc<dyn ObjectStore>,
    median: Duration,
    /// Log-normal sigma: `ln(p99 / median) / 2.326`.
    sigma: f64,
    bytes_per_s: f64,
    draws: AtomicU64,
    seed: u64,
}

impl S3Like {
    pub fn new(inner: Arc<dyn ObjectStore>, median: Duration, p99: Duration, bytes_per_s: f64, seed: u64) -> Self {
        let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326;
        S3Like { inner, median, sigma, bytes_per_s, draws: AtomicU64::new(0), seed }
    }

    /// S3's usual figures: first byte 20 ms median, 80 ms p99, 90 MB/s per connection.
    pub fn typical(inner: Arc<dyn ObjectStore>, seed: u64) -> Self {
        S3Like::new(inner, Duration::from_millis(20), Duration::from_millis(80), 90e6, seed)
    }

    fn first_byte(&self) -> Duration {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let u = |i: u64| {
            let h = xxhash_rust::xxh3::xxh3_64_with_seed(&(2 * n + i).to_le_bytes(), self.seed);
            ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        // Box-Muller: one standard normal from two uniforms.
        let z = (-2.0 * u(0).ln()).sqrt() * (2.0 * std::f64::consts::PI * u(1)).cos();
        self.median.mul_f64((self.sigma * z).exp())
    }
}

impl fmt::Display for S3Like {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Like({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for S3Like {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        tokio::time::sleep(self.first_byte()).await;
        let got = self.inner.get_opts(location, options).await?;
        let len = got.range.end - got.range.start;
        // The whole transfer before the answer: cairn reads every range whole before using it.
        tokio::time::sleep(Duration::from_secs_f64(len as f64 / self.bytes_per_s)).await;
        Ok(got)
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
