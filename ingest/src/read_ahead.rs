//! A local Parquet file read with the kernel told what comes next. The decoder reads the projected column
//! chunks page by page, alternating between them; the kernel's own readahead sees short reads jumping
//! between distant offsets and reads little ahead, so a cold file was read mostly synchronously (Parquet
//! then lost to the same rows as text, which reads forward). Each projected chunk is advised
//! (`POSIX_FADV_WILLNEED`) a bounded window ahead of where its pages are read: the page cache fills while
//! the previous pages decode, and no more than the window per column is asked for at once.

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

/// Bytes of each column chunk asked for ahead of its reads.
const WINDOW: u64 = 8 << 20;

/// A file and the column chunks about to be read from it, each with how far it was advised.
pub(crate) struct ReadAhead {
    file: File,
    chunks: Vec<(Range<u64>, AtomicU64)>,
}

impl ReadAhead {
    pub(crate) fn new(file: File, ranges: Vec<Range<u64>>) -> ReadAhead {
        let ahead =
            ReadAhead { file, chunks: ranges.into_iter().map(|r| (r.clone(), AtomicU64::new(r.start))).collect() };
        for (r, _) in &ahead.chunks {
            ahead.reading(r.start);
        }
        ahead
    }

    /// A read at `at`: when it is past half of its chunk's advised window, the window moves on.
    fn reading(&self, at: u64) {
        let Some((range, advised)) = self.chunks.iter().find(|(r, _)| r.contains(&at)) else { return };
        let done = advised.load(Ordering::Relaxed);
        if done >= range.end || at + WINDOW / 2 < done {
            return;
        }
        let end = (at + WINDOW).min(range.end);
        if advised.compare_exchange(done, end, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            advise(&self.file, done.max(at)..end);
        }
    }
}

#[cfg(target_os = "linux")]
fn advise(file: &File, range: Range<u64>) {
    use std::os::fd::AsRawFd;
    let (Ok(start), Ok(len)) = (i64::try_from(range.start), i64::try_from(range.end - range.start)) else { return };
    // Advice only: a failure leaves the reads as they were.
    unsafe { libc::posix_fadvise(file.as_raw_fd(), start, len, libc::POSIX_FADV_WILLNEED) };
}

#[cfg(not(target_os = "linux"))]
fn advise(_: &File, _: Range<u64>) {}

impl Length for ReadAhead {
    fn len(&self) -> u64 {
        self.file.len()
    }
}

impl ChunkReader for ReadAhead {
    type T = <File as ChunkReader>::T;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        self.reading(start);
        self.file.get_read(start)
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.reading(start);
        self.file.get_bytes(start, length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chunk_is_advised_a_window_ahead_of_its_reads_and_never_past_its_end() {
        let f = tempfile::tempfile().unwrap();
        let ahead = ReadAhead::new(f, vec![0..3 * WINDOW, 3 * WINDOW..3 * WINDOW + 10]);
        let advised = |i: usize| ahead.chunks[i].1.load(Ordering::Relaxed);
        assert_eq!((advised(0), advised(1)), (WINDOW, 3 * WINDOW + 10));
        ahead.reading(WINDOW / 4);
        assert_eq!(advised(0), WINDOW, "not yet half way through the window");
        ahead.reading(WINDOW / 2 + 1);
        assert_eq!(advised(0), WINDOW / 2 + 1 + WINDOW);
        ahead.reading(3 * WINDOW - 1);
        assert_eq!(advised(0), 3 * WINDOW, "a chunk's advice stops at its end");
        ahead.reading(10 * WINDOW);
        assert_eq!((advised(0), advised(1)), (3 * WINDOW, 3 * WINDOW + 10), "outside every chunk: nothing");
    }
}
