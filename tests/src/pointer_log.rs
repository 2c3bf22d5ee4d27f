//! A store decorator that records, in order, every write of a keyspace pointer (`CURRENT`) that the store
//! applied: the ground truth the simulation checks readers against ("no reader moves back a version").
//! Pointer writes through it are serialized, so the log's order is the store's.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

pub struct PointerLog {
    inner: Arc<dyn ObjectStore>,
    /// The `version` of each applied pointer write, oldest first.
    pub versions: Arc<Mutex<Vec<String>>>,
    /// Writes started and not yet recorded (or failed): the log is complete when this is 0.
    pub pending: Arc<std::sync::atomic::AtomicUsize>,
    serial: Arc<tokio::sync::Mutex<()>>,
}

impl PointerLog {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        PointerLog { inner, versions: Arc::default(), pending: Arc::default(), serial: Arc::default() }
    }
}

/// Counts a write as finished when dropped (recorded, failed or cancelled).
struct Decrement(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Decrement {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl fmt::Debug for PointerLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointerLog({})", self.inner)
    }
}

impl fmt::Display for PointerLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointerLog({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for PointerLog {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        if location.filename() != Some(cairn_shared::format::layout::POINTER) {
            return self.inner.put_opts(location, payload, opts).await;
        }
        let body: Vec<u8> = payload.iter().flat_map(|b| b.iter().copied()).collect();
        // In a task of its own: a caller dropped mid-write (a simulated crash) does not stop a local store's
        // write, which runs on a blocking thread, so it must not stop its record either.
        let (inner, serial, versions, location) =
            (self.inner.clone(), self.serial.clone(), self.versions.clone(), location.clone());
        let pending = self.pending.clone();
        pending.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let write = tokio::spawn(async move {
            let _serial = serial.lock().await;
            let _done = Decrement(pending);
            let done = inner.put_opts(&location, body.clone().into(), opts).await?;
            let version = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["version"].as_str().map(str::to_string))
                .unwrap_or_else(|| "<unparsable>".into());
            versions.lock().expect("pointer log").push(version);
            Ok(done)
        });
        write.await.map_err(|e| object_store::Error::Generic { store: "PointerLog", source: e.into() })?
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
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
