//! Writes one shard: a Parquet file of `(key: Utf8, value: Binary)` rows sorted by key, laid out for point
//! lookups (docs/FORMAT.md says why): rows go in *blocks*, each a row group of at most 128 rows or ~16 KiB
//! holding one uncompressed PLAIN page per column, so a block's key and value pages are adjacent and one
//! range GET answers a lookup. No dictionary; statistics (footer and page index) on the key only. Every
//! block's key range, byte range, checksum and key bloom filter go into index pieces of ≤ 8 KiB written
//! between the blocks (piece.rs), so a reader opens the shard for one key by reading one piece, however
//! large the shard. Any Parquet reader (DuckDB, pyarrow) opens it unchanged: it skips the pieces.
//! [`ShardFormat::partitioned`] off writes format 2 instead (no pieces; Parquet bloom filters before the
//! footer, read with it in one suffix GET), kept so its reader stays tested.

use std::io::Write;
use std::sync::{Arc, LazyLock};

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{BloomFilterPosition, EnabledStatistics, WriterProperties, WriterVersion};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::format::block::BlockRef;
use crate::format::block::ChunkRanges;
use crate::format::checksum::{BLOCK_CHECKSUMS_KEY, block_checksum};
use crate::format::key_filter::{KeyFilter, key_hash};
use crate::format::manifest::FilterAt;
use crate::format::piece::{
    BlockEntry, INLINE_PIECES, PIECE_BYTES, PieceBuilder, PieceRef, RootRef, encode_entry, encode_root,
};

pub const KEY_COLUMN: &str = "key";
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
    /// Rows per block at most: a hit decodes one block.
    pub block_rows: usize,
    /// A block closes once its keys and values reach this many bytes (large values make short blocks, so a
    /// lookup still reads ~16 KiB).
    pub block_bytes: usize,
    /// Bloom filter false-positive probability for the key column.
    pub bloom_fpp: f64,
    /// Format 3: the block index in pieces inside the object. Off: format 2.
    pub partitioned: bool,
    /// Largest index piece, in bytes.
    pub piece_bytes: usize,
    /// A delta layer's shard: a key filter of every key goes into the object (key_filter.rs).
    pub key_filter: bool,
}

impl Default for ShardFormat {
    fn default() -> Self {
        ShardFormat {
            block_rows: 128,
            block_bytes: 16 << 10,
            bloom_fpp: 0.01,
            partitioned: true,
            piece_bytes: PIECE_BYTES,
            key_filter: false,
        }
    }
}

impl ShardFormat {
    /// The manifest format these settings write.
    pub fn version(&self) -> u32 {
        if self.partitioned { crate::format::manifest::FORMAT_VERSION } else { 2 }
    }

    pub fn writer_properties(&self, metadata: Vec<KeyValue>) -> WriterProperties {
        let key = ColumnPath::from(KEY_COLUMN);
        let ndv = self.block_rows as u64;
        WriterProperties::builder()
            .set_writer_version(WriterVersion::PARQUET_1_0)
            .set_created_by(format!("cairn {}", env!("CARGO_PKG_VERSION")))
            .set_compression(Compression::UNCOMPRESSED)
            .set_dictionary_enabled(false)
            .set_statistics_enabled(EnabledStatistics::None)
            .set_column_statistics_enabled(key.clone(), EnabledStatistics::Page)
            .set_write_page_header_statistics(false)
            .set_data_page_row_count_limit(self.block_rows)
            .set_write_batch_size(self.block_rows)
            // Above any block's size: a block is one page per column (the writer closes blocks by bytes).
            .set_data_page_size_limit(64 << 20)
            .set_max_row_group_row_count(Some(self.block_rows))
            // Format 3 keeps each block's filter in its index piece; Parquet's copy would only double it.
            .set_column_bloom_filter_enabled(key.clone(), !self.partitioned)
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
    /// `xxh3-64:<hex>` of the last `meta_bytes` bytes (the footer, its length and the magic).
    pub meta_checksum: String,
    pub min_key: Option<String>,
    pub max_key: Option<String>,
    /// Format 3: where each index piece lies, when there are at most [`INLINE_PIECES`] (empty for format 2,
    /// for a shard without rows, and when `root` lists them).
    pub pieces: Vec<PieceRef>,
    /// Format 3: the root listing the pieces, when there are more.
    pub root: Option<RootRef>,
    /// Where the key filter lies, when the format asks for one and the shard has rows.
    pub filter: Option<FilterAt>,
}

impl ShardSummary {
    /// The manifest entry of this shard, stored at `path` with whole-object checksum `checksum`.
    pub fn entry(self, shard: u32, path: String, checksum: String) -> crate::format::manifest::ShardEntry {
        crate::format::manifest::ShardEntry {
            shard,
            path,
            rows: self.rows,
            bytes: self.bytes,
            meta_bytes: self.meta_bytes,
            meta_checksum: self.meta_checksum,
            min_key: self.min_key,
            max_key: self.max_key,
            checksum,
            pieces: self.pieces,
            root: self.root,
            filter: self.filter,
            tombstones: 0,
        }
    }
}

/// What the writer keeps of the block being written, for its index entry.
struct OpenBlock {
    first_key: String,
    bloom: Sbbf,
}

/// Passes bytes through to the sink and keeps those of the block being written, so its checksum can be
/// computed once parquet has flushed it.
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
    pending_bytes: usize,
    format: ShardFormat,
    rows: u64,
    min_key: Option<String>,
    last_key: String,
    block: Option<OpenBlock>,
    piece: PieceBuilder,
    pieces: Vec<PieceRef>,
    /// With a key filter: every key's hash, for the filter built at the end.
    hashes: Vec<u64>,
}

impl<W: Write + Send> ShardWriter<W> {
    /// `metadata` lands in the Parquet footer's key-value metadata.
    pub fn new(out: W, format: &ShardFormat, metadata: Vec<KeyValue>) -> Result<Self> {
        let props = format.writer_properties(metadata);
        let tee = Tee { inner: out, pending: Vec::new(), pending_start: 0 };
        let writer = ArrowWriter::try_new(tee, SCHEMA.clone(), Some(props))?;
        Ok(ShardWriter {
            writer,
            checksums: Vec::new(),
            row_groups_done: 0,
            keys: StringBuilder::with_capacity(format.block_rows, format.block_bytes / 2),
            values: BinaryBuilder::with_capacity(format.block_rows, format.block_bytes),
            pending: 0,
            pending_bytes: 0,
            format: format.clone(),
            rows: 0,
            min_key: None,
            last_key: String::new(),
            block: None,
            piece: PieceBuilder::default(),
            pieces: Vec::new(),
            hashes: Vec::new(),
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
        if self.format.partitioned {
            let block = match &mut self.block {
                Some(b) => b,
                None => {
                    let bloom = Sbbf::new_with_ndv_fpp(self.format.block_rows as u64, self.format.bloom_fpp)?;
                    self.block.insert(OpenBlock { first_key: key.to_string(), bloom })
                }
            };
            block.bloom.insert(key.as_bytes());
        }
        if self.format.key_filter {
            self.hashes.push(key_hash(key.as_bytes()));
        }
        self.keys.append_value(key);
        self.values.append_value(value);
        self.pending += 1;
        self.pending_bytes += key.len() + value.len() + 8;
        self.rows += 1;
        if self.pending == self.format.block_rows || self.pending_bytes >= self.format.block_bytes {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Writes the pending rows as one row group.
    fn flush_block(&mut self) -> Result<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let cols: Vec<ArrayRef> = vec![Arc::new(self.keys.finish()), Arc::new(self.values.finish())];
        self.writer.write(&RecordBatch::try_new(SCHEMA.clone(), cols)?)?;
        self.writer.flush()?;
        self.pending = 0;
        self.pending_bytes = 0;
        self.checksum_flushed()
    }

    /// Checksums the blocks parquet has flushed since the last call, then forgets their bytes.
    fn checksum_flushed(&mut self) -> Result<()> {
        self.writer.sync()?;
        while self.row_groups_done < self.writer.flushed_row_groups().len() {
            let ranges: Vec<(u64, u64)> = self.writer.flushed_row_groups()[self.row_groups_done]
                .columns()
                .iter()
                .map(|c| c.byte_range())
                .collect();
            let tee = self.writer.inner_mut();
            let start = ranges.iter().map(|r| r.0).min().unwrap_or(tee.pending_start);
            let end = ranges.iter().map(|r| r.0 + r.1).max().unwrap_or(start);
            if start < tee.pending_start || ranges.windows(2).any(|w| w[0].0 + w[0].1 != w[1].0) {
                return Err(Error::Config("writing shard: a block's column chunks are not contiguous".into()));
            }
            let lo = (start - tee.pending_start) as usize;
            let checksum = block_checksum(&tee.pending[lo..(end - tee.pending_start) as usize]);
            self.checksums.push(checksum);
            tee.pending.drain(..(end - tee.pending_start) as usize);
            tee.pending_start = end;
            let rows = self.writer.flushed_row_groups()[self.row_groups_done].num_rows() as u64;
            self.row_groups_done += 1;
            if self.format.partitioned {
                // One row group per flush_block: a second one here would have no index entry.
                let mut open = self.block.take().ok_or_else(|| {
                    Error::Config("writing shard: a block was flushed without its index entry".into())
                })?;
                open.bloom.fold_to_target_fpp(self.format.bloom_fpp);
                let key_len = ranges[0].1 as u32;
                let len = (end - start) as u32;
                let chunks = ChunkRanges { key: (0, key_len), value: (key_len, len - key_len) };
                let at = BlockRef { offset: start, len, rows, chunks, checksum: Some(checksum) };
                let entry = encode_entry(&BlockEntry {
                    at,
                    min_key: open.first_key.as_bytes(),
                    max_key: self.last_key.as_bytes(),
                    bloom: Some(&open.bloom),
                })
                .map_err(Error::Config)?;
                self.add_entry(&entry, &open.first_key)?;
            }
        }
        Ok(())
    }

    /// Adds a block's entry to the open piece, writing that piece out first when the entry would not fit.
    fn add_entry(&mut self, entry: &[u8], first_key: &str) -> Result<()> {
        if !self.piece.fits(entry, self.format.piece_bytes) {
            self.write_piece()?;
        }
        self.piece.push(entry, first_key);
        Ok(())
    }

    /// Writes the open piece into the object, between blocks: Parquet readers skip it.
    fn write_piece(&mut self) -> Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        let (bytes, key) = self.piece.take();
        let offset = self.writer.bytes_written() as u64;
        self.writer.write_all(&bytes)?;
        self.pieces.push(PieceRef { key, offset, len: bytes.len() as u32, checksum: block_checksum(&bytes) });
        Ok(())
    }

    /// Finishes the file (pass the sink as `&mut W` to keep it) and returns the shard's summary.
    pub fn finish(mut self) -> Result<ShardSummary> {
        self.flush_block()?;
        self.write_piece()?;
        let mut filter = None;
        if !self.hashes.is_empty() {
            let bytes = KeyFilter::build(&std::mem::take(&mut self.hashes)).to_bytes();
            let offset = self.writer.bytes_written() as u64;
            self.writer.write_all(&bytes)?;
            filter = Some(FilterAt { offset, len: bytes.len() as u32, checksum: block_checksum(&bytes) });
        }
        let mut root = None;
        if self.pieces.len() > INLINE_PIECES {
            let bytes = encode_root(&self.pieces);
            let offset = self.writer.bytes_written() as u64;
            self.writer.write_all(&bytes)?;
            let (len, checksum, pieces) = (bytes.len() as u32, block_checksum(&bytes), self.pieces.len() as u32);
            root = Some(RootRef { offset, len, checksum, pieces });
            self.pieces.clear();
        }
        let sums: String = self.checksums.iter().map(|c| format!("{c:08x}")).collect();
        self.writer.append_key_value_metadata(KeyValue::new(BLOCK_CHECKSUMS_KEY.to_string(), sums));
        let written = self.writer.finish()?;
        self.writer.sync()?;
        let bytes = self.writer.bytes_written() as u64;
        let tail = &self.writer.inner().pending;
        // finish() writes bloom filters and page indexes, then the footer: its length is in the last 8 bytes.
        // The metadata a reader fetches in its one suffix GET starts at the first key bloom filter, so a
        // shard's footer comes with its filters and a miss needs no block read.
        let footer_len = u32::from_le_bytes(tail[tail.len() - 8..tail.len() - 4].try_into().expect("4 bytes"));
        let first_bloom = written
            .row_groups()
            .iter()
            .filter_map(|rg| rg.column(0).bloom_filter_offset())
            .min()
            .and_then(|o| u64::try_from(o).ok());
        let meta_bytes = first_bloom.map_or(footer_len as u64 + 8, |o| bytes.saturating_sub(o));
        if meta_bytes > tail.len() as u64 {
            return Err(Error::Config(format!(
                "writing shard: its metadata ({meta_bytes} bytes) was flushed before it could be checksummed"
            )));
        }
        let meta_checksum = crate::format::manifest::checksum_of(&tail[tail.len() - meta_bytes as usize..]);
        let summary = ShardSummary {
            rows: self.rows,
            bytes,
            meta_bytes,
            meta_checksum,
            max_key: self.min_key.as_ref().map(|_| self.last_key.clone()),
            min_key: self.min_key,
            pieces: self.pieces,
            root,
            filter,
        };
        Ok(summary)
    }
}
