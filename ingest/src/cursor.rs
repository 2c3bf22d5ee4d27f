//! The merge's view of a sorted run, wherever it lies (memory or a run file): its records, one at a time,
//! in (shard, key) order.

use std::io;

/// One record as the merge sees it: where it goes (shard) and where it came from (input file, line or row).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub shard: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub file: u32,
    pub line: u64,
}

impl Record<'_> {
    /// Merge order: (shard, key), then input position, so that of two equal keys the earlier one in the input
    /// comes first whatever runs they were sorted into.
    #[inline]
    pub fn cmp_order(&self, other: &Record<'_>) -> std::cmp::Ordering {
        (self.shard, self.key, self.file, self.line).cmp(&(other.shard, other.key, other.file, other.line))
    }
}

/// Where a merge reads one run: the record it is at, until the run's shards are done.
pub trait Cursor: Send {
    fn current(&self) -> Option<Record<'_>>;
    fn advance(&mut self) -> io::Result<()>;
}
