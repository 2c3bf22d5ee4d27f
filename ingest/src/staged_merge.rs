//! The reduce side of a bulk load's exchange: one task merges a range of shards from every run the map
//! tasks staged (staged_run.rs) and writes those shards' objects. From each run it fetches only the blocks
//! that hold its shards (the run's footer says where they are), so the bytes fetched over all tasks are
//! the runs' size once, as a shuffle reads its map outputs once.

use std::collections::VecDeque;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::stores::Store;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::error::IngestError;
use crate::merge::{Merge, MergeError};
use crate::run::Run;
use crate::run_file::{BLOCK_HEAD, ENTRY, Start, footer_entry, put_footer_entry};
use crate::scratch::Scratch;
use crate::shard_object::{ShardObject, VersionTarget};
use crate::staged_run::StagedRun;

/// Runs fetched at once.
const FETCHES: usize = 8;
/// More than any run holds (a run is one map task's share of the input, compressed).
const MAX_RUN_OBJECT: u64 = 1 << 40;

/// Writes the objects of the shards in `shards` that have rows, from `runs`; returns their entries in shard
/// order. A key twice (in one run or two) fails it, naming the key.
pub async fn merge_staged(
    target: &VersionTarget,
    roots: &[Store],
    runs: &[StagedRun],
    shards: Range<u32>,
) -> Result<Vec<ShardEntry>, IngestError> {
    let n = target.placement.shards();
    if shards.start > shards.end || shards.end > n {
        return Err(IngestError::Invalid(format!("shards {shards:?} of a placement of {n}")));
    }
    if let Some(r) = runs.iter().find(|r| r.shards != n) {
        return Err(IngestError::Invalid(format!("run {} indexes {} shards, the placement has {n}", r.path, r.shards)));
    }
    // A description from elsewhere (the Python API takes them as JSON) with offsets no run could have.
    if let Some(r) = runs.iter().find(|r| r.blocks > MAX_RUN_OBJECT) {
        return Err(IngestError::Invalid(format!("run {} claims {} bytes of blocks", r.path, r.blocks)));
    }
    let primary = roots.first().ok_or_else(|| IngestError::Invalid("a build target names no store".into()))?;
    let dir = Scratch::create_async(std::env::temp_dir(), "cairn-merge-")
        .await
        .map_err(IngestError::io("cannot create a temporary directory"))?;
    // As many runs as there were map tasks: merged within the open-file limit (merge_width.rs).
    let width = crate::merge_width::merge_width(1, 4 * crate::options::DEFAULT_RUN_BYTES);
    // The runs of a local store are read where they lie, unless there are too many to read at once (merging
    // them together first writes new runs here and deletes the ones it merged: never the store's).
    let direct = runs.len() <= width.fanin;
    // The futures made up front, not by a stream's closure: a closure's borrowed future is not provably
    // Send for every lifetime, which a caller's `block_on` on another thread needs.
    let fetches: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, run)| {
            let local = dir.path().join(format!("slice-{i:06}.run"));
            fetch_slice(primary, run, &shards, local, direct)
        })
        .collect();
    let fetched: Vec<Option<Run>> = futures::stream::iter(fetches).buffered(FETCHES).try_collect().await?;
    let mut runs: Vec<Run> = fetched.into_iter().flatten().collect();
    if runs.len() > width.fanin {
        let stop = AtomicBool::new(false);
        let reduce = crate::reduce::Reduce {
            dir: dir.path(),
            shards: shards.clone(),
            fanin: width.fanin,
            threads: 1,
            stop: &stop,
        };
        let next = runs.len() + 1;
        runs = reduce.run(runs, next).map_err(IngestError::io("cannot merge sorted runs"))?.0;
    }
    let mut uploads = Uploads::default();
    let result = write_shards(target, roots, &runs, shards, &mut uploads, dir.path()).await;
    if result.is_err() {
        uploads.abort();
    }
    result?;
    uploads.finish().await
}

/// Shard objects being finished and uploaded while the next shards are merged: a shard's upload waits on
/// the store (a local store syncs every object to disk), and the merge need not wait with it.
#[derive(Default)]
struct Uploads {
    /// Each upload, and the bytes of rows its object holds (what finishing it may hold in memory).
    pending: VecDeque<(tokio::task::JoinHandle<Result<ShardEntry, IngestError>>, u64)>,
    bytes: u64,
    done: Vec<ShardEntry>,
}

/// Uploads in flight at once per merging task, and the rows' bytes they may hold together: a few small
/// shards overlap, a large one waits for the ones before it.
const UPLOADS: usize = 4;
const UPLOAD_BYTES: u64 = 64 << 20;

impl Uploads {
    async fn push(&mut self, object: ShardObject, rows_bytes: u64, roots: &[Store]) -> Result<(), IngestError> {
        while !self.pending.is_empty() && (self.pending.len() >= UPLOADS || self.bytes + rows_bytes > UPLOAD_BYTES) {
            self.wait_oldest().await?;
        }
        let roots = roots.to_vec();
        // Finishing encodes the Parquet footer and reads the local copy back: blocking work, kept off the
        // runtime's workers.
        let handle = tokio::runtime::Handle::current();
        let upload = tokio::task::spawn_blocking(move || handle.block_on(object.finish_exclusive(&roots)));
        self.pending.push_back((upload, rows_bytes));
        self.bytes += rows_bytes;
        Ok(())
    }

    async fn wait_oldest(&mut self) -> Result<(), IngestError> {
        let Some((h, bytes)) = self.pending.pop_front() else { return Ok(()) };
        self.bytes -= bytes;
        match h.await {
            Ok(entry) => self.done.push(entry?),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return Err(IngestError::Invalid(format!("a shard upload was cancelled: {e}"))),
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<Vec<ShardEntry>, IngestError> {
        while !self.pending.is_empty() {
            if let Err(e) = self.wait_oldest().await {
                self.abort();
                return Err(e);
            }
        }
        Ok(self.done)
    }

    fn abort(&mut self) {
        // A blocking upload cannot be stopped: it finishes, and the object goes with the version.
        for (h, _) in self.pending.drain(..) {
            h.abort();
        }
    }
}

async fn write_shards(
    target: &VersionTarget,
    roots: &[Store],
    runs: &[Run],
    shards: Range<u32>,
    uploads: &mut Uploads,
    dir: &Path,
) -> Result<(), IngestError> {
    let format = ShardFormat::default();
    let mut merge = Merge::open(runs, shards).map_err(IngestError::io("cannot read a sorted run"))?;
    while let Some(shard) = merge.peek().map(|r| r.shard) {
        let mut object = ShardObject::create(target, &format, shard, dir)?;
        let mut rows_bytes = 0u64;
        let drained = merge.drain_shard(shard, |rec| {
            rows_bytes += (rec.key.len() + rec.value.len()) as u64;
            let key = std::str::from_utf8(rec.key).map_err(|_| {
                IngestError::Invalid(format!("a staged run holds a key that is not UTF-8 (shard {shard})"))
            })?;
            object.append(key, rec.value).map_err(IngestError::from)
        });
        match drained {
            Ok(_) => {}
            Err(MergeError::Io(e)) => return Err(IngestError::io("cannot read a sorted run")(e)),
            Err(MergeError::Sink(e)) => return Err(e),
            Err(MergeError::Duplicate(d)) => {
                return Err(IngestError::Invalid(format!("duplicate key {:?}", String::from_utf8_lossy(&d.key))));
            }
        }
        uploads.push(object, rows_bytes, roots).await?;
    }
    Ok(())
}

fn damaged(run: &StagedRun, why: &str) -> IngestError {
    IngestError::Invalid(format!("the staged run {} is damaged ({why}); nothing was published", run.path))
}

async fn get_range(store: &dyn ObjectStore, path: &ObjectPath, range: Range<u64>) -> Result<bytes::Bytes, IngestError> {
    let want = range.end - range.start;
    let got = store.get_opts(path, GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() }).await?;
    let bytes = got.bytes().await?;
    if bytes.len() as u64 != want {
        return Err(IngestError::Invalid(format!("{path}: {} bytes read, {want} asked for", bytes.len())));
    }
    Ok(bytes)
}

/// The part of `run` that holds `shards`, as a local run file indexing just them (or, `direct`, the run
/// itself where a local store keeps it); None when it holds none.
async fn fetch_slice(
    primary: &Store,
    run: &StagedRun,
    shards: &Range<u32>,
    local: PathBuf,
    direct: bool,
) -> Result<Option<Run>, IngestError> {
    let path = ObjectPath::from(run.path.as_str());
    let store = primary.inner.as_ref();
    if let Some(file) = primary.local_file(&path).filter(|_| direct) {
        let want = run.blocks + ENTRY * (run.shards as u64 + 1);
        let len =
            tokio::fs::metadata(&file).await.map_err(IngestError::io(format!("cannot read {}", file.display())))?.len();
        if len != want {
            return Err(damaged(run, &format!("{len} bytes, {want} expected")));
        }
        return Ok(Some(Run::File { path: file, bytes: run.blocks, shards: 0..run.shards }));
    }
    let footer = run.blocks + ENTRY * shards.start as u64..run.blocks + ENTRY * (shards.end as u64 + 1);
    let footer = get_range(store, &path, footer).await?;
    let entries: Vec<Start> = footer
        .chunks_exact(ENTRY as usize)
        .zip(shards.start..)
        .map(|(e, s)| footer_entry(e, s))
        .collect::<Option<_>>()
        .ok_or_else(|| damaged(run, "its footer"))?;
    let at = |e: &Start| (e.block, e.at);
    if entries.windows(2).any(|w| at(&w[1]) < at(&w[0])) || entries.iter().any(|e| e.block > run.blocks) {
        return Err(damaged(run, "its footer"));
    }
    let (first, last) = (entries[0], *entries.last().expect("one entry at least"));
    if at(&first) == at(&last) {
        return Ok(None);
    }
    // The block where the next shard starts holds the end of this range's records too, unless it starts it;
    // its entry says how long it is.
    let end = if last.at == 0 {
        last.block
    } else if last.block >= run.blocks || (last.len as u64) <= BLOCK_HEAD {
        return Err(damaged(run, "a shard starts past the blocks"));
    } else {
        last.block + last.len as u64
    };
    if end > run.blocks {
        return Err(damaged(run, "a block runs past the blocks"));
    }
    let got =
        store.get_opts(&path, GetOptions { range: Some(GetRange::Bounded(first.block..end)), ..Default::default() });
    let mut body = got.await?.into_stream();
    let mut out = tokio::fs::File::create(&local).await.map_err(local_err(&local))?;
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        tokio::io::AsyncWriteExt::write_all(&mut out, &chunk).await.map_err(local_err(&local))?;
    }
    if written != end - first.block {
        return Err(damaged(run, "shorter than its footer says"));
    }
    let mut tail = Vec::with_capacity(entries.len() * ENTRY as usize);
    for (e, s) in entries.into_iter().zip(shards.start..) {
        // A start at the slice's end starts no block of it.
        let len = if e.block >= end { 0 } else { e.len };
        put_footer_entry(&mut tail, s, Start { block: e.block - first.block, at: e.at, len });
    }
    tokio::io::AsyncWriteExt::write_all(&mut out, &tail).await.map_err(local_err(&local))?;
    tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(local_err(&local))?;
    Ok(Some(Run::File { path: local, bytes: end - first.block, shards: shards.clone() }))
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> IngestError {
    IngestError::io(format!("cannot write {}", path.display()))
}

/// Deletes the runs a load staged (once it is published or given up; gc collects any left behind).
pub async fn discard_staged(target: &VersionTarget, roots: &[Store]) -> Result<usize, IngestError> {
    let Some(primary) = roots.first() else { return Ok(0) };
    let dir = cairn_shared::format::layout::runs_dir(&target.keyspace, &target.version);
    let listed: Vec<ObjectPath> = primary.inner.list(Some(&dir)).map_ok(|m| m.location).try_collect().await?;
    let n = listed.len();
    crate::publish::delete_all(primary, listed).await?;
    Ok(n)
}
