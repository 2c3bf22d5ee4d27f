//! Writes the shard objects of one partition of an external build (a Spark task), each shard's rows all in
//! this partition. Rows sorted by (shard, key) are streamed: each shard's object is finished and uploaded as
//! soon as its last row has passed, so memory stays at one open shard. Unsorted rows
//! ([`PartitionWriter::unsorted`]) are sorted here, as `cairn ingest` sorts (runs of at most
//! [`DEFAULT_RUN_BYTES`], spilled to a temporary directory, merged per shard at the end), which saves the
//! caller a sort of whole rows. Everything an upstream mistake could break is checked, not assumed: each
//! key's shard is recomputed, order is strict (an equal key is a duplicate, named), and nulls are refused.

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type};
use arrow_array::{Array, ArrayRef};
use arrow_schema::DataType;
use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::ring::Placement;
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::stores::Store;

use crate::batch_rows::BatchRows;
use crate::error::IngestError;
use crate::merge::{Merge, MergeError};
use crate::options::DEFAULT_RUN_BYTES;
use crate::run::{Chunk, Run};
use crate::shard_object::{ShardObject, VersionTarget};

pub struct PartitionWriter {
    target: VersionTarget,
    roots: Vec<Store>,
    placement: Placement,
    format: ShardFormat,
    dir: crate::scratch::Scratch,
    open: Option<OpenShard>,
    entries: Vec<ShardEntry>,
    /// Set for unsorted input: the rows buffered and spilled so far.
    sorting: Option<Sorting>,
}

struct Sorting {
    chunk: Chunk,
    runs: Vec<Run>,
    /// Shards that have rows (the others get no object: the build publishes them empty).
    seen: std::collections::BTreeSet<u32>,
    rows: u64,
    run_bytes: usize,
}

struct OpenShard {
    shard: u32,
    object: ShardObject,
    last_key: Vec<u8>,
}

fn invalid(why: String) -> IngestError {
    IngestError::Invalid(why)
}

impl PartitionWriter {
    pub fn new(target: VersionTarget, roots: Vec<Store>) -> Result<Self, IngestError> {
        let placement = Placement::new(&target.placement).map_err(IngestError::Invalid)?;
        let dir = crate::scratch::Scratch::create(&std::env::temp_dir(), "cairn-partition-")
            .map_err(IngestError::io("cannot create a temporary directory"))?;
        Ok(PartitionWriter {
            target,
            roots,
            placement,
            format: ShardFormat::default(),
            dir,
            open: None,
            entries: Vec::new(),
            sorting: None,
        })
    }

    /// A writer for rows in any order: it sorts them itself, in runs of `run_bytes` (None:
    /// [`DEFAULT_RUN_BYTES`]; smaller for tests).
    pub fn unsorted(target: VersionTarget, roots: Vec<Store>, run_bytes: Option<usize>) -> Result<Self, IngestError> {
        let run_bytes =
            run_bytes.unwrap_or(DEFAULT_RUN_BYTES).clamp(crate::options::MIN_RUN_BYTES, crate::options::MAX_RUN_BYTES);
        let mut w = Self::new(target, roots)?;
        w.sorting =
            Some(Sorting { chunk: Chunk::default(), runs: Vec::new(), seen: Default::default(), rows: 0, run_bytes });
        Ok(w)
    }

    /// Appends a batch: `shards` (Int32, Int64 or UInt32), `keys` (strings, or UTF-8 bytes) and `values`
    /// (strings or bytes), sorted by (shard, key) and continuing the previous batch.
    pub async fn write(&mut self, shards: &ArrayRef, keys: &ArrayRef, values: &ArrayRef) -> Result<(), IngestError> {
        if shards.len() != keys.len() {
            return Err(invalid(format!("columns of different lengths: {} shards, {} keys", shards.len(), keys.len())));
        }
        let rows = BatchRows::new(keys, values, self.target.delta)?;
        let shard_at = shard_column(shards)?;
        for i in 0..rows.len() {
            let (key, value) = rows.row(i)?;
            let shard = shard_at(i).ok_or_else(|| invalid(format!("no shard for key {key:?}")))?;
            let placed = self.placement.shard_of(key.as_bytes());
            if placed as i64 != shard {
                return Err(invalid(format!(
                    "key {key:?} came with shard {shard}, but this version places it on shard {placed}"
                )));
            }
            if let Some(s) = &mut self.sorting {
                s.rows += 1;
                s.seen.insert(placed);
                s.chunk.push(placed, key.as_bytes(), &[], value, 0, s.rows);
                if s.chunk.footprint() >= s.run_bytes {
                    let full = std::mem::take(&mut s.chunk).into_run(self.placement.shards());
                    let (run, _) = full
                        .spill(self.dir.path(), s.runs.len())
                        .map_err(IngestError::io("cannot write a sorted run"))?;
                    s.runs.push(run);
                }
                continue;
            }
            match &self.open {
                Some(o) if o.shard == placed => {
                    if key.as_bytes() == o.last_key.as_slice() {
                        return Err(invalid(format!("duplicate key {key:?}")));
                    }
                    if key.as_bytes() < o.last_key.as_slice() {
                        return Err(invalid(format!(
                            "rows of shard {placed} are not sorted: {key:?} after {:?}",
                            String::from_utf8_lossy(&o.last_key)
                        )));
                    }
                }
                Some(o) if placed < o.shard => {
                    return Err(invalid(format!(
                        "rows of shard {placed} came after those of shard {}: the partition is not sorted by shard",
                        o.shard
                    )));
                }
                _ => {
                    self.close_shard().await?;
                    let object = ShardObject::create(&self.target, &self.format, placed, self.dir.path())?;
                    self.open = Some(OpenShard { shard: placed, object, last_key: Vec::new() });
                }
            }
            let open = self.open.as_mut().expect("opened above");
            open.object.append(key, value)?;
            open.last_key.clear();
            open.last_key.extend_from_slice(key.as_bytes());
        }
        Ok(())
    }

    async fn close_shard(&mut self) -> Result<(), IngestError> {
        if let Some(open) = self.open.take() {
            self.entries.push(open.object.finish_exclusive(&self.roots).await?);
        }
        Ok(())
    }

    /// Finishes the last shard and returns the entries of every shard written, in shard order.
    pub async fn finish(mut self) -> Result<Vec<ShardEntry>, IngestError> {
        if let Some(mut s) = self.sorting.take() {
            if !s.chunk.is_empty() {
                s.runs.push(std::mem::take(&mut s.chunk).into_run(self.placement.shards()));
            }
            let shards = self.placement.shards();
            // As many runs as a skewed partition makes, merged within the open-file limit (merge_width.rs).
            let width = crate::merge_width::merge_width(1, 4 * s.run_bytes);
            let spilled = s.runs.iter().filter(|r| r.is_file()).count();
            if spilled > width.fanin {
                let stop = std::sync::atomic::AtomicBool::new(false);
                let reduce = crate::reduce::Reduce {
                    dir: self.dir.path(),
                    shards: 0..shards,
                    fanin: width.fanin,
                    threads: 1,
                    stop: &stop,
                };
                let runs = std::mem::take(&mut s.runs);
                s.runs = reduce.run(runs, spilled + 1).map_err(IngestError::io("cannot merge sorted runs"))?.0;
            }
            let mut merge = Merge::open(&s.runs, 0..shards).map_err(IngestError::io("cannot read a sorted run"))?;
            for &shard in &s.seen {
                let mut object = ShardObject::create(&self.target, &self.format, shard, self.dir.path())?;
                let drained = merge.drain_shard(shard, |rec| {
                    let key = std::str::from_utf8(rec.key).expect("checked before buffering");
                    object.append(key, rec.value)
                });
                match drained {
                    Ok(_) => {}
                    Err(MergeError::Io(e)) => return Err(IngestError::io("cannot read a sorted run")(e)),
                    Err(MergeError::Sink(e)) => return Err(e.into()),
                    Err(MergeError::Duplicate(d)) => {
                        return Err(invalid(format!("duplicate key {:?}", String::from_utf8_lossy(&d.key))));
                    }
                }
                self.entries.push(object.finish_exclusive(&self.roots).await?);
            }
            return Ok(self.entries);
        }
        self.close_shard().await?;
        Ok(self.entries)
    }
}

/// Row `i`'s shard (None for a null), from any integer column Spark or pyarrow makes of it.
fn shard_column(a: &ArrayRef) -> Result<Box<dyn Fn(usize) -> Option<i64> + Send + Sync + '_>, IngestError> {
    let valid = move |i: usize| !a.is_null(i);
    Ok(match a.data_type() {
        DataType::Int32 => {
            let p = a.as_primitive::<Int32Type>();
            Box::new(move |i| valid(i).then(|| p.value(i) as i64))
        }
        DataType::Int64 => {
            let p = a.as_primitive::<Int64Type>();
            Box::new(move |i| valid(i).then(|| p.value(i)))
        }
        DataType::UInt32 => {
            let p = a.as_primitive::<UInt32Type>();
            Box::new(move |i| valid(i).then(|| p.value(i) as i64))
        }
        dt => return Err(invalid(format!("the shard column is {dt}; expected int32, int64 or uint32"))),
    })
}
