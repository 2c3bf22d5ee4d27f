//! Sorted runs. Records are buffered in a [`Chunk`] (one arena plus fixed-size record headers) up to the run
//! size, sorted by (shard, key), then either kept in memory (the last chunk) or spilled to a run file
//! (run_file.rs) whose footer locates every shard's section, so a merge reads any range of shards of a run
//! as one sequential stream.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::cursor::{Cursor, Record};
use crate::run_file::{FileCursor, RunFile, RunWriter};

/// Bytes of bookkeeping per record, counted against the memory budget.
const REC_OVERHEAD: usize = std::mem::size_of::<Rec>();

#[derive(Debug, Clone, Copy)]
struct Rec {
    shard: u32,
    file: u32,
    off: u32,
    klen: u32,
    vlen: u32,
    line: u64,
    /// The key's first 8 bytes, big-endian, zero-padded: most comparisons of a sort end here, without
    /// reaching into the arena.
    prefix: u64,
}

/// A key's first 8 bytes, big-endian, zero-padded: ordered as the keys are, up to ties.
pub(crate) fn prefix_of(key: &[u8]) -> u64 {
    if let Some(head) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*head); // every UUID: one load, not a variable-length copy
    }
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[derive(Default)]
pub struct Chunk {
    data: Vec<u8>,
    recs: Vec<Rec>,
}

impl Chunk {
    /// A chunk that never reallocates below `bytes` of footprint (untouched capacity costs no memory).
    pub fn with_capacity(bytes: usize) -> Self {
        Chunk { data: Vec::with_capacity(bytes), recs: Vec::with_capacity(bytes / REC_OVERHEAD + 1) }
    }

    /// Appends a record whose stored value is `tag` (empty, or a delta's one byte) followed by `value`.
    #[inline]
    pub fn push(&mut self, shard: u32, key: &[u8], tag: &[u8], value: &[u8], file: u32, line: u64) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(tag);
        self.data.extend_from_slice(value);
        let (klen, vlen) = (key.len() as u32, (tag.len() + value.len()) as u32);
        self.recs.push(Rec { shard, file, off, klen, vlen, line, prefix: prefix_of(key) });
    }

    /// Bytes held, bookkeeping included.
    pub fn footprint(&self) -> usize {
        self.data.len() + self.recs.len() * REC_OVERHEAD
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    #[inline]
    fn key(&self, r: &Rec) -> &[u8] {
        &self.data[r.off as usize..(r.off + r.klen) as usize]
    }

    /// Asks for the bytes of the record `i` places into the sorted order, ahead of their reading: the
    /// records are read in sorted order but lie in the arena in arrival order, a cache miss each, and
    /// asked for [`AHEAD`] records early the misses overlap instead of stalling one by one.
    #[inline]
    fn prefetch(&self, i: usize) {
        if let Some(r) = self.recs.get(i) {
            let start = self.data.as_ptr().wrapping_add(r.off as usize);
            prefetch(start);
            prefetch(start.wrapping_add((r.klen + r.vlen).saturating_sub(1) as usize));
        }
    }

    fn record(&self, r: &Rec) -> Record<'_> {
        let k = r.off as usize + r.klen as usize;
        Record {
            shard: r.shard,
            key: &self.data[r.off as usize..k],
            value: &self.data[k..k + r.vlen as usize],
            file: r.file,
            line: r.line,
        }
    }

    /// Sorts by (shard, key) and turns the chunk into an in-memory run.
    pub fn into_run(mut self, shards: u32) -> Run {
        let mut recs = std::mem::take(&mut self.recs);
        recs.sort_unstable_by(|a, b| {
            // Zero padding keeps this the keys' order: a tie on the prefix is settled by the whole key.
            (a.shard, a.prefix)
                .cmp(&(b.shard, b.prefix))
                .then_with(|| self.key(a).cmp(self.key(b)))
                .then_with(|| (a.file, a.line).cmp(&(b.file, b.line)))
        });
        self.recs = recs;
        let mut starts = Vec::with_capacity(shards as usize + 1);
        let mut start = 0;
        for s in 0..shards {
            starts.push(start);
            start += self.recs[start..].partition_point(|r| r.shard == s);
        }
        starts.push(start);
        Run::Memory { chunk: self, starts }
    }
}

/// A sorted run, in memory or in a run file.
pub enum Run {
    /// `starts[s]..starts[s+1]` are shard s's records.
    Memory { chunk: Chunk, starts: Vec<usize> },
    File {
        path: PathBuf,
        bytes: u64,
        /// The shards its footer indexes: all of them, or those of a slice fetched from a store.
        shards: Range<u32>,
    },
}

impl From<RunFile> for Run {
    fn from(f: RunFile) -> Run {
        Run::File { path: f.path, bytes: f.bytes, shards: f.shards }
    }
}

impl Run {
    /// Writes a memory run to `dir` as run file `id`: the file-backed run, and the chunk emptied (its
    /// memory kept for reuse).
    pub fn spill(self, dir: &Path, id: usize) -> io::Result<(Run, Option<Chunk>)> {
        let Run::Memory { mut chunk, starts } = self else { return Ok((self, None)) };
        let shards = (starts.len() - 1) as u32;
        let mut w = RunWriter::create(run_path(dir, id), 0..shards)?;
        for (i, r) in chunk.recs.iter().enumerate() {
            chunk.prefetch(i + AHEAD);
            w.push(&chunk.record(r))?;
        }
        chunk.data.clear();
        chunk.recs.clear();
        Ok((w.finish()?.into(), Some(chunk)))
    }

    /// Bytes of records (what merging this run costs).
    pub fn bytes(&self) -> u64 {
        match self {
            Run::Memory { chunk, .. } => chunk.data.len() as u64,
            Run::File { bytes, .. } => *bytes,
        }
    }

    pub fn is_file(&self) -> bool {
        matches!(self, Run::File { .. })
    }

    /// The records of `shards`, in (shard, key) order.
    pub fn cursor(&self, shards: Range<u32>) -> io::Result<Box<dyn Cursor + '_>> {
        match self {
            Run::Memory { chunk, starts } => {
                Ok(Box::new(MemCursor { chunk, pos: starts[shards.start as usize], end: starts[shards.end as usize] }))
            }
            Run::File { path, bytes, shards: indexed } => {
                Ok(Box::new(FileCursor::open(path, *bytes, indexed, shards)?))
            }
        }
    }
}

pub fn run_path(dir: &Path, id: usize) -> PathBuf {
    dir.join(format!("run-{id:06}.bin"))
}

struct MemCursor<'a> {
    chunk: &'a Chunk,
    pos: usize,
    end: usize,
}

impl Cursor for MemCursor<'_> {
    fn current(&self) -> Option<Record<'_>> {
        (self.pos < self.end).then(|| self.chunk.record(&self.chunk.recs[self.pos]))
    }

    fn advance(&mut self) -> io::Result<()> {
        self.pos += 1;
        if self.pos + AHEAD < self.end {
            self.chunk.prefetch(self.pos + AHEAD);
        }
        Ok(())
    }
}

/// Records asked for ahead of their reading, in sorted order (see [`Chunk::prefetch`]).
const AHEAD: usize = 16;

/// A hint to the CPU: the cache line holding `p` is read soon. Never faults, whatever `p` is.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it reads nothing and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
