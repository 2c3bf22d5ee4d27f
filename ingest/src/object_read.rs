//! Reading an object without downloading it first: a sequential reader that keeps a few range requests in
//! flight ahead of the reader (bounded memory, full bandwidth), and ranged fetches for Parquet column
//! chunks. Every request carries the ETag the object was listed with, so a replaced object fails the read
//! instead of mixing its two versions into one keyspace.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

/// Bytes per range request of a sequential read.
pub const READ_AHEAD_BYTES: u64 = 8 << 20;
/// Range requests kept in flight ahead of a sequential reader.
pub const READ_AHEAD_REQUESTS: usize = 4;
/// Largest range one request of a Parquet row group's fetch asks for: a column chunk is fetched in parts of
/// this size, in parallel, so no request outlives the store's timeout however large the writer made its row
/// groups.
pub(crate) const FETCH_PART: u64 = 8 << 20;

/// One object as listed: the store, its key, size and ETag.
#[derive(Clone)]
pub struct Object {
    pub store: Arc<dyn ObjectStore>,
    pub path: object_store::path::Path,
    pub size: u64,
    pub etag: Option<String>,
    /// As users see it (`s3://bucket/key`).
    pub name: String,
}

impl Object {
    /// The bytes of `range`, as of the listed ETag.
    pub async fn fetch(&self, range: Range<u64>) -> io::Result<Bytes> {
        let opts =
            GetOptions { if_match: self.etag.clone(), range: Some(GetRange::Bounded(range)), ..Default::default() };
        let got = self.store.get_opts(&self.path, opts).await.map_err(|e| self.error(e))?;
        got.bytes().await.map_err(|e| self.error(e))
    }

    fn error(&self, e: object_store::Error) -> io::Error {
        match e {
            object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. } => {
                io::Error::other(format!(
                    "{} changed or disappeared since it was listed (ETag {}); nothing was published. Rerun: it \
                 lists the sources again",
                    self.name,
                    self.etag.as_deref().unwrap_or("none")
                ))
            }
            e => io::Error::other(format!("reading {}: {e}", self.name)),
        }
    }
}

/// `Read` over a whole object, [`READ_AHEAD_REQUESTS`] ranges of [`READ_AHEAD_BYTES`] ahead.
pub struct ObjectRead {
    object: Object,
    handle: Handle,
    next: u64,
    part: u64,
    requests: usize,
    inflight: VecDeque<JoinHandle<io::Result<Bytes>>>,
    current: Bytes,
}

impl ObjectRead {
    pub fn new(object: Object, handle: Handle) -> Self {
        Self::starting_at(object, handle, 0)
    }

    pub fn starting_at(object: Object, handle: Handle, start: u64) -> Self {
        Self::with_window(object, handle, start, READ_AHEAD_BYTES, READ_AHEAD_REQUESTS)
    }

    /// From `start`, `requests` ranges of `part` bytes ahead (small for a few bytes wanted at an offset).
    pub fn with_window(object: Object, handle: Handle, start: u64, part: u64, requests: usize) -> Self {
        let mut r = ObjectRead {
            object,
            handle,
            next: start,
            part: part.max(1),
            requests: requests.max(1),
            inflight: VecDeque::new(),
            current: Bytes::new(),
        };
        r.fill();
        r
    }

    fn fill(&mut self) {
        while self.inflight.len() < self.requests && self.next < self.object.size {
            let end = (self.next + self.part).min(self.object.size);
            let (object, range) = (self.object.clone(), self.next..end);
            self.inflight.push_back(self.handle.spawn(async move { object.fetch(range).await }));
            self.next = end;
        }
    }
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            let Some(task) = self.inflight.pop_front() else { return Ok(0) };
            self.current = self.handle.block_on(task).map_err(io::Error::other)??;
            self.fill();
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Drop for ObjectRead {
    fn drop(&mut self) {
        for t in &self.inflight {
            t.abort();
        }
    }
}
