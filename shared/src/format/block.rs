//! Decoded rows, sorted by key: one block (a cold or warm lookup, binary search over slices of the fetched
//! bytes) or a whole shard (a hot shard, decoded once into packed records and found through a hash index:
//! a hit is two dependent cache misses, the slot and its record).

use std::sync::Arc;

use bytes::Bytes;

use crate::caches::arena::{Arena, HotBuf};
use crate::format::page::decode_chunk;

#[derive(Debug)]
pub struct Rows {
    data: Bytes,
    rows: usize,
    /// Where key i and value i start in `data` (each one's u32 length is the 4 bytes before it), for the
    /// binary search of a block. Dropped once a hash index is built.
    offs: Vec<(u32, u32)>,
    /// Slots of the hash index at the start of `data`; 0 for blocks, which binary-search their ≤128 rows.
    slots: usize,
}

// A hot shard's `data` is its hash index (open addressing over XXH3-64 of the key), then each row as one
// record, `[key len][key][value len][value]`, so the key compare and the value's length share a cache line
// (and a page): with key and value pages apart they were two misses, on 1 GiB of data two TLB misses.
// A slot is 8 bytes (the index of 1M keys is 16 MiB), little-endian: the high 32 bits of the key's hash (most
// probes of a wrong slot stop there) over where the record's key starts in `data` (0 = empty: records
// start after the index).
const SLOT: usize = 8;

/// Where one block's column chunks lie, relative to the start of the bytes holding the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRanges {
    pub key: (u32, u32),
    pub value: (u32, u32),
}

/// Where a block lives in the shard object.
#[derive(Debug, Clone, Copy)]
pub struct BlockRef {
    pub offset: u64,
    pub len: u32,
    pub rows: u64,
    pub chunks: ChunkRanges,
    pub checksum: Option<u32>,
}

/// How a decoded `Rows` is searched.
#[derive(Debug, Clone, Copy)]
pub enum Search<'a> {
    Binary,
    /// Through a hash index, in the arena's memory when it has room.
    Hashed(Option<&'a Arc<Arena>>),
}

impl Rows {
    /// Decodes blocks that lie in `data`: each is (offset in `data`, its chunk ranges, rows it must hold).
    pub fn decode(
        data: Bytes,
        blocks: impl IntoIterator<Item = (usize, ChunkRanges, u64)>,
        search: Search<'_>,
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
        let mut rows = Rows { data, rows: offs.len(), offs, slots: 0 };
        if let Some(i) = (1..rows.len()).find(|&i| rows.key(i - 1) >= rows.key(i)) {
            return Err(format!("keys out of order at row {i}"));
        }
        if let Search::Hashed(arena) = search
            && !rows.is_empty()
        {
            rows.index(arena)?;
        }
        Ok(rows)
    }

    /// Rewrites the rows as a hash index followed by packed records (see [`SLOT`]).
    fn index(&mut self, arena: Option<&Arc<Arena>>) -> Result<(), String> {
        // Strictly more slots than rows (at least one stays empty), so a probe always ends; 1 row once got a
        // single, full slot and a miss spun forever.
        let slots = (self.len() + self.len() / 2 + 1).next_power_of_two();
        let records: usize =
            self.offs.iter().map(|&(k, v)| 8 + slice(&self.data, k).len() + slice(&self.data, v).len()).sum();
        let size = slots * SLOT + records;
        u32::try_from(size).map_err(|_| format!("{size} bytes of rows: a hot shard holds at most 4 GiB"))?;
        let mut buf = HotBuf::zeroed(arena, size);
        let mut at = slots * SLOT;
        for &(key, value) in &self.offs {
            let (k, v) = (slice(&self.data, key), slice(&self.data, value));
            let key_at = (at + 4) as u64;
            for part in [k, v] {
                buf[at..at + 4].copy_from_slice(&(part.len() as u32).to_le_bytes());
                buf[at + 4..at + 4 + part.len()].copy_from_slice(part);
                at += 4 + part.len();
            }
            let h = xxhash_rust::xxh3::xxh3_64(k);
            let mut pos = h as usize & (slots - 1);
            while read_slot(&buf, pos) != 0 {
                pos = (pos + 1) & (slots - 1);
            }
            buf[pos * SLOT..(pos + 1) * SLOT].copy_from_slice(&((h >> 32) << 32 | key_at).to_le_bytes());
        }
        self.data = buf.freeze();
        self.slots = slots;
        self.offs = Vec::new();
        Ok(())
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
        let at = if self.slots == 0 { self.binary_search(key)? } else { self.hashed(key)? };
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
        let mask = self.slots - 1;
        let h = xxhash_rust::xxh3::xxh3_64(key);
        let mut pos = h as usize & mask;
        // Bounded by the table even if it were full.
        for _ in 0..self.slots {
            let s = read_slot(&self.data, pos);
            let at = s as u32;
            if at == 0 {
                return None;
            }
            if (s >> 32) == (h >> 32) && slice(&self.data, at) == key {
                return Some(at + key.len() as u32 + 4);
            }
            pos = (pos + 1) & mask;
        }
        None
    }

    /// Approximate heap footprint, for cache weighing.
    pub fn weight(&self) -> usize {
        self.data.len() + self.offs.len() * 8 + 128
    }
}

#[inline]
fn read_slot(data: &[u8], pos: usize) -> u64 {
    u64::from_le_bytes(data[pos * SLOT..(pos + 1) * SLOT].try_into().expect("8 bytes"))
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
    use crate::format::shard_reader::ShardMeta;
    use crate::format::shard_writer::{ShardFormat, ShardWriter};

    /// Writes rows through the real writer and decodes every block of the file as one `Rows`.
    fn decode_all(rows: &[(String, Vec<u8>)], search: Search<'_>) -> Rows {
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
        let arena = Arena::new(1 << 20);
        for search in [Search::Binary, Search::Hashed(None), Search::Hashed(Some(&arena))] {
            let decoded = decode_all(&rows, search);
            assert_eq!(decoded.len(), rows.len());
            let in_arena = matches!(search, Search::Hashed(Some(_)));
            assert_eq!(arena.stats().used_bytes > 0, in_arena);
            for (k, v) in &rows {
                assert_eq!(decoded.get(k.as_bytes()).as_deref(), Some(v.as_slice()), "{k}");
            }
            for absent in ["", "0", "aa", "abc", "abcdefg", "abcdefgh2", "abcdefgh-2", "abcdefgh-99999", "c"] {
                assert_eq!(decoded.get(absent.as_bytes()), None, "{absent}");
            }
        }
    }

    /// A hot shard of 1 row once had a 1-slot table, full, so the probe for an absent key never met an
    /// empty slot and spun forever. Run in a thread so the old code fails instead of hanging the suite.
    #[test]
    fn tiny_hot_shards_answer_absent_keys() {
        for n in 1..=9usize {
            let rows: Vec<(String, Vec<u8>)> = (0..n).map(|i| (format!("k{i}"), vec![b'v'; 10])).collect();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let decoded = decode_all(&rows, Search::Hashed(None));
                let found = rows.iter().all(|(k, v)| decoded.get(k.as_bytes()).as_deref() == Some(v.as_slice()));
                let _ = tx.send((found, decoded.get(b"absent"), decoded.get(b"k")));
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("lookup in a tiny hot shard hung");
            assert_eq!(got, (true, None, None), "{n} rows");
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
        assert_eq!(decode_all(&rows, Search::Hashed(None)).get(b"k099").as_deref(), Some(&[b'x'; 4000][..]));
    }
}
