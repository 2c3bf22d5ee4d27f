//! Parquet input from any writer (Spark, DuckDB, pyarrow, Polars): only the key and value columns are read
//! (projection), one row group at a time. A local file is read page by page, a window ahead advised to the
//! kernel (read_ahead.rs); an object's projected column chunks are fetched a row group at a time, the next
//! one while the current one decodes, when a row group's projected columns are at most an eighth of the
//! memory budget; a larger one is streamed page by page (parquet_stream.rs). Memory is bounded by the budget
//! whatever the writer's row groups.
//!
//! `--value-columns a,b,c` stores as the value a JSON object of those columns (docs/INPUTS.md says exactly
//! how each type is written); a single `--value-column` is stored byte for byte.

use std::fs::File;

use arrow_array::Array;
use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use cairn_shared::format::ring::Placement;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::file::reader::ChunkReader;

use crate::byte_column::ByteColumn;
use crate::error::IngestError;
use crate::input::{InputFile, Location};
use crate::json_value::encode_json;
use crate::parquet_fetch::{Fetched, ObjectChunks, Prefetch, fetch_chunks};
use crate::parquet_plan::Plan;
use crate::parquet_stream::StreamedChunks;
use crate::read_ahead::ReadAhead;
use crate::record::{Emit, Problems, ReadContext, check_record};

/// Bytes read from the end of an object for its footer: most metadata fits, so it costs one request.
pub(crate) const FOOTER_GUESS: u64 = 64 << 10;

/// Reads every row of a Parquet `file`, calling `emit(key, value, row, shard)` (rows count from 1 over the
/// file).
pub fn read_parquet(
    file: &InputFile,
    cx: &ReadContext<'_>,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), IngestError> {
    let (columns, handle, memory) = (cx.columns, cx.handle, cx.memory);
    match &file.location {
        Location::Local(p) => {
            let f = File::open(p).map_err(IngestError::io(format!("cannot open {}", p.display())))?;
            let Some(meta) = metadata(file, &f, problems) else { return Ok(()) };
            let Some(plan) = Plan::new(file, &meta, columns, memory, problems) else { return Ok(()) };
            let fetch = |rg: usize| -> Result<Fetched, IngestError> {
                let f = f.try_clone().map_err(IngestError::io(format!("cannot read {}", p.display())))?;
                Ok(Fetched::Local(ReadAhead::new(f, plan.ranges(&meta, rg))))
            };
            plan.read(file, fetch, cx.placement, problems, emit, progress)
        }
        Location::Object(o) => {
            if o.size < 12 {
                problems.add(&file.path, 0, format!("not a Parquet file: {} bytes", o.size));
                return Ok(());
            }
            let tail = o.size.saturating_sub(FOOTER_GUESS)..o.size;
            let chunks = vec![(tail.start, handle.block_on(o.fetch(tail)).map_err(read_error)?)];
            let footer = ObjectChunks { object: o.clone(), handle: handle.clone(), chunks };
            let Some(meta) = metadata(file, &footer, problems) else { return Ok(()) };
            let Some(plan) = Plan::new(file, &meta, columns, memory, problems) else { return Ok(()) };
            // Two row groups are held at once (the one decoding, the next one fetching).
            let hold = (memory / 8).max(8 << 20) as u64;
            let groups = meta.metadata().num_row_groups();
            let small = |rg: usize| plan.ranges(&meta, rg).iter().map(|r| r.end - r.start).sum::<u64>() <= hold;
            let start = |rg: usize| Prefetch(handle.spawn(fetch_chunks(o.clone(), plan.ranges(&meta, rg))));
            let mut next = (groups > 0 && small(0)).then(|| start(0));
            let fetch = |rg: usize| -> Result<Fetched, IngestError> {
                let fetched = if small(rg) {
                    let mut task = next.take().expect("a fetch is started before each small row group");
                    let chunks = handle
                        .block_on(&mut task.0)
                        .map_err(|e| IngestError::Invalid(e.to_string()))?
                        .map_err(read_error)?;
                    Fetched::Object(ObjectChunks { object: o.clone(), handle: handle.clone(), chunks })
                } else {
                    Fetched::Streamed(StreamedChunks::new(o.clone(), handle.clone(), plan.ranges(&meta, rg)))
                };
                if rg + 1 < groups && small(rg + 1) {
                    next = Some(start(rg + 1));
                }
                Ok(fetched)
            };
            plan.read(file, fetch, cx.placement, problems, emit, progress)
        }
    }
}

/// A failed fetch is the store's failure (a rerun resumes), not bad input.
pub(crate) fn read_error(e: std::io::Error) -> IngestError {
    IngestError::Io { context: "cannot read a Parquet input".into(), source: e }
}

/// Whether a decoding error is a failed read underneath (a local read, or a fetch outside the prefetched
/// chunks: its message names the object, which parquet's own decoding errors never do).
fn io_failure(e: &arrow_schema::ArrowError, file: &InputFile) -> bool {
    matches!(e, arrow_schema::ArrowError::IoError(..)) || e.to_string().contains(&*file.path.to_string_lossy())
}

pub(crate) fn metadata<T: ChunkReader>(
    file: &InputFile,
    reader: &T,
    problems: &mut Problems,
) -> Option<ArrowReaderMetadata> {
    match ArrowReaderMetadata::load(reader, ArrowReaderOptions::new()) {
        Ok(m) => Some(m),
        Err(e) => {
            problems.add(&file.path, 0, format!("not a readable Parquet file: {e}"));
            None
        }
    }
}

impl Plan {
    fn read(
        &self,
        file: &InputFile,
        mut fetch: impl FnMut(usize) -> Result<Fetched, IngestError> + Send,
        placement: &Placement,
        problems: &mut Problems,
        emit: &mut Emit<'_>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), IngestError> {
        let meta = &self.meta;
        let groups = meta.metadata().row_groups();
        let stored: u64 =
            groups.iter().map(|g| g.compressed_size().max(0) as u64).fold(0u64, u64::saturating_add).max(1);
        let (mut row, mut reported, mut group_start) = (0u64, 0u64, 0u64);
        let mut json = Vec::new();
        // Pages are decompressed and decoded, and the keys placed, on a thread of their own, a few batches
        // ahead of the records' checks here. Returning early drops the receiver,
        // which stops it.
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Decoded>(2);
            let decoder = scope.spawn(move || {
                for rg in 0..meta.metadata().num_row_groups() {
                    let reader = fetch(rg).and_then(|f| {
                        ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
                            .with_projection(self.mask.clone())
                            .with_row_groups(vec![rg])
                            .with_batch_size(self.batch_rows(meta, rg))
                            .build()
                            .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.path.display())))
                    });
                    let reader = match reader {
                        Ok(r) => r,
                        Err(e) => return drop(tx.send(Decoded::Error(e))),
                    };
                    for batch in reader {
                        let msg = match batch {
                            Ok(b) => {
                                let shards = self.place(&b, placement);
                                Decoded::Batch(b, shards)
                            }
                            Err(e) if io_failure(&e, file) => Decoded::Error(IngestError::Io {
                                context: format!("cannot read {}", file.path.display()),
                                source: std::io::Error::other(e.to_string()),
                            }),
                            Err(e) => Decoded::Unreadable(e.to_string()),
                        };
                        let last = matches!(msg, Decoded::Unreadable(_) | Decoded::Error(_));
                        if tx.send(msg).is_err() || last {
                            return;
                        }
                    }
                    if tx.send(Decoded::GroupDone).is_err() {
                        return;
                    }
                }
            });
            let mut rg = 0;
            for msg in rx {
                let (batch, shards) = match msg {
                    Decoded::Batch(b, shards) => (b, shards),
                    Decoded::Error(e) => return Err(e),
                    Decoded::Unreadable(e) => {
                        problems.add_row(&file.path, row + 1, format!("unreadable (row group {}): {e}", rg + 1));
                        return Ok(());
                    }
                    Decoded::GroupDone => {
                        // Progress in stored bytes: each row group's share of the file, the last one the rest.
                        let done = if rg + 1 == groups.len() {
                            file.size
                        } else {
                            let so_far = groups[..=rg]
                                .iter()
                                .map(|g| g.compressed_size().max(0) as u64)
                                .fold(0u64, u64::saturating_add);
                            (file.size as u128 * so_far as u128 / stored as u128).min(file.size as u128) as u64
                        };
                        progress(done.saturating_sub(reported));
                        reported = done.max(reported);
                        rg += 1;
                        group_start = row;
                        continue;
                    }
                };
                let at = |row: u64| format!("row group {}, its row {}", rg + 1, row - group_start);
                let col = |name: &str| batch.column(batch.schema().index_of(name).expect("projected"));
                let keys = col(&self.key);
                let keys = ByteColumn::new(keys).expect("type checked");
                let values = if self.json {
                    if let Err(e) = encode_json(&batch, &self.value, &mut json) {
                        problems.add_row(&file.path, row + 1, format!("cannot write --value-columns as JSON: {e}"));
                        return Ok(());
                    }
                    None
                } else {
                    Some(ByteColumn::new(col(&self.value[0])).expect("type checked"))
                };
                let mut lines = json.split(|&b| b == b'\n');
                let deleted = self.deleted.as_deref().map(|d| col(d).as_boolean().clone());
                for (i, &shard) in shards.iter().enumerate() {
                    row += 1;
                    if let Some(d) = &deleted
                        && d.is_valid(i)
                        && d.value(i)
                    {
                        let _ = lines.next();
                        match keys.get(i) {
                            None => problems.add_row(
                                &file.path,
                                row,
                                format!("null key ({}; column {:?})", at(row), self.key),
                            ),
                            Some(k) => match check_record(k, b"") {
                                Ok(()) => emit(k, None, row, Some(shard)),
                                Err(why) => problems.add_row(&file.path, row, format!("{why} ({})", at(row))),
                            },
                        }
                        if problems.full() {
                            return Ok(());
                        }
                        continue;
                    }
                    let value = match &values {
                        Some(v) => v.get(i),
                        None => lines.next(),
                    };
                    match (keys.get(i), value) {
                        (None, _) => {
                            problems.add_row(&file.path, row, format!("null key ({}; column {:?})", at(row), self.key))
                        }
                        (_, None) => problems.add_row(
                            &file.path,
                            row,
                            format!("null value ({}; column {:?})", at(row), self.value[0]),
                        ),
                        (Some(k), Some(v)) => match check_record(k, v) {
                            Ok(()) => emit(k, Some(v), row, Some(shard)),
                            Err(why) => problems.add_row(&file.path, row, format!("{why} ({})", at(row))),
                        },
                    }
                    if problems.full() {
                        return Ok(());
                    }
                }
            }
            // The channel closed: the decoder is done, or it panicked, whose message goes on to the caller (which
            // reports it as this file's problem) instead of the scope's "a scoped thread panicked".
            if let Err(panic) = decoder.join() {
                std::panic::resume_unwind(panic);
            }
            // A file without row groups (Spark's empty partitions) is read all the same.
            progress(file.size.saturating_sub(reported));
            Ok(())
        })
    }
}

/// What the decoding thread hands over.
enum Decoded {
    /// A batch and its keys' shards (a null key, which is never emitted, placed as the empty key).
    Batch(RecordBatch, Vec<u32>),
    /// The current row group is done.
    GroupDone,
    /// A page could not be decoded: the file's problem.
    Unreadable(String),
    Error(IngestError),
}
