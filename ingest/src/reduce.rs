//! Merges spilled runs together until at most `fanin` remain, so that the final merge reads few files at
//! once whatever the input's size: each pass merges groups of the smallest runs (size-tiered), in parallel,
//! into new run files, and deletes the runs it merged. Duplicates are kept (both copies, with their input
//! positions): the final merge reports them.

use std::io;
use std::ops::Range;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::merge::Merge;
use crate::run::{Run, run_path};
use crate::run_file::RunWriter;

pub struct Reduce<'a> {
    pub dir: &'a Path,
    /// The shards of the runs' records.
    pub shards: Range<u32>,
    pub fanin: usize,
    pub threads: usize,
    /// Set when the ingest is stopped: merging ends at the next batch of records.
    pub stop: &'a AtomicBool,
}

impl Reduce<'_> {
    /// Returns at most `fanin` runs (plus the memory run, which is never merged here), and how many merges it
    /// took. `next_id` numbers the new run files.
    pub fn run(&self, mut runs: Vec<Run>, mut next_id: usize) -> io::Result<(Vec<Run>, usize)> {
        let fanin = self.fanin.max(2);
        let mut merges = 0;
        loop {
            let (mut files, mut kept): (Vec<Run>, Vec<Run>) = runs.into_iter().partition(Run::is_file);
            if files.len() <= fanin {
                kept.extend(files);
                return Ok((kept, merges));
            }
            files.sort_by_key(Run::bytes);
            let mut excess = files.len() - fanin;
            let mut groups: Vec<(usize, Vec<Run>)> = Vec::new();
            let mut rest = files.into_iter().peekable();
            while excess > 0 && rest.peek().is_some() {
                let group: Vec<Run> = rest.by_ref().take(fanin.min(excess + 1)).collect();
                if group.len() < 2 {
                    kept.extend(group);
                    break;
                }
                excess -= group.len() - 1;
                groups.push((next_id, group));
                next_id += 1;
            }
            kept.extend(rest);
            merges += groups.len();
            kept.extend(self.merge_groups(groups)?);
            runs = kept;
        }
    }

    fn merge_groups(&self, groups: Vec<(usize, Vec<Run>)>) -> io::Result<Vec<Run>> {
        let queue = Mutex::new(groups);
        let done = Mutex::new(Vec::new());
        let failed: Mutex<Option<io::Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..self.threads.max(1) {
                scope.spawn(|| {
                    loop {
                        if failed.lock().expect("error slot").is_some() {
                            return;
                        }
                        let Some((id, group)) = queue.lock().expect("queue").pop() else { return };
                        match self.merge_group(id, &group) {
                            Ok(run) => done.lock().expect("results").push(run),
                            Err(e) => {
                                failed.lock().expect("error slot").get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        match failed.into_inner().expect("error slot") {
            Some(e) => Err(e),
            None => Ok(done.into_inner().expect("results")),
        }
    }

    fn merge_group(&self, id: usize, group: &[Run]) -> io::Result<Run> {
        let mut merge = Merge::open(group, self.shards.clone())?;
        let mut w = RunWriter::create(run_path(self.dir, id), self.shards.clone())?;
        let mut n = 0u64;
        while let Some(rec) = merge.peek() {
            w.push(&rec)?;
            merge.advance()?;
            n += 1;
            if n.is_multiple_of(1 << 16) && self.stop.load(Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "the ingest was stopped"));
            }
        }
        let run = w.finish()?.into();
        drop(merge);
        for r in group {
            if let Run::File { path, .. } = r {
                std::fs::remove_file(path)?;
            }
        }
        Ok(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Chunk;

    #[test]
    fn many_runs_reduce_to_the_fan_in_and_keep_every_record_and_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let shards = 3;
        let mut runs = Vec::new();
        let mut want = Vec::new();
        for r in 0..23u32 {
            let mut c = Chunk::default();
            for i in 0..(r % 5 + 1) {
                let key = format!("k{:03}-{i}", (r * 7919) % 101);
                c.push(r % shards, key.as_bytes(), &[], b"v", r, i as u64);
                want.push((r % shards, key));
            }
            runs.push(c.into_run(shards).spill(dir.path(), r as usize).unwrap().0);
        }
        // One key twice, in two runs that end up in different groups.
        for (id, file) in [(100usize, 50u32), (101, 51)] {
            let mut c = Chunk::default();
            c.push(1, b"twice", &[], b"v", file, 9);
            runs.push(c.into_run(shards).spill(dir.path(), id).unwrap().0);
            want.push((1, "twice".into()));
        }
        let stop = AtomicBool::new(false);
        let reduce = Reduce { dir: dir.path(), shards: 0..shards, fanin: 4, threads: 2, stop: &stop };
        let (runs, merges) = reduce.run(runs, 1000).unwrap();
        assert!(runs.len() <= 4, "{} runs left", runs.len());
        assert!(merges >= 7, "{merges} merges");
        // Only the reduced runs' files are left.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), runs.len());
        let mut m = Merge::open(&runs, 0..shards).unwrap();
        let mut got = Vec::new();
        while let Some(r) = m.peek() {
            got.push((r.shard, String::from_utf8(r.key.to_vec()).unwrap(), r.file));
            m.advance().unwrap();
        }
        want.sort();
        assert_eq!(got.iter().map(|(s, k, _)| (*s, k.clone())).collect::<Vec<_>>(), want);
        let twice: Vec<u32> = got.iter().filter(|g| g.1 == "twice").map(|g| g.2).collect();
        assert_eq!(twice, [50, 51], "both copies kept, the earlier input first");
    }
}
