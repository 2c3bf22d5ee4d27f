//! Decoded rows, sorted by key: one block (a cold or warm lookup, binary search) or a whole shard (a hot
//! shard, decoded once, then found through a hash index in ~4 cache misses a lookup). Keys and values stay
//! slices of the fetched bytes.

use bytes::Bytes;

use crate::page::decode_chunk;

#[derive(Debug)]
pub struct Rows {
    data: Bytes,
    /// Where key i and value i start in `data` (each one's u32 length is the 4 bytes before it): together, so
    /// a hit touches one cache line for both.
    offs: Vec<(u32, u32)>,
    /// Open addressing over XXH3-64 of the key: slot = (hash >> 32) << 32 | (row + 1), 0 = empty. Empty for
    /// blocks, which binary-search their ≤128 rows.
    slots: Vec<u64>,
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
        let mut rows = Rows { data, offs, slots: Vec::new() };
        if let Some(i) = (1..rows.len()).find(|&i| rows.key(i - 1) >= rows.key(i)) {
            return Err(format!("keys out of order at row {i}"));
        }
        if search == Search::Hashed && !rows.is_empty() {
            let mask = (rows.len() * 3 / 2).next_power_of_two() - 1;
            let mut slots = vec![0u64; mask + 1];
            for i in 0..rows.len() {
                let h = xxhash_rust::xxh3::xxh3_64(rows.key(i));
                let mut pos = h as usize & mask;
                while slots[pos] != 0 {
                    pos = (pos + 1) & mask;
                }
                slots[pos] = (h & !0xffff_ffff) | (i as u64 + 1);
            }
            rows.slots = slots;
        }
        Ok(rows)
    }

    pub fn len(&self) -> usize {
        self.offs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offs.is_empty()
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        slice(&self.data, self.offs[i].0)
    }

    /// The value stored under `key`, sharing the decoded buffer.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let row = if self.slots.is_empty() { self.binary_search(key)? } else { self.hashed(key)? };
        let s = self.offs[row].1 as usize;
        let len = u32::from_le_bytes(self.data[s - 4..s].try_into().expect("4 bytes")) as usize;
        Some(self.data.slice(s..s + len))
    }

    fn binary_search(&self, key: &[u8]) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.key(mid).cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    #[inline]
    fn hashed(&self, key: &[u8]) -> Option<usize> {
        let mask = self.slots.len() - 1;
        let h = xxhash_rust::xxh3::xxh3_64(key);
        let tag = h & !0xffff_ffff;
        let mut pos = h as usize & mask;
        loop {
            let s = self.slots[pos];
            if s == 0 {
                return None;
            }
            if s & !0xffff_ffff == tag {
                let row = (s as u32 - 1) as usize;
                if self.key(row) == key {
                    return Some(row);
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Approximate heap footprint, for cache weighing.
    pub fn weight(&self) -> usize {
        self.data.len() + self.offs.len() * 8 + self.slots.len() * 8 + 128
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
