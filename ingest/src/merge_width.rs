//! How many runs one merge reads at once (its fan-in) and how many merges run in parallel, from the process's
//! open-file limit: every writer thread holds one file per run it merges, so `threads × fan-in` must fit
//! beside what the process keeps open anyway. An input of any size then ingests under any limit the process
//! can start with (`ulimit -n 64` included); a larger fan-in only saves merge passes.

/// More runs than this are merged together first: past it a wider merge saves little (a pass is sequential
/// I/O) and costs a read buffer per run.
pub const MAX_FANIN: usize = 256;
/// Descriptors kept for the rest of the process: stdio, the async runtime, object-store connections, the
/// checkpoint and lease.
const RESERVED: u64 = 24;
/// Descriptors each writer thread needs beside its runs: the shard object being built, its upload, the run
/// file being written by a merge pass.
const PER_THREAD: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeWidth {
    pub fanin: usize,
    pub threads: usize,
}

/// What one run being merged holds: a compressed and a decompressed block and a zstd context (more while a
/// block holds a record larger than a block).
pub const READER_BYTES: usize = 256 << 10;

/// The width for `threads` writers under the current soft `RLIMIT_NOFILE`, with the runs' readers of all
/// threads within a quarter of `memory`.
pub fn merge_width(threads: usize, memory: usize) -> MergeWidth {
    let mut w = width_for(open_file_limit(), threads);
    w.fanin = w.fanin.min((memory / 4 / (w.threads * READER_BYTES)).max(2));
    w
}

fn width_for(limit: u64, threads: usize) -> MergeWidth {
    let avail = limit.saturating_sub(RESERVED);
    let threads = threads.max(1);
    let fanin = (avail / threads as u64).saturating_sub(PER_THREAD).clamp(2, MAX_FANIN as u64);
    let threads = threads.min((avail / (fanin + PER_THREAD)).max(1) as usize);
    MergeWidth { fanin: fanin as usize, threads }
}

fn open_file_limit() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given and nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) } != 0 || l.rlim_cur == libc::RLIM_INFINITY {
        return 1024;
    }
    l.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_fits_the_limit() {
        assert_eq!(width_for(64, 2), MergeWidth { fanin: 16, threads: 2 });
        assert_eq!(width_for(1024, 16), MergeWidth { fanin: 58, threads: 16 });
        assert_eq!(width_for(20_000, 2), MergeWidth { fanin: MAX_FANIN, threads: 2 });
        // A tiny limit: fewer threads rather than more files than allowed.
        let w = width_for(40, 8);
        assert_eq!(w.fanin, 2);
        assert!(w.threads as u64 * (w.fanin as u64 + PER_THREAD) <= 40 - RESERVED, "{w:?}");
        for limit in [30u64, 64, 100, 1024] {
            for threads in 1..=32 {
                let w = width_for(limit, threads);
                assert!(w.threads >= 1 && w.threads <= threads);
                if limit > RESERVED + 2 * (2 + PER_THREAD) {
                    assert!(w.threads as u64 * (w.fanin as u64 + PER_THREAD) <= limit - RESERVED, "{limit} {w:?}");
                }
            }
        }
    }
}
