//! A local Parquet file read with the kernel told what comes next. The decoder reads the projected column
//! chunks page by page, alternating between them; the kernel's own readahead sees short reads jumping
//! between distant offsets and reads little ahead, so a cold file was read mostly synchronously (Parquet
//! then lost to the same rows as text, which reads forward). Each projected chunk is advised
//! (`POSIX_FADV_WILLNEED`) a bounded window ahead of where its pages are read: the page cache fills while
//! the previous pages decode, and no more than [`AHEAD`] of the file is asked for at once (or 64 KiB a
//! chunk, past 512 projected chunks).

use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parquet::file::reader::{ChunkReader, Length};

/// Bytes asked for ahead of the reads, over all of a row group's projected chunks.
const AHEAD: u64 = 32 << 20;
/// A chunk's window: [`AHEAD`] shared among the chunks, within these bounds.
const WINDOW: Range<u64> = (64 << 10)..(8 << 20);

/// A file and the column chunks about to be read from it, each with how far it was advised.
pub(crate) struct ReadAhead {
    file: File,
    /// By start offset.
    chunks: Vec<(Range<u64>, AtomicU64)>,
    window: u64,
}

impl ReadAhead {
    pub(crate) fn new(file: File, mut ranges: Vec<Range<u64>>) -> ReadAhead {
        ranges.sort_by_key(|r| r.start);
        let window = (AHEAD / ranges.len().max(1) as u64).clamp(WINDOW.start, WINDOW.end);
        let chunks = ranges.into_iter().map(|r| (r.clone(), AtomicU64::new(r.start))).collect();
        let ahead = ReadAhead { file, chunks, window };
        for i in 0..ahead.chunks.len() {
            if let Some(r) = ahead.next_window(ahead.chunks[i].0.start) {
                advise(&ahead.file, r);
            }
        }
        ahead
    }

    /// A read at `at`: when it is past half of its chunk's advised window, the window moves on, and this is
    /// the range newly advised.
    fn next_window(&self, at: u64) -> Option<Range<u64>> {
        let i = self.chunks.partition_point(|(r, _)| r.start <= at).checked_sub(1)?;
        let (range, advised) = &self.chunks[i];
        if !range.contains(&at) {
            return None;
        }
        let done = advised.load(Ordering::Relaxed);
        if done >= range.end || at + self.window / 2 < done {
            return None;
        }
        let end = (at + self.window).min(range.end);
        advised.compare_exchange(done, end, Ordering::Relaxed, Ordering::Relaxed).ok()?;
        Some(done.max(at)..end)
    }

    fn reading(&self, at: u64) {
        if let Some(r) = self.next_window(at) {
            advise(&self.file, r);
        }
    }
}

#[cfg(target_os = "linux")]
fn advise(file: &File, range: Range<u64>) {
    use std::os::fd::AsRawFd;
    let (Ok(start), Ok(len)) = (libc::off_t::try_from(range.start), libc::off_t::try_from(range.end - range.start))
    else {
        return;
    };
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
        let w = WINDOW.end;
        // Out of order, as a writer may lay its columns out.
        let ahead = ReadAhead::new(tempfile::tempfile().unwrap(), vec![3 * w..3 * w + 10, 0..3 * w]);
        assert_eq!(ahead.window, w, "two chunks share the budget within the bounds");
        let advised = |i: usize| ahead.chunks[i].1.load(Ordering::Relaxed);
        assert_eq!((advised(0), advised(1)), (w, 3 * w + 10), "each chunk's first window, advised up front");
        assert_eq!(ahead.next_window(w / 4), None, "not yet half way through the window");
        assert_eq!(ahead.next_window(w / 2 + 1), Some(w..w / 2 + 1 + w));
        // A read past the advised end (pages skipped): from the read on, and no further than the chunk's end.
        assert_eq!(ahead.next_window(3 * w - 1), Some(3 * w - 1..3 * w), "a chunk's advice stops at its end");
        assert_eq!(ahead.next_window(3 * w + 5), None, "the small chunk was advised whole");
        assert_eq!(ahead.next_window(10 * w), None, "outside every chunk: nothing");
        assert_eq!((advised(0), advised(1)), (3 * w, 3 * w + 10));

        let wide = ReadAhead::new(tempfile::tempfile().unwrap(), (0..2000u64).map(|c| c * w..(c + 1) * w).collect());
        assert_eq!(wide.window, WINDOW.start, "many columns: a small window each");
        assert_eq!(
            wide.chunks.iter().map(|(r, a)| a.load(Ordering::Relaxed) - r.start).sum::<u64>(),
            2000 * WINDOW.start
        );
    }
}
