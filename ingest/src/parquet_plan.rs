//! Which columns of a Parquet input are read, how they are batched, and where a batch's keys go: the plan a
//! reader (parquet_input.rs) follows for one file, and the sizing pass (sizing.rs) checks a file against.

use std::ops::Range;

use arrow_array::RecordBatch;
use arrow_schema::DataType;
use cairn_shared::format::ring::Placement;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderMetadata;

use crate::byte_column::{ByteColumn, readable};
use crate::input::InputFile;
use crate::record::{Columns, Problems, ValueSpec};

/// Rows per decoded batch, at most; fewer when rows are large (see [`Plan::batch_rows`]).
pub(crate) const BATCH_ROWS: usize = 8192;
/// Decoded bytes a batch aims at.
pub(crate) const BATCH_BYTES: u64 = 16 << 20;

/// Which columns to read and where they land in each projected batch.
pub(crate) struct Plan {
    pub(crate) meta: ArrowReaderMetadata,
    pub(crate) mask: ProjectionMask,
    /// Top-level fields read, in file order.
    pub(crate) roots: Vec<usize>,
    pub(crate) key: String,
    pub(crate) value: Vec<String>,
    /// The boolean column whose true rows are deletions (`--deleted-column`).
    pub(crate) deleted: Option<String>,
    pub(crate) json: bool,
    /// Decoded bytes a batch aims at: [`BATCH_BYTES`], less under a small memory budget (a few batches are
    /// in flight between the decoding thread and the reader).
    pub(crate) batch_bytes: u64,
}

impl Plan {
    pub(crate) fn new(
        file: &InputFile,
        meta: &ArrowReaderMetadata,
        columns: &Columns,
        memory: usize,
        problems: &mut Problems,
    ) -> Option<Plan> {
        let schema = meta.schema();
        let names = || schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        let mut find = |name: &str, what: &str, ok: &dyn Fn(&DataType) -> bool, want: &str| {
            let Ok(i) = schema.index_of(name) else {
                problems.add(&file.path, 0, format!("no {what} column {name:?} (columns: {})", names()));
                return None;
            };
            let dt = schema.field(i).data_type();
            if !ok(dt) {
                problems.add(&file.path, 0, format!("{what} column {name:?} is {dt}, expected {want}"));
                return None;
            }
            Some(i)
        };
        let strings = "a string (Utf8, LargeUtf8, Utf8View or a dictionary of them)";
        let bytes = "a string or binary column (Utf8, LargeUtf8, Utf8View, Binary, LargeBinary, BinaryView, \
                     FixedSizeBinary or a dictionary of them); use --value-columns to store other types as JSON";
        let key = find(&columns.key, "key", &|dt| readable(dt, false), strings);
        let (value, json) = match &columns.value {
            ValueSpec::Column(v) => (vec![find(v, "value", &|dt| readable(dt, true), bytes)], false),
            ValueSpec::Json(vs) => (vs.iter().map(|v| find(v, "value", &|_| true, "")).collect(), true),
        };
        let deleted = columns.deleted.as_ref().map(|d| find(d, "deleted", &|dt| *dt == DataType::Boolean, "Boolean"));
        let key = key?;
        let value: Vec<usize> = value.into_iter().collect::<Option<_>>()?;
        let deleted = deleted.map(|d| d.ok_or(())).transpose().ok()?;
        let mut roots: Vec<usize> = std::iter::once(key).chain(value.iter().copied()).chain(deleted).collect();
        roots.sort_unstable();
        roots.dedup();
        // The footer's offsets are the writer's word: check them against the file before anything reads them.
        let descr = meta.parquet_schema();
        for (rg, group) in meta.metadata().row_groups().iter().enumerate() {
            for c in (0..descr.num_columns()).filter(|&c| roots.contains(&descr.get_column_root_idx(c))) {
                let col = group.column(c);
                let start = col.dictionary_page_offset().unwrap_or(col.data_page_offset());
                let len = col.compressed_size();
                if start < 0 || len < 0 || (start as u64).saturating_add(len as u64) > file.size {
                    problems.add(
                        &file.path,
                        0,
                        format!(
                            "damaged Parquet metadata: row group {}, column {:?} claims bytes {start}..+{len} of a \
                             {}-byte file",
                            rg + 1,
                            descr.column(c).path().string(),
                            file.size
                        ),
                    );
                    return None;
                }
            }
        }
        Some(Plan {
            meta: meta.clone(),
            mask: ProjectionMask::roots(meta.parquet_schema(), roots.iter().copied()),
            roots,
            key: columns.key.clone(),
            value: value.iter().map(|&i| schema.field(i).name().clone()).collect(),
            deleted: columns.deleted.clone(),
            json,
            batch_bytes: BATCH_BYTES.min(memory as u64 / 16).max(1 << 20),
        })
    }

    /// Rows per batch for row group `rg`: about [`BATCH_BYTES`] of decoded projected columns.
    pub(crate) fn batch_rows(&self, meta: &ArrowReaderMetadata, rg: usize) -> usize {
        let descr = meta.parquet_schema();
        let group = meta.metadata().row_group(rg);
        let bytes: u64 = (0..descr.num_columns())
            .filter(|&c| self.roots.contains(&descr.get_column_root_idx(c)))
            .map(|c| group.column(c).uncompressed_size().max(0) as u64)
            .sum();
        let per_row = bytes / (group.num_rows().max(1) as u64);
        (self.batch_bytes / per_row.max(1)).clamp(1, BATCH_ROWS as u64) as usize
    }

    /// The shard of each key of `batch`.
    pub(crate) fn place(&self, batch: &RecordBatch, placement: &Placement) -> Vec<u32> {
        let keys = batch.column(batch.schema().index_of(&self.key).expect("projected"));
        let keys = ByteColumn::new(keys).expect("type checked");
        let mut shards = Vec::with_capacity(batch.num_rows());
        placement.shards_of((0..batch.num_rows()).map(|i| keys.get(i).unwrap_or_default()), &mut shards);
        shards
    }

    /// Byte ranges of row group `rg`'s projected column chunks.
    pub(crate) fn ranges(&self, meta: &ArrowReaderMetadata, rg: usize) -> Vec<Range<u64>> {
        let descr = meta.parquet_schema();
        let group = meta.metadata().row_group(rg);
        (0..descr.num_columns())
            .filter(|&c| self.roots.contains(&descr.get_column_root_idx(c)))
            .map(|c| {
                let (start, len) = group.column(c).byte_range();
                start..start + len
            })
            .collect()
    }
}
