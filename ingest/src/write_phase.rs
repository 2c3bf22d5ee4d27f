//! Phase 2 of an ingest: merge each remaining shard's records from the runs, write its object to every
//! root, and record it in the checkpoint (saved after every 1% of the shards). Each thread takes a batch of
//! consecutive shards and streams that range of every run once (one open file per run, sequential reads).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::stores::Store;

use crate::checkpoint::Owned;
use crate::error::{IngestError, InputError};
use crate::merge::{Merge, MergeError};
use crate::progress::Progress;
use crate::run::Run;
use crate::scratch::Scratch;
use crate::shard_object::{ShardObject, VersionTarget};

/// What the writer threads share.
pub(crate) struct WriteCtx {
    pub(crate) target: VersionTarget,
    pub(crate) roots: Vec<Store>,
    pub(crate) format: ShardFormat,
    pub(crate) scratch: Arc<Scratch>,
    /// Each input's name, and whether its positions are Parquet rows.
    pub(crate) files: Vec<(PathBuf, bool)>,
    pub(crate) ckpt: Arc<tokio::sync::Mutex<Owned>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) progress: Arc<dyn Progress>,
    pub(crate) handle: tokio::runtime::Handle,
}

/// Batches per thread: enough that a slow batch does not leave the other threads idle at the end.
const BATCHES_PER_THREAD: usize = 16;

pub(crate) fn write_shards(ctx: &WriteCtx, runs: &[Run], todo: &[u32], threads: usize) -> Result<(), IngestError> {
    let next = AtomicUsize::new(0);
    // The checkpoint is rewritten after every 1% of the shards (not each: that is quadratic in bytes with
    // thousands of shards), and whenever writing stops; a crash redoes at most that 1%.
    let save_every = (todo.len() / 100).max(1);
    let unsaved = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // `todo` is ascending, so a batch is a range of shards (the ones between it skips are already written:
    // the runs hold nothing for them).
    let batches: Vec<&[u32]> = todo.chunks(todo.len().div_ceil(threads * BATCHES_PER_THREAD).max(1)).collect();
    let first_error: Mutex<Option<IngestError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(batches.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let range = batch[0]..batch[batch.len() - 1] + 1;
                    let mut merge = match Merge::open(runs, range) {
                        Ok(m) => m,
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error slot").get_or_insert(IngestError::Io {
                                context: "cannot read a sorted run".into(),
                                source: e,
                            });
                            break;
                        }
                    };
                    for &shard in *batch {
                        if failed.load(Ordering::Relaxed) {
                            break;
                        }
                        if ctx.stop.load(Ordering::Relaxed) {
                            first_error.lock().expect("error slot").get_or_insert(IngestError::Invalid(
                                "the ingest was stopped (its caller went away or its checkpoint was taken over)".into(),
                            ));
                            failed.store(true, Ordering::Relaxed);
                            break;
                        }
                        let result = write_shard(ctx, &mut merge, shard).and_then(|entry| {
                            ctx.handle.block_on(async {
                                let mut c = ctx.ckpt.lock().await;
                                c.ckpt.done.insert(shard, entry);
                                if unsaved.fetch_add(1, Ordering::Relaxed) + 1 < save_every {
                                    return Ok(());
                                }
                                unsaved.store(0, Ordering::Relaxed);
                                c.save(ctx.roots[0].inner.as_ref()).await
                            })
                        });
                        match result {
                            Ok(()) => ctx.progress.advance(1),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                first_error.lock().expect("error slot").get_or_insert(e);
                            }
                        }
                    }
                }
            });
        }
    });
    let error = first_error.into_inner().expect("error slot");
    if unsaved.load(Ordering::Relaxed) > 0 && !ctx.stop.load(Ordering::Relaxed) {
        let saved = ctx.handle.block_on(async { ctx.ckpt.lock().await.save(ctx.roots[0].inner.as_ref()).await });
        if error.is_none() {
            saved?;
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_shard(ctx: &WriteCtx, merge: &mut Merge<'_>, shard: u32) -> Result<ShardEntry, IngestError> {
    let mut object = ShardObject::create(&ctx.target, &ctx.format, shard, ctx.scratch.path())?;
    let merged = merge.drain_shard(shard, |rec| {
        let key = std::str::from_utf8(rec.key).map_err(|_| cairn_shared::Error::InvalidKey("not UTF-8".into()))?;
        object.append(key, rec.value)
    });
    match merged {
        Ok(_) => {}
        Err(MergeError::Io(e)) => {
            return Err(IngestError::Io { context: "cannot read a sorted run".into(), source: e });
        }
        Err(MergeError::Sink(e)) => return Err(e.into()),
        Err(MergeError::Duplicate(d)) => {
            let at = |(f, l): (u32, u64)| {
                let (name, row) = &ctx.files[f as usize];
                format!("{}:{}{l}", name.display(), if *row { "row " } else { "" })
            };
            let (file, row) = ctx.files[d.second.0 as usize].clone();
            return Err(IngestError::BadInput(vec![InputError {
                file,
                line: d.second.1,
                row,
                message: format!("duplicate key {:?} (first seen at {})", String::from_utf8_lossy(&d.key), at(d.first)),
            }]));
        }
    }
    ctx.handle.block_on(object.finish(&ctx.roots))
}
