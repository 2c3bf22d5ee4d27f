//! Indexing a shard: one suffix range read (its length is in the manifest) yields footer, page indexes and
//! bloom filters; from them [`ShardMeta`] answers "which page could hold this key" with no further I/O,
//! and "definitely absent" straight from the bloom filter.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use object_store::path::Path;
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::page_index::offset_index::PageLocation;
use parquet::file::reader::{ChunkReader, Length};

use crate::error::{Error, Result};
use crate::shard_writer::PAGE_CHECKSUMS_KEY;

/// Where a page lives in the shard object.
#[derive(Debug, Clone, Copy)]
pub struct PageRef {
    pub offset: u64,
    pub len: u32,
    /// First row of the page within its row group.
    pub first_row: u64,
}

#[derive(Debug)]
pub struct RowGroupIndex {
    pub min_key: Box<[u8]>,
    pub max_key: Box<[u8]>,
    bloom: Option<Sbbf>,
    key_mins: Vec<Box<[u8]>>,
    key_maxs: Vec<Box<[u8]>>,
    pub key_pages: Vec<PageRef>,
    pub value_pages: Vec<PageRef>,
    /// Per-page checksums (empty for files without cairn's footer entry).
    pub key_sums: Vec<u32>,
    pub value_sums: Vec<u32>,
}

/// Everything needed to locate a key in one shard version.
#[derive(Debug)]
pub struct ShardMeta {
    /// Process-unique id, so page cache keys are small and never collide across versions.
    pub uid: u64,
    pub path: Path,
    pub row_groups: Vec<RowGroupIndex>,
    weight: usize,
}

/// Where a key could be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Definitely not in this shard (key range, bloom filter or page range says so).
    Absent,
    /// Only this key page of this row group can hold it.
    KeyPage { row_group: usize, page: usize },
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl ShardMeta {
    /// Indexes a shard from the last bytes of its object (`file_len` is the whole object's size).
    pub fn from_suffix(path: Path, file_len: u64, data: Bytes) -> Result<ShardMeta> {
        let corrupt = |why: String| Error::corrupt(&path, why);
        let suffix = Suffix { base: file_len - data.len() as u64, data, file_len };
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&suffix)
            .map_err(|e| corrupt(format!("footer: {e}")))?;
        let sums: Option<Vec<u32>> = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == PAGE_CHECKSUMS_KEY))
            .and_then(|e| e.value.as_deref())
            .map(|hex| {
                (0..hex.len() / 8)
                    .map(|i| {
                        u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16)
                            .map_err(|e| corrupt(format!("page checksums: {e}")))
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .transpose()?;
        let mut next_sum = 0usize;
        let mut take_sums = |n: usize| -> Result<Vec<u32>> {
            let Some(all) = &sums else { return Ok(Vec::new()) };
            let got =
                all.get(next_sum..next_sum + n).ok_or_else(|| corrupt("fewer page checksums than pages".into()))?;
            next_sum += n;
            Ok(got.to_vec())
        };
        let mut row_groups = Vec::with_capacity(meta.num_row_groups());
        let mut weight = 256;
        for (i, rg) in meta.row_groups().iter().enumerate() {
            if rg.num_columns() != 2 {
                return Err(corrupt(format!("row group {i} has {} columns, expected 2", rg.num_columns())));
            }
            let index = meta.page_index_for_row_group(i);
            let Some(ColumnIndexMetaData::BYTE_ARRAY(ci)) = index.column_index(0) else {
                return Err(corrupt(format!("row group {i}: no byte-array column index on the key")));
            };
            let (Some(kl), Some(vl)) = (index.page_locations(0), index.page_locations(1)) else {
                return Err(corrupt(format!("row group {i}: no offset index")));
            };
            let pages = |locs: &Vec<PageLocation>| -> Vec<PageRef> {
                locs.iter()
                    .map(|l| PageRef {
                        offset: l.offset as u64,
                        len: l.compressed_page_size as u32,
                        first_row: l.first_row_index as u64,
                    })
                    .collect()
            };
            let n = kl.len();
            let mut key_mins: Vec<Box<[u8]>> = Vec::with_capacity(n);
            let mut key_maxs: Vec<Box<[u8]>> = Vec::with_capacity(n);
            for p in 0..n {
                let (Some(lo), Some(hi)) = (ci.min_value(p), ci.max_value(p)) else {
                    return Err(corrupt(format!("row group {i} page {p}: no key statistics")));
                };
                weight += lo.len() + hi.len() + 64;
                key_mins.push(Box::from(lo));
                key_maxs.push(Box::from(hi));
            }
            let (key_sums, value_sums) = (take_sums(kl.len())?, take_sums(vl.len())?);
            if n == 0 {
                continue;
            }
            let bloom = Sbbf::read_from_column_chunk(rg.column(0), &suffix)
                .map_err(|e| corrupt(format!("bloom filter: {e}")))?;
            weight += rg.column(0).bloom_filter_length().unwrap_or(0) as usize + (kl.len() + vl.len()) * 28;
            row_groups.push(RowGroupIndex {
                min_key: key_mins[0].clone(),
                max_key: key_maxs[n - 1].clone(),
                bloom,
                key_mins,
                key_maxs,
                key_pages: pages(kl),
                value_pages: pages(vl),
                key_sums,
                value_sums,
            });
        }
        Ok(ShardMeta { uid: NEXT_UID.fetch_add(1, Ordering::Relaxed), path, row_groups, weight })
    }

    /// Which key page could hold `key`, without I/O.
    pub fn probe(&self, key: &[u8]) -> Probe {
        let rgi = self.row_groups.partition_point(|rg| rg.min_key.as_ref() <= key);
        let Some(rgi) = rgi.checked_sub(1) else { return Probe::Absent };
        let rg = &self.row_groups[rgi];
        if key > rg.max_key.as_ref() {
            return Probe::Absent;
        }
        if let Some(bloom) = &rg.bloom
            && !bloom.check(key)
        {
            return Probe::Absent;
        }
        let p = rg.key_mins.partition_point(|m| m.as_ref() <= key) - 1; // ≥1 since rg.min_key <= key
        if key > rg.key_maxs[p].as_ref() {
            return Probe::Absent;
        }
        Probe::KeyPage { row_group: rgi, page: p }
    }

    /// The value page holding row `row` of a row group, and the row's index within it.
    pub fn value_page_for(&self, row_group: usize, row: u64) -> Option<(usize, usize)> {
        let pages = &self.row_groups[row_group].value_pages;
        let p = pages.partition_point(|pg| pg.first_row <= row).checked_sub(1)?;
        Some((p, (row - pages[p].first_row) as usize))
    }

    pub fn weight(&self) -> usize {
        self.weight
    }
}

/// A `ChunkReader` over the tail of an object: offsets are absolute file offsets.
struct Suffix {
    base: u64,
    data: Bytes,
    file_len: u64,
}

impl Suffix {
    fn slice(&self, start: u64, len: usize) -> parquet::errors::Result<Bytes> {
        let lo = start.checked_sub(self.base).ok_or_else(|| {
            ParquetError::General(format!("offset {start} precedes the fetched metadata (starts at {})", self.base))
        })? as usize;
        let hi = lo
            .checked_add(len)
            .filter(|&h| h <= self.data.len())
            .ok_or(ParquetError::EOF("past end of shard".into()))?;
        Ok(self.data.slice(lo..hi))
    }
}

impl Length for Suffix {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Suffix {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let len = (self.file_len - start.min(self.file_len)) as usize;
        use bytes::Buf;
        Ok(self.slice(start, len)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}
