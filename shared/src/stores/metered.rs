//! A store decorator that counts what reads cost, per root: GETs by outcome, bytes and latency (until the
//! response headers), and HEADs apart (no body: no bytes). A streamed body settles its GET's outcome when it ends: `ok`, or `error` if it failed
//! or was dropped unfinished; a request dropped before its headers (a timeout, a lost hedge) is an `error`
//! with its elapsed time. Counters only ever grow. The engine wraps every root it reads
//! (the primary and each replica) so `/metrics` can tell a slow or failing copy from the others. Every
//! other operation passes through unchanged.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::histogram::{Histogram, HistogramSnapshot};

/// How a GET ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    NotFound,
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Ok, Outcome::NotFound, Outcome::Error];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Error => "error",
        }
    }

    fn of<T>(r: &Result<T>) -> Outcome {
        match r {
            Ok(_) => Outcome::Ok,
            Err(object_store::Error::NotFound { .. }) => Outcome::NotFound,
            Err(_) => Outcome::Error,
        }
    }
}

/// One root's read figures.
#[derive(Debug, Default)]
pub struct RootMetrics {
    gets: [AtomicU64; 3],
    /// HEADs (a GET asking only for metadata: no body, no bytes), by outcome.
    heads: [AtomicU64; 3],
    bytes: AtomicU64,
    latency: Histogram,
}

/// [`RootMetrics`] read at one moment.
#[derive(Debug, Clone, Default)]
pub struct RootSnapshot {
    pub root: String,
    /// GETs per [`Outcome::ALL`].
    pub gets: [u64; 3],
    /// HEADs per [`Outcome::ALL`] (not in `gets`, and no bytes).
    pub heads: [u64; 3],
    pub bytes: u64,
    pub latency: HistogramSnapshot,
}

impl RootMetrics {
    fn count(&self, outcome: Outcome) {
        self.gets[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, root: &str) -> RootSnapshot {
        RootSnapshot {
            root: root.to_string(),
            gets: std::array::from_fn(|i| self.gets[i].load(Relaxed)),
            heads: std::array::from_fn(|i| self.heads[i].load(Relaxed)),
            bytes: self.bytes.load(Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<RootMetrics>,
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<RootMetrics>) -> Self {
        MeteredStore { inner, metrics }
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        if options.head {
            // Metadata only: counted as a HEAD, with no bytes and no GET latency.
            let got = self.inner.get_opts(location, options).await;
            self.metrics.heads[Outcome::of(&got) as usize].fetch_add(1, Relaxed);
            return got;
        }
        let pending = Pending { metrics: Some(self.metrics.clone()), started: Instant::now() };
        let got = self.inner.get_opts(location, options).await;
        let metrics = pending.headers_arrived();
        let mut got = match got {
            Ok(got) => got,
            Err(e) => {
                metrics.count(if matches!(e, object_store::Error::NotFound { .. }) {
                    Outcome::NotFound
                } else {
                    Outcome::Error
                });
                return Err(e);
            }
        };
        metrics.bytes.fetch_add(got.range.end - got.range.start, Relaxed);
        match got.payload {
            GetResultPayload::Stream(body) => {
                got.payload = GetResultPayload::Stream(Box::pin(Body { inner: body, metrics: Some(metrics) }));
            }
            GetResultPayload::File(..) => metrics.count(Outcome::Ok),
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let started = Instant::now();
        let got = self.inner.get_ranges(location, ranges).await;
        self.metrics.latency.observe(started.elapsed());
        self.metrics.count(Outcome::of(&got));
        if let Ok(parts) = &got {
            self.metrics.bytes.fetch_add(parts.iter().map(|p| p.len() as u64).sum(), Relaxed);
        }
        got
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

/// A GET whose headers have not arrived: dropped as it is, it counts as an error, with its elapsed time.
struct Pending {
    metrics: Option<Arc<RootMetrics>>,
    started: Instant,
}

impl Pending {
    fn headers_arrived(mut self) -> Arc<RootMetrics> {
        let m = self.metrics.take().expect("taken once");
        m.latency.observe(self.started.elapsed());
        m
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.latency.observe(self.started.elapsed());
            m.count(Outcome::Error);
        }
    }
}

/// A streamed body that settles its GET's outcome once: `Ok` at its end, `Error` at its first error or if
/// dropped unfinished.
struct Body {
    inner: BoxStream<'static, Result<Bytes>>,
    metrics: Option<Arc<RootMetrics>>,
}

impl futures::Stream for Body {
    type Item = Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = self.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(item) = &next {
            let outcome = match item {
                None => Some(Outcome::Ok),
                Some(Err(_)) => Some(Outcome::Error),
                Some(Ok(_)) => None,
            };
            if let Some(o) = outcome
                && let Some(m) = self.metrics.take()
            {
                m.count(o);
            }
        }
        next
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(m) = self.metrics.take() {
            m.count(Outcome::Error);
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn gets_are_counted_by_outcome_with_their_bytes() {
        let inner = Arc::new(InMemory::new());
        inner.put(&Path::from("a"), PutPayload::from_static(b"hello")).await.unwrap();
        let metrics = Arc::new(RootMetrics::default());
        let store = MeteredStore::new(inner, metrics.clone());
        let range = GetOptions { range: Some((1..4).into()), ..Default::default() };
        assert_eq!(store.get_opts(&Path::from("a"), range).await.unwrap().bytes().await.unwrap().as_ref(), b"ell");
        assert!(store.get(&Path::from("missing")).await.is_err());
        assert_eq!(store.get_ranges(&Path::from("a"), &[0..1, 2..5]).await.unwrap().len(), 2);
        let s = metrics.snapshot("memory://");
        assert_eq!(s.gets, [2, 1, 0]);
        assert_eq!(s.bytes, 3 + 1 + 3);
        assert_eq!(s.latency.count(), 3);
        // A body dropped unread, and a GET dropped before its headers, are errors; nothing goes backwards.
        drop(store.get(&Path::from("a")).await.unwrap());
        assert_eq!(metrics.snapshot("memory://").gets, [2, 1, 1]);
        // A GET cancelled while waiting for its headers (a timeout, a lost hedge): an error, with its time.
        drop(Pending { metrics: Some(metrics.clone()), started: Instant::now() });
        let s = metrics.snapshot("memory://");
        assert_eq!((s.gets, s.latency.count()), ([2, 1, 2], 5));
    }
}
