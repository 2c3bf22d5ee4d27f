//! The map side of a bulk load's exchange (cairn's own shuffle, in place of Spark's shuffle and sort): one
//! task's rows, checked and placed on their shards as `cairn ingest` places them, sorted in runs of bounded
//! size as it sorts them (spilled to local disk), and merged at the end into the one run the task stages
//! in the primary store (`layout::staged_run_path`) for the tasks that merge a range of shards each
//! (staged_merge.rs). One run per task, however much it was given: every merge task reads a slice of every
//! staged run, so their number multiplies the reads. Rows cross from Spark to cairn once, and no Spark-side
//! sort or shuffle of whole rows is needed.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use arrow_array::ArrayRef;
use cairn_shared::format::layout;
use cairn_shared::format::ring::Placement;
use cairn_shared::stores::Store;
use tokio::io::AsyncWriteExt;

use crate::batch_rows::BatchRows;
use crate::error::IngestError;
use crate::merge::Merge;
use crate::options::{DEFAULT_RUN_BYTES, MAX_RUN_BYTES, MIN_RUN_BYTES};
use crate::reduce::Reduce;
use crate::run::{Chunk, Run, run_path};
use crate::run_file::RunWriter;
use crate::scratch::Scratch;
use crate::shard_object::VersionTarget;

/// A staged run, as the map task reports it to the driver and the driver hands it to every merging task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedRun {
    /// Its object under the primary root.
    pub path: String,
    /// Bytes of blocks; the footer (one entry per shard, and one more) follows them.
    pub blocks: u64,
    /// The placement's shard count when it was written (its footer indexes all of them).
    pub shards: u32,
    pub rows: u64,
}

pub struct RunStager {
    target: VersionTarget,
    primary: Store,
    placement: Placement,
    dir: Scratch,
    chunk: Chunk,
    run_bytes: usize,
    /// The run names' prefix: this task attempt's own, so a retried or speculative attempt never
    /// overwrites a run another attempt reported.
    name: String,
    rows: u64,
    /// Runs spilled to local disk so far.
    spilled: Vec<Run>,
    placed: Vec<u32>,
}

impl RunStager {
    /// `task`: the partition and an id unique to this attempt (Spark's task attempt id); `run_bytes`: the
    /// memory a run is sorted in (None: [`DEFAULT_RUN_BYTES`]).
    pub fn new(
        target: VersionTarget,
        roots: Vec<Store>,
        task: (u32, u64),
        run_bytes: Option<usize>,
    ) -> Result<Self, IngestError> {
        let placement = Placement::new(&target.placement).map_err(IngestError::Invalid)?;
        let primary =
            roots.into_iter().next().ok_or_else(|| IngestError::Invalid("a build target names no store".into()))?;
        let dir = Scratch::create(&std::env::temp_dir(), "cairn-stage-")
            .map_err(IngestError::io("cannot create a temporary directory"))?;
        Ok(RunStager {
            target,
            primary,
            placement,
            dir,
            chunk: Chunk::default(),
            run_bytes: run_bytes.unwrap_or(DEFAULT_RUN_BYTES).clamp(MIN_RUN_BYTES, MAX_RUN_BYTES),
            name: format!("p{:05}-t{}", task.0, task.1),
            rows: 0,
            spilled: Vec::new(),
            placed: Vec::new(),
        })
    }

    /// Appends a batch of `keys` (strings, or UTF-8 bytes) and `values` (strings or bytes; a delta's
    /// tagged), in any order.
    pub async fn write(&mut self, keys: &ArrayRef, values: &ArrayRef) -> Result<(), IngestError> {
        let rows = BatchRows::new(keys, values, self.target.delta)?;
        let mut placed = std::mem::take(&mut self.placed);
        self.placement.shards_of((0..rows.len()).map(|i| rows.raw_key(i)), &mut placed);
        let result = async {
            for (i, &shard) in placed.iter().enumerate() {
                let (key, value) = rows.row(i)?;
                self.rows += 1;
                // The row's place in this task's input: what a duplicate's report would name.
                self.chunk.push(shard, key.as_bytes(), &[], value, 0, self.rows);
                if self.chunk.footprint() >= self.run_bytes {
                    self.spill()?;
                }
            }
            Ok(())
        }
        .await;
        self.placed = placed;
        result
    }

    /// Sorts the buffered rows into a local run file.
    fn spill(&mut self) -> Result<(), IngestError> {
        let id = self.spilled.len();
        let (run, reused) = std::mem::take(&mut self.chunk)
            .into_run(self.placement.shards())
            .spill(self.dir.path(), id)
            .map_err(IngestError::io("cannot write a sorted run"))?;
        self.chunk = reused.unwrap_or_default();
        self.spilled.push(run);
        Ok(())
    }

    /// The task's one run: the buffered rows alone, or merged with the runs spilled before them (more than
    /// the open-file limit lets one merge read are merged together first).
    fn merged(&mut self) -> Result<(PathBuf, u64), IngestError> {
        let shards = self.placement.shards();
        let last = std::mem::take(&mut self.chunk).into_run(shards);
        let id = self.spilled.len() + 1;
        let mut runs = std::mem::take(&mut self.spilled);
        let read_err = IngestError::io("cannot read a sorted run");
        if runs.is_empty() {
            let (run, _) = last.spill(self.dir.path(), id).map_err(IngestError::io("cannot write a sorted run"))?;
            let Run::File { path, bytes, .. } = run else { unreachable!("a spilled run is a file") };
            return Ok((path, bytes));
        }
        // The last row filled the one spilled run: it is the task's run as it is.
        if runs.len() == 1 && last.bytes() == 0 {
            let Some(Run::File { path, bytes, .. }) = runs.pop() else { unreachable!("spilled runs are files") };
            return Ok((path, bytes));
        }
        let width = crate::merge_width::merge_width(1, 4 * self.run_bytes);
        if runs.len() > width.fanin {
            let stop = AtomicBool::new(false);
            let reduce =
                Reduce { dir: self.dir.path(), shards: 0..shards, fanin: width.fanin, threads: 1, stop: &stop };
            runs = reduce.run(runs, id + 1).map_err(IngestError::io("cannot merge sorted runs"))?.0;
        }
        runs.push(last);
        let path = run_path(self.dir.path(), id);
        let mut w = RunWriter::create(path.clone(), 0..shards).map_err(IngestError::io("cannot write a sorted run"))?;
        let mut merge = Merge::open(&runs, 0..shards).map_err(read_err)?;
        while let Some(rec) = merge.peek() {
            w.push(&rec).map_err(IngestError::io("cannot write a sorted run"))?;
            merge.advance().map_err(IngestError::io("cannot read a sorted run"))?;
        }
        drop(merge);
        let bytes = w.finish().map_err(IngestError::io("cannot write a sorted run"))?.bytes;
        // Best effort: the scratch directory goes when the stager does.
        for r in &runs {
            if let Run::File { path, .. } = r {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok((path, bytes))
    }

    /// Stages the task's rows as one run in the primary store.
    async fn stage(&mut self) -> Result<StagedRun, IngestError> {
        let shards = self.placement.shards();
        let (path, bytes) = self.merged()?;
        let dest = layout::staged_run_path(&self.target.keyspace, &self.target.version, &self.name);
        let staged = StagedRun { path: dest.to_string(), blocks: bytes, shards, rows: self.rows };
        let io_err = |what: &str| IngestError::io(format!("{what} {dest}"));
        // A local store's run is moved into place: nothing reads it before the map job ends, and a crash
        // fails the load, so it needs no copy and no sync.
        if let Some(into) = self.primary.local_file(&dest) {
            let moved =
                into.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::rename(&path, &into));
            if moved.is_ok() {
                return Ok(staged);
            }
        }
        let mut file = std::fs::File::open(&path).map_err(io_err("cannot read the local copy of"))?;
        let mut w = object_store::buffered::BufWriter::with_capacity(self.primary.inner.clone(), dest.clone(), 8 << 20)
            .with_max_concurrency(2);
        let mut buf = vec![0u8; 1 << 20];
        let sent: Result<(), IngestError> = async {
            loop {
                let n = std::io::Read::read(&mut file, &mut buf).map_err(io_err("cannot read the local copy of"))?;
                if n == 0 {
                    return Ok(());
                }
                w.write_all(&buf[..n]).await.map_err(io_err("cannot upload"))?;
            }
        }
        .await;
        if let Err(e) = sent {
            // A multipart upload's parts are invisible to listings (and so to gc) until aborted. (Only before
            // the shutdown: object_store's writer panics on an abort after it.)
            let _ = w.abort().await;
            return Err(e);
        }
        w.shutdown().await.map_err(io_err("cannot upload"))?;
        drop(file);
        std::fs::remove_file(&path).map_err(io_err("cannot remove the local copy of"))?;
        Ok(staged)
    }

    /// Stages the task's rows as one run; returns it (none for a task given no rows).
    pub async fn finish(mut self) -> Result<Vec<StagedRun>, IngestError> {
        if self.rows == 0 {
            return Ok(Vec::new());
        }
        Ok(vec![self.stage().await?])
    }
}
