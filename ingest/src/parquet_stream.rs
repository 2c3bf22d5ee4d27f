//! A row group too large to hold, read from an object: one window per projected column chunk that slides
//! forward as its pages are decoded, the next part fetched while the current one is used. Memory is a few
//! parts per column whatever the writer made its row groups (4Mi-row groups of 2 KiB values are gigabytes
//! of projected column chunks, which the whole-row-group prefetch of parquet_fetch.rs would hold twice).

use std::io::{self, Read};
use std::ops::Range;
use std::sync::Mutex;

use bytes::{Buf, Bytes, BytesMut};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::object_read::{FETCH_PART, Object, ObjectRead};

/// Bytes made available past a page header's start: more than any header needs.
const HEADER_BYTES: u64 = 64 << 10;

pub(crate) struct StreamedChunks {
    object: Object,
    handle: Handle,
    /// Each projected column chunk's byte range, and its window.
    columns: Vec<(Range<u64>, Mutex<Window>)>,
}

#[derive(Default)]
struct Window {
    start: u64,
    buf: Bytes,
    /// The part after `buf`, being fetched: (its start, the fetch).
    ahead: Option<(u64, Ahead)>,
}

/// A fetch under way; dropped, it stops.
struct Ahead(JoinHandle<io::Result<Bytes>>);

impl Drop for Ahead {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl StreamedChunks {
    pub(crate) fn new(object: Object, handle: Handle, ranges: Vec<Range<u64>>) -> Self {
        StreamedChunks { object, handle, columns: ranges.into_iter().map(|r| (r, Mutex::default())).collect() }
    }

    /// Bytes `start..start + len` of the column chunk holding `start` (None: outside every projected chunk).
    fn bytes(&self, start: u64, len: u64) -> Option<io::Result<(Bytes, u64)>> {
        let (range, window) = self.columns.iter().find(|(r, _)| r.contains(&start))?;
        let mut w = window.lock().expect("window");
        Some(self.slide(&mut w, range, start, len.min(range.end - start)).map(|()| {
            let from = (start - w.start) as usize;
            (w.buf.slice(from..), w.start + w.buf.len() as u64)
        }))
    }

    /// Makes `start..start + len` of `range` available in `w`, keeping what it holds from `start` on.
    fn slide(&self, w: &mut Window, range: &Range<u64>, start: u64, len: u64) -> io::Result<()> {
        let (end, held_end) = (start + len, w.start + w.buf.len() as u64);
        if start >= w.start && end <= held_end {
            return Ok(());
        }
        let goal = range.end.min(end.max(start + FETCH_PART));
        // What the window keeps from `start` on, then each part fetched after it, joined at the end.
        let mut parts: Vec<Bytes> = Vec::new();
        if start >= w.start && start < held_end {
            parts.push(w.buf.slice((start - w.start) as usize..));
        }
        w.buf = Bytes::new();
        let mut have = start + parts.first().map_or(0, |p| p.len() as u64);
        while have < goal {
            let part = match w.ahead.take() {
                Some((at, mut ahead)) if at == have => {
                    self.handle.block_on(&mut ahead.0).map_err(io::Error::other)??
                }
                _ => {
                    let to = range.end.min(goal.max(have + FETCH_PART));
                    self.handle.block_on(self.object.fetch(have..to))?
                }
            };
            if part.is_empty() {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("{}: short read", self.object.name)));
            }
            have += part.len() as u64;
            parts.push(part);
        }
        w.buf = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => {
                let mut joined = BytesMut::with_capacity((have - start) as usize);
                for p in &parts {
                    joined.extend_from_slice(p);
                }
                joined.freeze()
            }
        };
        w.start = start;
        if have < range.end && w.ahead.is_none() {
            let (object, next) = (self.object.clone(), have..range.end.min(have + FETCH_PART));
            w.ahead = Some((have, Ahead(self.handle.spawn(async move { object.fetch(next).await }))));
        }
        Ok(())
    }
}

impl Length for StreamedChunks {
    fn len(&self) -> u64 {
        self.object.size
    }
}

impl ChunkReader for StreamedChunks {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self.bytes(start, HEADER_BYTES) {
            Some(got) => {
                let (held, end) = got.map_err(|e| ParquetError::External(Box::new(e)))?;
                let tail =
                    LazyRead { object: self.object.clone(), handle: self.handle.clone(), start: end, inner: None };
                Ok(Box::new(held.reader().chain(tail)))
            }
            // Outside the projected chunks (not expected): small ranges, one at a time.
            None => Ok(Box::new(ObjectRead::with_window(self.object.clone(), self.handle.clone(), start, 64 << 10, 1))),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let end = start
            .checked_add(length as u64)
            .filter(|&e| e <= self.object.size)
            .ok_or_else(|| ParquetError::EOF(format!("{length} bytes at {start} are past the end")))?;
        match self.bytes(start, length as u64) {
            Some(got) => {
                let (held, _) = got.map_err(|e| ParquetError::External(Box::new(e)))?;
                if held.len() < length {
                    return Err(ParquetError::EOF(format!("{length} bytes at {start} run past their column chunk")));
                }
                Ok(held.slice(..length))
            }
            None => {
                self.handle.block_on(self.object.fetch(start..end)).map_err(|e| ParquetError::External(Box::new(e)))
            }
        }
    }
}

/// The object from `start` on, fetched only if read (a page header rarely runs past its window).
struct LazyRead {
    object: Object,
    handle: Handle,
    start: u64,
    inner: Option<ObjectRead>,
}

impl Read for LazyRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (object, handle, start) = (&self.object, &self.handle, self.start);
        self.inner
            .get_or_insert_with(|| ObjectRead::with_window(object.clone(), handle.clone(), start, HEADER_BYTES, 1))
            .read(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    /// Any sequence of reads returns the object's own bytes: forward, straddling the window's end, longer than
    /// a part, starting exactly where the window ends (which once kept only the last part fetched), and back.
    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one column chunk
    fn every_read_returns_the_objects_bytes() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let store: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let size = 3 * FETCH_PART as usize + 12345;
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        rt.block_on(store.put(&"o".into(), PutPayload::from(bytes.clone()))).unwrap();
        let object = Object { store, path: "o".into(), size: size as u64, etag: None, name: "o".into() };
        let chunks = StreamedChunks::new(object, rt.handle().clone(), vec![10..size as u64]);
        let part = FETCH_PART as usize;
        let reads = [
            (10, 100),
            // Exactly where the window (10..part + 10) ends, longer than a part: two parts are fetched.
            (part + 10, part + part / 2),
            (part + 10, 5),
            (3 * part - 7, 20),
            (3 * part + 13, 12000),
            (20, part + 1),
        ];
        for (start, len) in reads {
            let got = chunks.get_bytes(start as u64, len).unwrap();
            assert!(got == bytes[start..start + len], "{len} bytes at {start}");
            let mut head = vec![0u8; 64];
            chunks.get_read(start as u64).unwrap().read_exact(&mut head).unwrap();
            assert_eq!(head, bytes[start..start + 64], "a reader at {start}");
        }
    }
}
