//! K-way merge of one shard's sections of every run, rejecting duplicate keys (the input must be a map).

use std::io;

use crate::run::{Record, Run};

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

/// Feeds `sink` every record of `shard` in ascending key order. The number of runs is small (input size /
/// memory budget), so picking the minimum by a linear scan beats a heap's bookkeeping.
pub fn merge_shard<E>(
    runs: &[Run],
    shard: u32,
    mut sink: impl FnMut(&Record<'_>) -> Result<(), E>,
) -> Result<u64, MergeError<E>> {
    let mut cursors = runs.iter().map(|r| r.cursor(shard)).collect::<io::Result<Vec<_>>>().map_err(MergeError::Io)?;
    let mut last: Option<(Vec<u8>, u32, u64)> = None;
    let mut n = 0u64;
    loop {
        let mut best: Option<usize> = None;
        for (i, c) in cursors.iter().enumerate() {
            if let Some(rec) = c.current()
                && best.is_none_or(|b| rec.key < cursors[b].current().expect("best is live").key)
            {
                best = Some(i);
            }
        }
        let Some(b) = best else { break };
        let rec = cursors[b].current().expect("best is live");
        if let Some((k, f, l)) = &last
            && k.as_slice() == rec.key
        {
            return Err(MergeError::Duplicate(Duplicate {
                key: k.clone(),
                first: (*f, *l),
                second: (rec.file, rec.line),
            }));
        }
        sink(&rec).map_err(MergeError::Sink)?;
        let slot = last.get_or_insert_with(|| (Vec::new(), 0, 0));
        slot.0.clear();
        slot.0.extend_from_slice(rec.key);
        slot.1 = rec.file;
        slot.2 = rec.line;
        n += 1;
        cursors[b].advance().map_err(MergeError::Io)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Chunk;

    fn run(keys: &[&str], file: u32) -> Chunk {
        let mut c = Chunk::default();
        for (i, k) in keys.iter().enumerate() {
            c.push(0, k.as_bytes(), format!("v-{k}").as_bytes(), file, i as u64 + 1);
        }
        c
    }

    #[test]
    fn merges_memory_and_spilled_runs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(&["d", "a", "f"], 0).into_run(1).spill(dir.path(), 0).unwrap();
        let b = run(&["c", "b", "e"], 1).into_run(1);
        let mut out = Vec::new();
        let n = merge_shard::<()>(&[a, b], 0, |r| {
            out.push(String::from_utf8(r.key.to_vec()).unwrap());
            assert_eq!(r.value, format!("v-{}", out.last().unwrap()).as_bytes());
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 6);
        assert_eq!(out, ["a", "b", "c", "d", "e", "f"]);
    }

    #[test]
    fn reports_both_places_of_a_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let a = run(&["x", "k"], 0).into_run(1).spill(dir.path(), 0).unwrap();
        let b = run(&["y", "z", "k"], 3).into_run(1);
        let Err(MergeError::Duplicate(d)) = merge_shard::<()>(&[a, b], 0, |_| Ok(())) else { panic!("no duplicate") };
        assert_eq!(d.key, b"k");
        assert_eq!([d.first, d.second], [(0, 2), (3, 3)]);
    }
}
