//! Phase 1 of an ingest: read every input, validate and place each record, and sort the records into runs
//! (spilled to the scratch space past the memory budget).

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_shared::format::layers::{DELETED, LIVE};
use cairn_shared::format::ring::Placement;

use crate::error::IngestError;
use crate::input::InputFile;
use crate::progress::Progress;
use crate::record::{Columns, Problems, ReadContext};
use crate::run::{Chunk, Run};
use crate::source::read_records;

/// What phase 1 reads.
pub(crate) struct Input<'a> {
    pub(crate) files: &'a [InputFile],
    pub(crate) columns: &'a Columns,
    pub(crate) handle: &'a tokio::runtime::Handle,
    /// Set when the ingest is stopped (its future dropped, a signal): reading ends at the next record.
    pub(crate) stop: &'a AtomicBool,
    /// The memory budget: bounds what a Parquet object's row groups may hold.
    pub(crate) memory: usize,
    /// A delta layer: values are stored tagged and deletions as tombstones (layers.rs). Otherwise a
    /// deletion has nothing to delete and is dropped.
    pub(crate) delta: bool,
}

/// What phase 1 found: the runs, and per shard its records (tombstones included).
pub(crate) struct Runs {
    pub(crate) runs: Vec<Run>,
    pub(crate) counts: Vec<u64>,
}

pub(crate) fn read_runs(
    input: &Input<'_>,
    placement: &Placement,
    skip: &HashSet<u32>,
    run_bytes: usize,
    dir: &Path,
    progress: &dyn Progress,
    max_errors: usize,
) -> Result<Runs, IngestError> {
    let shards = placement.shards();
    let mut counts = vec![0u64; shards as usize];
    let mut problems = Problems::new(max_errors);
    // One chunk fills while the previous one is sorted and spilled on the other core: two chunks of
    // `run_bytes` at most are held at once.
    let chunk_budget = run_bytes;
    let files = input.files;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let cx = ReadContext { columns: input.columns, handle: input.handle, memory: input.memory, placement };
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(0);
    // Spilled chunks come back emptied, their memory reused: a fresh chunk would be faulted in and zeroed
    // by the kernel again, page by page.
    let (recycle_tx, recycle) = std::sync::mpsc::sync_channel::<Chunk>(1);
    std::thread::scope(|scope| {
        let spiller = scope.spawn(move || -> std::io::Result<Vec<Run>> {
            let mut runs = Vec::new();
            for (i, chunk) in rx.into_iter().enumerate() {
                let (run, emptied) = chunk.into_run(shards).spill(dir, i)?;
                runs.push(run);
                if let Some(c) = emptied {
                    let _ = recycle_tx.try_send(c);
                }
            }
            Ok(runs)
        });
        let mut chunk = Chunk::with_capacity((total as usize + 1024).min(chunk_budget));
        let mut send_failed = false;
        let mut stopped = false;
        for (fi, file) in files.iter().enumerate() {
            let mut unreported = 0u64;
            let mut emit = |k: &[u8], v: Option<&[u8]>, line: u64, shard: Option<u32>| {
                if v.is_none() && !input.delta {
                    return;
                }
                let s = shard.unwrap_or_else(|| placement.shard_of(k));
                counts[s as usize] += 1;
                unreported += 1;
                if unreported == 1 << 16 {
                    progress.keys(std::mem::take(&mut unreported));
                    stopped |= input.stop.load(Ordering::Relaxed);
                }
                if stopped {
                    return;
                }
                if skip.contains(&s) {
                    return;
                }
                match (input.delta, v) {
                    (false, Some(v)) => chunk.push(s, k, &[], v, fi as u32, line),
                    (true, Some(v)) => chunk.push(s, k, &[LIVE], v, fi as u32, line),
                    (_, None) => chunk.push(s, k, &[DELETED], &[], fi as u32, line),
                }
                if chunk.footprint() >= chunk_budget {
                    // Handed over first: once the spiller has taken it, the chunk it spilled before is back
                    // (so two chunks exist at most, never a third while the spiller is busy).
                    send_failed |= tx.send(std::mem::take(&mut chunk)).is_err();
                    chunk = recycle.try_recv().unwrap_or_else(|_| Chunk::with_capacity(chunk_budget));
                }
            };
            // A reader library's panic on a hostile file is that file's problem, not the end of the process.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_records(file, &cx, &mut problems, &mut emit, &mut |b| progress.advance(b))
            }));
            match read {
                Ok(r) => r?,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    problems.add(&file.path, 0, format!("unreadable: the reader failed ({why})"));
                }
            }
            progress.keys(unreported);
            if stopped || input.stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            file.check_unchanged()?;
            if problems.full() || send_failed {
                break;
            }
        }
        drop(tx);
        let failed = stopped || send_failed || !problems.list.is_empty();
        // The last chunk is sorted here while the spiller writes the one before it.
        let last = (!failed && !chunk.is_empty()).then(|| chunk.into_run(shards));
        let mut runs = spiller.join().expect("spill thread").map_err(IngestError::io("cannot write a sorted run"))?;
        if stopped {
            return Err(IngestError::Invalid("the ingest was stopped while reading its input".into()));
        }
        if !problems.list.is_empty() {
            return Err(IngestError::BadInput(problems.list));
        }
        runs.extend(last);
        Ok(Runs { runs, counts })
    })
}
