//! Decoded rows, sorted by key: one block (a cold or warm lookup, binary search over slices of the fetched
//! bytes) or a whole shard (a hot shard, decoded once into packed records and found through a hash index:
//! a hit is two dependent cache misses, the slot and its record).

use bytes::Bytes;

use crate::page::decode_chunk;

#[derive(Debug)]
pub struct Rows {
    data: Bytes,
    rows: usize,
    /// Where key i and value i start in `data` (each one's u32 length is the 4 bytes before it), for the
    /// binary search of a block. Dropped once a hash index is built.
    offs: Vec<(u32, u32)>,
    /// Open addressing over XXH3-64 of the key. Empty for blocks, which binary-search their ≤128 rows.
    slots: Vec<Slot>,
}

/// A hash index entry: 8 bytes, so the index of 1M keys is 16 MiB. A hot shard's `data` holds each row as
/// one record, `[key len][key][value len][value]`, so the key compare and the value's length share a cache
/// line (and a page): with key and value pages apart they were two misses, on 1 GiB of data two TLB misses.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(8))]
struct Slot {
    /// The high 32 bits of the key's hash: most probes of a wrong slot stop here.
    tag: u32,
    /// Where the record's key starts in `data`; 0 = empty (a key starts after its 4-byte length).
    key: u32,
}

/// Where one block's column chunks lie, relative to the start of the bytes holding the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRanges {
    pub key: (u32, u32),
    pub value: (u32, u32),
}

/// How a decoded `Rows` is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    Binary,
    Hashed,
}

impl Rows {
    /// Decodes blocks that lie in `data`: each is (offset in `data`, its chunk ranges, rows it must hold).
    pub fn decode(
        data: Bytes,
        blocks: impl IntoIterator<Item = (usize, ChunkRanges, u64)>,
        search: Search,
    ) -> Result<Rows, String> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (i, (at, c, rows)) in blocks.into_iter().enumerate() {
            let range = |(lo, len): (u32, u32)| at + lo as usize..at + lo as usize + len as usize;
            let nk = decode_chunk(&data, range(c.key), &mut keys).map_err(|e| format!("block {i} keys: {e}"))?;
            let nv = decode_chunk(&data, range(c.value), &mut values).map_err(|e| format!("block {i} values: {e}"))?;
            if nk as u64 != rows || nv as u64 != rows {
                return Err(format!("block {i} should hold {rows} rows, has {nk} keys and {nv} values"));
            }
        }
        let offs: Vec<(u32, u32)> = keys.into_iter().zip(values).collect();
        let mut rows = Rows { data, rows: offs.len(), offs, slots: Vec::new() };
        if let Some(i) = (1..rows.len()).find(|&i| rows.key(i - 1) >= rows.key(i)) {
            return Err(format!("keys out of order at row {i}"));
        }
        if search == Search::Hashed && !rows.is_empty() {
            let size: usize =
                rows.offs.iter().map(|&(k, v)| 8 + slice(&rows.data, k).len() + slice(&rows.data, v).len()).sum();
            u32::try_from(size).map_err(|_| format!("{size} bytes of rows: a hot shard holds at most 4 GiB"))?;
            let mask = (rows.len() * 3 / 2).next_power_of_two() - 1;
            let mut slots = vec![Slot::default(); mask + 1];
            let mut packed = Vec::with_capacity(size);
            for &(key, value) in &rows.offs {
                let (k, v) = (slice(&rows.data, key), slice(&rows.data, value));
                packed.extend_from_slice(&(k.len() as u32).to_le_bytes());
                let at = packed.len() as u32;
                packed.extend_from_slice(k);
                packed.extend_from_slice(&(v.len() as u32).to_le_bytes());
                packed.extend_from_slice(v);
                let h = xxhash_rust::xxh3::xxh3_64(k);
                let mut pos = h as usize & mask;
                while slots[pos].key != 0 {
                    pos = (pos + 1) & mask;
                }
                slots[pos] = Slot { tag: (h >> 32) as u32, key: at };
            }
            rows.data = Bytes::from(packed);
            rows.slots = slots;
            rows.offs = Vec::new();
        }
        Ok(rows)
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Key `i` in sort order (blocks only: a hashed `Rows` keeps no order).
    #[inline]
    fn key(&self, i: usize) -> &[u8] {
        slice(&self.data, self.offs[i].0)
    }

    /// The value stored under `key`, sharing the decoded buffer.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let at = if self.slots.is_empty() { self.binary_search(key)? } else { self.hashed(key)? };
        let s = at as usize;
        let len = u32::from_le_bytes(self.data[s - 4..s].try_into().expect("4 bytes")) as usize;
        Some(self.data.slice(s..s + len))
    }

    /// Where the value of `key` starts.
    fn binary_search(&self, key: &[u8]) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.offs[mid].1),
            }
        }
        None
    }

    /// Where the value of `key` starts.
    #[inline]
    fn hashed(&self, key: &[u8]) -> Option<u32> {
        let mask = self.slots.len() - 1;
        let h = xxhash_rust::xxh3::xxh3_64(key);
        let tag = (h >> 32) as u32;
        let mut pos = h as usize & mask;
        loop {
            let s = self.slots[pos];
            if s.key == 0 {
                return None;
            }
            if s.tag == tag && slice(&self.data, s.key) == key {
                return Some(s.key + key.len() as u32 + 4);
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Approximate heap footprint, for cache weighing.
    pub fn weight(&self) -> usize {
        self.data.len() + self.offs.len() * 8 + self.slots.len() * size_of::<Slot>() + 128
    }
}

#[inline]
fn slice(data: &[u8], start: u32) -> &[u8] {
    let s = start as usize;
    let len = u32::from_le_bytes(data[s - 4..s].try_into().expect("4 bytes")) as usize;
    &data[s..s + len]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard_reader::ShardMeta;
    use crate::shard_writer::{ShardFormat, ShardWriter};

    /// Writes rows through the real writer and decodes every block of the file as one `Rows`.
    fn decode_all(rows: &[(String, Vec<u8>)], search: Search) -> Rows {
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for (k, v) in rows {
            w.append(k, v).unwrap();
        }
        let sum = w.finish().unwrap();
        let data = Bytes::from(buf);
        let tail = data.slice(data.len() - sum.meta_bytes as usize..);
        let meta = ShardMeta::from_suffix("t".into(), data.len() as u64, tail).unwrap();
        Rows::decode(data, meta.blocks.iter().map(|b| (b.offset as usize, b.chunks, b.rows)), search).unwrap()
    }

    #[test]
    fn every_key_is_found_and_absent_keys_miss_both_ways() {
        let mut keys: Vec<String> = ["a", "ab", "abcdefgh", "abcdefgh0", "abcdefgh1", "abcdefgh10", "abcdefghz", "b"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..2000).map(|i| format!("abcdefgh-{i:05}")))
            .collect();
        keys.sort();
        let rows: Vec<(String, Vec<u8>)> = keys.iter().map(|k| (k.clone(), format!("v{k}").into_bytes())).collect();
        for search in [Search::Binary, Search::Hashed] {
            let decoded = decode_all(&rows, search);
            assert_eq!(decoded.len(), rows.len());
            for (k, v) in &rows {
                assert_eq!(decoded.get(k.as_bytes()).as_deref(), Some(v.as_slice()), "{k}");
            }
            for absent in ["", "0", "aa", "abc", "abcdefg", "abcdefgh2", "abcdefgh-2", "abcdefgh-99999", "c"] {
                assert_eq!(decoded.get(absent.as_bytes()), None, "{absent}");
            }
        }
    }

    #[test]
    fn big_values_make_short_blocks() {
        let rows: Vec<(String, Vec<u8>)> = (0..100).map(|i| (format!("k{i:03}"), vec![b'x'; 4000])).collect();
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for (k, v) in &rows {
            w.append(k, v).unwrap();
        }
        let sum = w.finish().unwrap();
        let tail = Bytes::from(buf[buf.len() - sum.meta_bytes as usize..].to_vec());
        let meta = ShardMeta::from_suffix("t".into(), buf.len() as u64, tail).unwrap();
        assert_eq!(meta.blocks.len(), 20, "a 16 KiB block closes at its 5th row of ~4 KB");
        assert!(meta.blocks.iter().all(|b| b.len < 20 << 10));
        assert_eq!(meta.probe(b"k050"), Some(10));
        assert_eq!(meta.probe(b"j"), None);
        assert_eq!(meta.probe(b"z"), None);
        assert_eq!(decode_all(&rows, Search::Hashed).get(b"k099").as_deref(), Some(&[b'x'; 4000][..]));
    }
}
