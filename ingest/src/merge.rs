//! Merges sorted runs: a binary heap over one cursor per run, each cursor streaming a range of shards of its
//! run. The number of runs merged at once is capped (reduce.rs merges runs together first), so the cost per
//! record is a few comparisons and the files open are bounded whatever the input's size.

use std::io;
use std::ops::Range;

use crate::cursor::{Cursor, Record};
use crate::run::Run;

/// A key that appears twice: where (file index, line) of both occurrences.
#[derive(Debug)]
pub struct Duplicate {
    pub key: Vec<u8>,
    pub first: (u32, u64),
    pub second: (u32, u64),
}

#[derive(Debug)]
pub enum MergeError<E> {
    Io(io::Error),
    Duplicate(Duplicate),
    Sink(E),
}

#[derive(Clone, Copy)]
struct Slot {
    shard: u32,
    prefix: u64,
    cursor: usize,
}

impl Slot {
    fn of(cursor: usize, rec: &Record<'_>) -> Slot {
        Slot { shard: rec.shard, prefix: crate::run::prefix_of(rec.key), cursor }
    }
}

/// Every record of a range of shards of some runs, in merge order ([`Record::cmp_order`]).
pub struct Merge<'a> {
    cursors: Vec<Box<dyn Cursor + 'a>>,
    /// Live cursors, a min-heap by their current record; each entry carries the record's shard and key
    /// prefix, so that most comparisons are of two integers, not of two cursors' keys.
    heap: Vec<Slot>,
    /// The last record handed out by [`Merge::drain_shard`]: (shard, key, file, line).
    last: Option<(u32, Vec<u8>, u32, u64)>,
}

impl<'a> Merge<'a> {
    pub fn open(runs: &'a [Run], shards: Range<u32>) -> io::Result<Merge<'a>> {
        let cursors = runs.iter().map(|r| r.cursor(shards.clone())).collect::<io::Result<Vec<_>>>()?;
        let heap: Vec<Slot> =
            cursors.iter().enumerate().filter_map(|(i, c)| c.current().map(|r| Slot::of(i, &r))).collect();
        let mut m = Merge { cursors, heap, last: None };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    pub fn peek(&self) -> Option<Record<'_>> {
        self.heap.first().map(|s| self.cursors[s.cursor].current().expect("heap holds live cursors"))
    }

    pub fn advance(&mut self) -> io::Result<()> {
        let Some(top) = self.heap.first().map(|s| s.cursor) else { return Ok(()) };
        self.cursors[top].advance()?;
        match self.cursors[top].current() {
            Some(rec) => self.heap[0] = Slot::of(top, &rec),
            None => {
                self.heap.swap_remove(0);
            }
        }
        self.sift_down(0);
        Ok(())
    }

    /// Feeds `sink` every record of `shard` (shards must be drained in ascending order), refusing a key seen
    /// twice. Records of lower shards still pending are skipped: none are expected.
    pub fn drain_shard<E>(
        &mut self,
        shard: u32,
        mut sink: impl FnMut(&Record<'_>) -> Result<(), E>,
    ) -> Result<u64, MergeError<E>> {
        let mut n = 0u64;
        while let Some(top) = self.heap.first().map(|s| s.cursor) {
            let rec = self.cursors[top].current().expect("heap holds live cursors");
            if rec.shard > shard {
                break;
            }
            if rec.shard == shard {
                if let Some((s, k, f, l)) = &self.last
                    && *s == shard
                    && k.as_slice() == rec.key
                {
                    return Err(MergeError::Duplicate(Duplicate {
                        key: k.clone(),
                        first: (*f, *l),
                        second: (rec.file, rec.line),
                    }));
                }
                sink(&rec).map_err(MergeError::Sink)?;
                let slot = self.last.get_or_insert_with(|| (0, Vec::new(), 0, 0));
                slot.0 = shard;
                slot.1.clear();
                slot.1.extend_from_slice(rec.key);
                slot.2 = rec.file;
                slot.3 = rec.line;
                n += 1;
            }
            self.advance().map_err(MergeError::Io)?;
        }
        Ok(n)
    }

    fn less(&self, a: usize, b: usize) -> bool {
        let (sa, sb) = (&self.heap[a], &self.heap[b]);
        match (sa.shard, sa.prefix).cmp(&(sb.shard, sb.prefix)) {
            std::cmp::Ordering::Equal => {
                let (x, y) = (self.cursors[sa.cursor].current(), self.cursors[sb.cursor].current());
                x.expect("live").cmp_order(&y.expect("live")).is_lt()
            }
            o => o.is_lt(),
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut m = i;
            if l < self.heap.len() && self.less(l, m) {
                m = l;
            }
            if r < self.heap.len() && self.less(r, m) {
                m = r;
            }
            if m == i {
                return;
            }
            self.heap.swap(i, m);
            i = m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Chunk;

    fn run(keys: &[&str], file: u32) -> Chunk {
        let mut c = Chunk::default();
        for (i, k) in keys.iter().enumerate() {
            let shard = (k.as_bytes()[0] % 2) as u32;
            c.push(shard, k.as_bytes(), &[], format!("v-{k}").as_bytes(), file, i as u64 + 1);
        }
        c
    }

    fn drain(runs: &[Run], shards: Range<u32>) -> Result<Vec<String>, MergeError<()>> {
        let mut m = Merge::open(runs, shards.clone()).map_err(MergeError::Io)?;
        let mut out = Vec::new();
        for s in shards {
            m.drain_shard::<()>(s, |r| {
                assert_eq!(r.shard, s);
                assert_eq!(r.value, format!("v-{}", String::from_utf8_lossy(r.key)).as_bytes());
                out.push(String::from_utf8(r.key.to_vec()).unwrap());
                Ok(())
            })?;
        }
        Ok(out)
    }

    #[test]
    fn merges_memory_and_spilled_runs_in_order_over_a_range_of_shards() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(&["d", "a", "f"], 0).into_run(2).spill(dir.path(), 0).unwrap().0;
        let b = run(&["c", "b", "e"], 1).into_run(2);
        // Shard 0 holds b, d, f (even bytes); shard 1 holds a, c, e.
        assert_eq!(drain(&[a, b], 0..2).unwrap(), ["b", "d", "f", "a", "c", "e"]);
    }

    #[test]
    fn reads_only_the_shards_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(&["d", "a", "f"], 0).into_run(2).spill(dir.path(), 0).unwrap().0;
        let b = run(&["c", "b", "e"], 1).into_run(2);
        let runs = [a, b];
        assert_eq!(drain(&runs, 1..2).unwrap(), ["a", "c", "e"]);
        assert_eq!(drain(&runs, 0..1).unwrap(), ["b", "d", "f"]);
        assert!(drain(&runs, 1..1).unwrap().is_empty());
    }

    #[test]
    fn reports_both_places_of_a_duplicate_the_earlier_first() {
        let dir = tempfile::tempdir().unwrap();
        // File 3's copy is in the run merged first; the report still names file 0's as the first seen.
        let a = run(&["y", "z", "k"], 3).into_run(2).spill(dir.path(), 0).unwrap().0;
        let b = run(&["x", "k"], 0).into_run(2);
        let Err(MergeError::Duplicate(d)) = drain(&[a, b], 0..2) else { panic!("no duplicate") };
        assert_eq!(d.key, b"k");
        assert_eq!([d.first, d.second], [(0, 2), (3, 3)]);
    }
}
