//! The bytes of a Parquet input's row group: a local file read as it is, or an object's projected column
//! chunks fetched in parts, in parallel, ahead of decoding (anything else fetched on demand, as of the ETag
//! the object was listed with).

use std::io::Read;
use std::ops::Range;

use bytes::{Buf, Bytes};
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::object_read::{FETCH_PART, Object, ObjectRead};
use crate::read_ahead::ReadAhead;

/// Parts of one row group fetched at a time.
pub(crate) const FETCH_PARALLEL: usize = 8;

/// A row group's fetch under way; dropped (an early return), it stops.
pub(crate) struct Prefetch(pub(crate) JoinHandle<std::io::Result<Vec<(u64, Bytes)>>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Each range in [`FETCH_PART`] parts, [`FETCH_PARALLEL`] at a time, joined again: (offset, bytes) per range.
pub(crate) async fn fetch_chunks(object: Object, ranges: Vec<Range<u64>>) -> std::io::Result<Vec<(u64, Bytes)>> {
    use futures::{StreamExt, TryStreamExt};
    let parts: Vec<(usize, Range<u64>)> = ranges
        .iter()
        .enumerate()
        .flat_map(|(i, r)| {
            (r.start..r.end).step_by(FETCH_PART as usize).map(move |s| (i, s..(s + FETCH_PART).min(r.end)))
        })
        .collect();
    let mut joined: Vec<Vec<u8>> = ranges.iter().map(|r| Vec::with_capacity((r.end - r.start) as usize)).collect();
    // In order as they arrive, each part copied and dropped: a row group is held once, not twice.
    let mut got = futures::stream::iter(parts)
        .map(|(i, r)| {
            let object = object.clone();
            async move { Ok::<_, std::io::Error>((i, object.fetch(r).await?)) }
        })
        .buffered(FETCH_PARALLEL);
    while let Some((i, b)) = got.try_next().await? {
        joined[i].extend_from_slice(&b);
    }
    Ok(ranges.iter().map(|r| r.start).zip(joined.into_iter().map(Bytes::from)).collect())
}

/// A row group's bytes: a local file, the fetched column chunks of an object, or an object's column chunks
/// streamed (a row group too large to hold).
pub(crate) enum Fetched {
    Local(ReadAhead),
    Object(ObjectChunks),
    Streamed(crate::parquet_stream::StreamedChunks),
}

impl Length for Fetched {
    fn len(&self) -> u64 {
        match self {
            Fetched::Local(f) => f.len(),
            Fetched::Object(o) => o.len(),
            Fetched::Streamed(s) => s.len(),
        }
    }
}

impl ChunkReader for Fetched {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        match self {
            Fetched::Local(f) => Ok(Box::new(f.get_read(start)?)),
            Fetched::Object(o) => o.get_read(start),
            Fetched::Streamed(s) => s.get_read(start),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            Fetched::Local(f) => f.get_bytes(start, length),
            Fetched::Object(o) => o.get_bytes(start, length),
            Fetched::Streamed(s) => s.get_bytes(start, length),
        }
    }
}

/// Parts of an object already fetched; anything else is fetched on demand (as of the listed ETag).
pub(crate) struct ObjectChunks {
    pub(crate) object: Object,
    pub(crate) handle: Handle,
    pub(crate) chunks: Vec<(u64, Bytes)>,
}

impl ObjectChunks {
    fn find(&self, start: u64, len: u64) -> Option<Bytes> {
        self.chunks.iter().find_map(|(off, b)| {
            (start >= *off && start + len <= off + b.len() as u64)
                .then(|| b.slice((start - off) as usize..(start - off + len) as usize))
        })
    }
}

impl Length for ObjectChunks {
    fn len(&self) -> u64 {
        self.object.size
    }
}

impl ChunkReader for ObjectChunks {
    type T = Box<dyn Read + Send>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        for (off, b) in &self.chunks {
            if start >= *off && start < off + b.len() as u64 {
                return Ok(Box::new(b.slice((start - off) as usize..).reader()));
            }
        }
        // Not prefetched (a page header outside the projected chunks): small ranges, one at a time.
        Ok(Box::new(ObjectRead::with_window(self.object.clone(), self.handle.clone(), start, 64 << 10, 1)))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        if let Some(b) = self.find(start, length as u64) {
            return Ok(b);
        }
        let end = start
            .checked_add(length as u64)
            .filter(|&e| e <= self.object.size)
            .ok_or_else(|| parquet::errors::ParquetError::EOF(format!("{length} bytes at {start} are past the end")))?;
        self.handle
            .block_on(self.object.fetch(start..end))
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
    }
}
