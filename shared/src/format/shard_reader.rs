//! Indexing a shard: [`ShardMeta`] answers "which block could hold this key, and which bytes is it" with no
//! further I/O, and, from the blocks' key bloom filters, "is the key surely absent" (a miss then costs no
//! block read). Format 3 shards are indexed in pieces (piece.rs), one [`ShardMeta`] per piece; format 2
//! shards by one suffix range read (its length is in the manifest) of the footer and the filters. The page
//! indexes serve other Parquet readers; cairn does not use them.

use bytes::Bytes;
use object_store::path::Path;
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;

use crate::error::{Error, Result};
pub use crate::format::block::BlockRef;
use crate::format::block::ChunkRanges;
use crate::format::checksum::BLOCK_CHECKSUMS_KEY;

/// Everything needed to locate a key in one shard version.
#[derive(Debug)]
pub struct ShardMeta {
    pub path: Path,
    pub blocks: Vec<BlockRef>,
    min_keys: Vec<Box<[u8]>>,
    max_keys: Vec<Box<[u8]>>,
    /// Per block, its key bloom filter when the fetched suffix holds it (not for shards whose manifest
    /// `meta_bytes` covers only the footer, as written before the filters were read).
    blooms: Vec<Option<Sbbf>>,
    weight: usize,
}

impl ShardMeta {
    /// Indexes the blocks one format-3 piece lists (`first_key`: the manifest's first key for it).
    pub fn from_piece(path: Path, object_len: u64, data: &[u8], first_key: &[u8]) -> Result<ShardMeta> {
        let d = crate::format::piece::decode(data, object_len, first_key).map_err(|why| Error::corrupt(&path, why))?;
        let (blocks, min_keys, max_keys, blooms, weight) = (d.blocks, d.min_keys, d.max_keys, d.blooms, d.weight);
        Ok(ShardMeta { path, blocks, min_keys, max_keys, blooms, weight })
    }

    /// Indexes a shard from the last bytes of its object (`file_len` is the whole object's size).
    pub fn from_suffix(path: Path, file_len: u64, data: Bytes) -> Result<ShardMeta> {
        let corrupt = |why: String| Error::corrupt(&path, why);
        let base = file_len
            .checked_sub(data.len() as u64)
            .ok_or_else(|| corrupt(format!("{} bytes of metadata in a {file_len}-byte object", data.len())))?;
        let suffix = Suffix { base, data, file_len };
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Skip)
            .parse_and_finish(&suffix)
            .map_err(|e| corrupt(format!("footer: {e}")))?;
        let sums: Option<Vec<u32>> = meta
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == BLOCK_CHECKSUMS_KEY))
            .and_then(|e| e.value.as_deref())
            .map(|hex| {
                if !hex.is_ascii() || !hex.len().is_multiple_of(8) {
                    return Err(corrupt("block checksums are not 8-digit hex numbers".into()));
                }
                (0..hex.len() / 8)
                    .map(|i| {
                        u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16)
                            .map_err(|e| corrupt(format!("block checksums: {e}")))
                    })
                    .collect::<Result<Vec<u32>>>()
            })
            .transpose()?;
        if sums.as_ref().is_some_and(|s| s.len() != meta.num_row_groups()) {
            return Err(corrupt("block checksum count differs from the row group count".into()));
        }
        let n = meta.num_row_groups();
        let (mut blocks, mut min_keys, mut max_keys, mut blooms) =
            (Vec::with_capacity(n), Vec::new(), Vec::new(), Vec::new());
        let mut weight = 256 + n * 64;
        for (i, rg) in meta.row_groups().iter().enumerate() {
            if rg.num_columns() != 2 {
                return Err(corrupt(format!("row group {i} has {} columns, expected 2", rg.num_columns())));
            }
            if rg.num_rows() == 0 {
                continue;
            }
            let Some(Statistics::ByteArray(st)) = rg.column(0).statistics() else {
                return Err(corrupt(format!("row group {i}: no key statistics")));
            };
            let (Some(lo), Some(hi)) = (st.min_opt(), st.max_opt()) else {
                return Err(corrupt(format!("row group {i}: no key min/max")));
            };
            let (k, v) = (chunk_range(rg.column(0)), chunk_range(rg.column(1)));
            let (Some(k), Some(v)) = (k, v) else {
                return Err(corrupt(format!("row group {i}: a column chunk lies outside the object")));
            };
            let offset = k.0.min(v.0);
            let end = (k.0 + k.1).max(v.0 + v.1);
            // Blocks lie in order, apart, before the metadata: what read_shard and data_range assume.
            if end > base || blocks.last().is_some_and(|b: &BlockRef| b.offset + b.len as u64 > offset) {
                return Err(corrupt(format!(
                    "row group {i}: bytes {offset}..{end} overlap another block or the footer"
                )));
            }
            let len = u32::try_from(end - offset).map_err(|_| corrupt(format!("row group {i} over 4 GiB")))?;
            let rel = |(s, l): (u64, u64)| ((s - offset) as u32, l as u32);
            blocks.push(BlockRef {
                offset,
                len,
                rows: rg.num_rows() as u64,
                chunks: ChunkRanges { key: rel(k), value: rel(v) },
                checksum: sums.as_ref().map(|s| s[i]),
            });
            let bloom = match rg.column(0).bloom_filter_offset() {
                Some(at) if at >= 0 && at as u64 >= suffix.base => Sbbf::read_from_column_chunk(rg.column(0), &suffix)
                    .map_err(|e| corrupt(format!("row group {i}: key bloom filter: {e}")))?,
                _ => None,
            };
            // A filter without a block would panic on every check of its block's keys.
            if bloom.as_ref().is_some_and(|f| f.num_blocks() == 0) {
                return Err(corrupt(format!("row group {i}: an empty key bloom filter")));
            }
            weight += lo.len()
                + hi.len()
                + bloom.as_ref().map_or(0, |_| rg.column(0).bloom_filter_length().unwrap_or(0) as usize);
            blooms.push(bloom);
            min_keys.push(Box::from(lo.data()));
            max_keys.push(Box::from(hi.data()));
        }
        if min_keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("row groups are not sorted by key".into()));
        }
        Ok(ShardMeta { path, blocks, min_keys, max_keys, blooms, weight })
    }

    /// The only block that could hold `key`, without I/O (None: outside every block's key range, or ruled
    /// out by the block's bloom filter).
    pub fn probe(&self, key: &[u8]) -> Option<usize> {
        let b = self.min_keys.partition_point(|m| m.as_ref() <= key).checked_sub(1)?;
        if key > self.max_keys[b].as_ref() {
            return None;
        }
        self.blooms[b].as_ref().is_none_or(|f| f.check(key)).then_some(b)
    }

    /// How many blocks have a bloom filter in memory.
    pub fn bloom_filters(&self) -> usize {
        self.blooms.iter().flatten().count()
    }

    /// The byte range holding every block (what a hot shard reads in one request).
    pub fn data_range(&self) -> Option<std::ops::Range<u64>> {
        let first = self.blocks.first()?;
        let last = self.blocks.last()?;
        Some(first.offset..last.offset + last.len as u64)
    }

    pub fn weight(&self) -> usize {
        self.weight
    }
}

/// A column chunk's (start, length), None when its metadata is negative or overflows (parquet's own
/// `byte_range` asserts instead).
fn chunk_range(c: &parquet::file::metadata::ColumnChunkMetaData) -> Option<(u64, u64)> {
    let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
    let (start, len) = (u64::try_from(start).ok()?, u64::try_from(c.compressed_size()).ok()?);
    start.checked_add(len).map(|_| (start, len))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::shard_writer::{ShardFormat, ShardWriter};

    /// Metadata bytes not written by cairn (every single-byte change of a real shard's suffix, and lengths
    /// that do not fit) give an error or an index, never a panic or a hang.
    #[test]
    fn hostile_metadata_is_an_error_never_a_panic() {
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for i in 0..300 {
            w.append(&format!("key-{i:04}"), format!("value {i}").as_bytes()).unwrap();
        }
        let sum = w.finish().unwrap();
        let data = Bytes::from(buf);
        let suffix = data.slice(data.len() - sum.meta_bytes as usize..);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let len = data.len() as u64;
            assert!(ShardMeta::from_suffix("t".into(), 10, suffix.clone()).is_err(), "suffix longer than the object");
            let mut opened = 0;
            for at in 0..suffix.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = suffix.to_vec();
                    bad[at] ^= flip;
                    opened += ShardMeta::from_suffix("t".into(), len, Bytes::from(bad)).is_ok() as usize;
                }
            }
            let _ = tx.send(opened);
        });
        // A panic in the thread drops the sender: this fails then as it does on a hang.
        let opened = rx.recv_timeout(std::time::Duration::from_secs(120)).expect("a hostile suffix panicked or hung");
        println!("{opened} of {} corrupted suffixes still parsed", 3 * sum.meta_bytes);
    }

    #[test]
    fn bloom_filters_rule_out_absent_keys_and_a_footer_only_suffix_still_works() {
        let rows: Vec<String> = (0..5000).map(|i| format!("key-{i:06}")).collect();
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for k in &rows {
            w.append(k, b"value").unwrap();
        }
        let sum = w.finish().unwrap();
        let data = Bytes::from(buf);
        let footer_len = u32::from_le_bytes(data[data.len() - 8..data.len() - 4].try_into().unwrap()) as usize + 8;
        assert!(sum.meta_bytes as usize > footer_len, "the suffix takes in the filters");
        assert_eq!(
            sum.meta_checksum,
            crate::format::manifest::checksum_of(&data[data.len() - sum.meta_bytes as usize..])
        );
        // Absent keys, nearly all inside a block's key range (key-000000x sorts between key-000000 and -000001).
        let absent: Vec<String> = rows[..rows.len() - 1].iter().map(|k| format!("{k}x")).collect();
        let open =
            |suffix: usize| ShardMeta::from_suffix("t".into(), data.len() as u64, data.slice(data.len() - suffix..));

        let meta = open(sum.meta_bytes as usize).unwrap();
        assert_eq!(meta.bloom_filters(), meta.blocks.len());
        assert!(rows.iter().all(|k| meta.probe(k.as_bytes()).is_some()), "no false negatives");
        let passed = absent.iter().filter(|k| meta.probe(k.as_bytes()).is_some()).count();
        assert!(passed <= absent.len() / 50, "{passed} of {} absent keys passed the filters", absent.len());

        // What manifests written before the filters were read name: the footer alone. Still a valid index.
        let old = open(footer_len).unwrap();
        assert_eq!(old.bloom_filters(), 0);
        assert_eq!(old.blocks.len(), meta.blocks.len());
        let inside = absent.iter().filter(|k| old.probe(k.as_bytes()).is_some()).count();
        assert!(inside >= absent.len() - meta.blocks.len(), "without filters only gaps between blocks rule keys out");
    }
}
