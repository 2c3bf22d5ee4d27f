//! Writes one shard: a Parquet file of `(key: Utf8, value: Binary)` rows sorted by key, laid out for point
//! lookups (see docs/FORMAT.md and shared/notes on why each setting): small uncompressed PLAIN pages, no
//! dictionary, page statistics and a bloom filter on the key only, bloom filters and page index at the end
//! so one suffix read opens the shard. Any Parquet reader (DuckDB, pyarrow) opens it unchanged.

use std::io::Write;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::page;

pub const KEY_COLUMN: &str = "key";
/// Footer key-value entry with every data page's checksum: hex u32 per page, in file order (row group, then
/// key pages, then value pages). Parquet-rs writes no page CRCs, so cairn keeps its own.
pub const PAGE_CHECKSUMS_KEY: &str = "cairn.page_checksums";
pub const VALUE_COLUMN: &str = "value";

pub static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(KEY_COLUMN, DataType::Utf8, false),
        Field::new(VALUE_COLUMN, DataType::Binary, false),
    ]))
});

/// Layout knobs; the defaults follow the measurements in shared/notes/parquet-point-lookups.md.
#[derive(Debug, Clone)]
pub struct ShardFormat {
    /// Rows per data page: a hit decodes one key page and one value page.
    pub page_rows: usize,
    /// Rows per row group: keeps pages per row group ≤ 256 (more is slow in readers).
    pub row_group_rows: usize,
    /// Bloom filter false-positive probability for the key column.
    pub bloom_fpp: f64,
}

impl Default for ShardFormat {
    fn default() -> Self {
        ShardFormat { page_rows: 128, row_group_rows: 32 * 1024, bloom_fpp: 0.01 }
    }
}

impl ShardFormat {
    pub fn writer_properties(&self, rows_hint: u64, metadata: Vec<KeyValue>) -> WriterProperties {
        let key = ColumnPath::from(KEY_COLUMN);
        let ndv = rows_hint.clamp(1, self.row_group_rows as u64);
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_created_by(format!("cairn {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(key.clone(), EnabledStatistics::Page)
            .set_write_page_header_statistics(false)
            .set_data_page_row_count_limit(self.page_rows)
            .set_write_batch_size(self.page_rows)
            .set_data_page_size_limit(1 << 20)
            .set_max_row_group_row_count(Some(self.row_group_rows))
            .set_column_bloom_filter_enabled(key.clone(), true)
            .set_column_bloom_filter_fpp(key.clone(), self.bloom_fpp)
            .set_column_bloom_filter_max_ndv(key, ndv)
            .set_bloom_filter_position(BloomFilterPosition::End)
            .set_sorting_columns(Some(vec![SortingColumn { column_idx: 0, descending: false, nulls_first: false }]))
            .set_key_value_metadata(Some(metadata))
            .build()
    }
}

/// What the manifest needs to know about a finished shard file.
#[derive(Debug, Clone)]
pub struct ShardSummary {
    pub rows: u64,
    pub bytes: u64,
    pub meta_bytes: u64,
    /// `xxh3-64:<hex>` of the last `meta_bytes` bytes (bloom filters, page indexes, footer).
    pub meta_checksum: String,
    pub min_key: Option<String>,
    pub max_key: Option<String>,
}

/// Passes bytes through to the sink and keeps those of the row group being written, so page checksums can
/// be computed once parquet has flushed it.
struct Tee<W> {
    inner: W,
    pending: Vec<u8>,
    /// File offset of `pending[0]`.
    pending_start: u64,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub struct ShardWriter<W: Write + Send> {
    writer: ArrowWriter<Tee<W>>,
    checksums: Vec<u32>,
    row_groups_done: usize,
    keys: StringBuilder,
    values: BinaryBuilder,
    pending: usize,
    batch_rows: usize,
    rows: u64,
    min_key: Option<String>,
    last_key: String,
}

impl<W: Write + Send> ShardWriter<W> {
    /// `rows_hint` sizes the bloom filter; `metadata` lands in the Parquet footer's key-value metadata.
    pub fn new(out: W, format: &ShardFormat, rows_hint: u64, metadata: Vec<KeyValue>) -> Result<Self> {
        let props = format.writer_properties(rows_hint, metadata);
        let tee = Tee { inner: out, pending: Vec::new(), pending_start: 0 };
        let writer = ArrowWriter::try_new(tee, SCHEMA.clone(), Some(props))?;
        Ok(ShardWriter {
            writer,
            checksums: Vec::new(),
            row_groups_done: 0,
            keys: StringBuilder::with_capacity(format.page_rows, format.page_rows * 40),
            values: BinaryBuilder::with_capacity(format.page_rows, format.page_rows * 100),
            pending: 0,
            batch_rows: format.page_rows,
            rows: 0,
            min_key: None,
            last_key: String::new(),
        })
    }

    /// Appends a row; keys must arrive strictly ascending (bytewise).
    pub fn append(&mut self, key: &str, value: &[u8]) -> Result<()> {
        if self.rows > 0 && key.as_bytes() <= self.last_key.as_bytes() {
            return Err(Error::Config(format!("shard rows out of order: {key:?} after {:?}", self.last_key)));
        }
        if self.min_key.is_none() {
            self.min_key = Some(key.to_string());
        }
        self.last_key.clear();
        self.last_key.push_str(key);
        self.keys.append_value(key);
        self.values.append_value(value);
        self.pending += 1;
        self.rows += 1;
        if self.pending == self.batch_rows {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn flush_batch(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())];
        self.writer.write(&RecordBatch::try_new(SCHEMA.clone(), cols)?)?;
        self.pending = 0;
        if self.writer.flushed_row_groups().len() > self.row_groups_done {
            self.checksum_flushed()?;
        }
        Ok(())
    }

    /// Checksums the pages of row groups parquet has flushed since the last call, then forgets their bytes.
    fn checksum_flushed(&mut self) -> Result<()> {
        self.writer.sync()?;
        while self.row_groups_done < self.writer.flushed_row_groups().len() {
            let ranges: Vec<(u64, u64)> = self.writer.flushed_row_groups()[self.row_groups_done]
                .columns()
                .iter()
                .map(|c| c.byte_range())
                .collect();
            let tee = self.writer.inner_mut();
            let mut end = tee.pending_start;
            for (start, len) in ranges {
                let lo = (start - tee.pending_start) as usize;
                let chunk = &tee.pending[lo..lo + len as usize];
                let mut pos = 0;
                while pos < chunk.len() {
                    let n =
                        page::page_len(&chunk[pos..]).map_err(|why| Error::Config(format!("writing shard: {why}")))?;
                    self.checksums.push(page::page_checksum(&chunk[pos..pos + n]));
                    pos += n;
                }
                end = end.max(start + len);
            }
            tee.pending.drain(..(end - tee.pending_start) as usize);
            tee.pending_start = end;
            self.row_groups_done += 1;
        }
        Ok(())
    }

    /// Finishes the file (pass the sink as `&mut W` to keep it) and returns the shard's summary.
    pub fn finish(mut self) -> Result<ShardSummary> {
        self.flush_batch()?;
        self.writer.flush()?;
        self.checksum_flushed()?;
        let sums: String = self.checksums.iter().map(|c| format!("{c:08x}")).collect();
        self.writer.append_key_value_metadata(KeyValue::new(PAGE_CHECKSUMS_KEY.to_string(), sums));
        let meta = self.writer.finish()?;
        self.writer.sync()?;
        let bytes = self.writer.bytes_written() as u64;
        let data_end = meta
            .row_groups()
            .iter()
            .flat_map(|rg| rg.columns())
            .map(|c| {
                let (start, len) = c.byte_range();
                start + len
            })
            .max()
            .unwrap_or(4); // "PAR1" magic
        let tail = &self.writer.inner().pending;
        let meta_bytes = bytes - data_end;
        let meta_checksum = crate::manifest::checksum_of(&tail[tail.len() - meta_bytes as usize..]);
        let summary = ShardSummary {
            rows: self.rows,
            bytes,
            meta_bytes,
            meta_checksum,
            max_key: self.min_key.as_ref().map(|_| self.last_key.clone()),
            min_key: self.min_key,
        };
        Ok(summary)
    }
}
