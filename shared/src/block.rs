//! Decoded rows, sorted by key: one block (a cold or warm lookup) or a whole shard (a hot shard, decoded once
//! and then searched in memory at ~1 µs a lookup). Keys and values stay slices of the fetched bytes; the
//! search runs over a dense array of 8-byte key prefixes, so it touches few cache lines before the one full
//! key comparison.

use bytes::Bytes;

use crate::page::decode_chunk;

#[derive(Debug)]
pub struct Rows {
    data: Bytes,
    /// Where key i starts in `data` (its u32 length is the 4 bytes before).
    keys: Vec<u32>,
    values: Vec<u32>,
    /// Big-endian first 8 bytes of key i, zero-padded: orders like the keys themselves.
    prefixes: Vec<u64>,
}

/// Where one block's column chunks lie, relative to the start of the bytes holding the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRanges {
    pub key: (u32, u32),
    pub value: (u32, u32),
}

impl Rows {
    /// Decodes blocks that lie in `data`: each is (offset in `data`, its chunk ranges, rows it must hold).
    pub fn decode(data: Bytes, blocks: impl IntoIterator<Item = (usize, ChunkRanges, u64)>) -> Result<Rows, String> {
        let (mut keys, mut values) = (Vec::new(), Vec::new());
        for (i, (at, c, rows)) in blocks.into_iter().enumerate() {
            let range = |(lo, len): (u32, u32)| at + lo as usize..at + lo as usize + len as usize;
            let nk = decode_chunk(&data, range(c.key), &mut keys).map_err(|e| format!("block {i} keys: {e}"))?;
            let nv = decode_chunk(&data, range(c.value), &mut values).map_err(|e| format!("block {i} values: {e}"))?;
            if nk as u64 != rows || nv as u64 != rows {
                return Err(format!("block {i} should hold {rows} rows, has {nk} keys and {nv} values"));
            }
        }
        let prefixes = keys.iter().map(|&s| prefix(slice(&data, s))).collect();
        let rows = Rows { data, keys, values, prefixes };
        if let Some(i) = (1..rows.len()).find(|&i| rows.key(i - 1) >= rows.key(i)) {
            return Err(format!("keys out of order at row {i}"));
        }
        Ok(rows)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    #[inline]
    pub fn key(&self, i: usize) -> &[u8] {
        slice(&self.data, self.keys[i])
    }

    /// The value stored under `key`, sharing the decoded buffer.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let p = prefix(key);
        let mut i = self.prefixes.partition_point(|&x| x < p);
        while i < self.len() && self.prefixes[i] == p {
            match self.key(i).cmp(key) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Equal => {
                    let s = self.values[i] as usize;
                    let len = u32::from_le_bytes(self.data[s - 4..s].try_into().expect("4 bytes")) as usize;
                    return Some(self.data.slice(s..s + len));
                }
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Approximate heap footprint, for cache weighing.
    pub fn weight(&self) -> usize {
        self.data.len() + self.keys.len() * 16 + 128
    }
}

#[inline]
fn slice(data: &[u8], start: u32) -> &[u8] {
    let s = start as usize;
    let len = u32::from_le_bytes(data[s - 4..s].try_into().expect("4 bytes")) as usize;
    &data[s..s + len]
}

#[inline]
fn prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard_reader::ShardMeta;
    use crate::shard_writer::{ShardFormat, ShardWriter};

    /// Writes rows through the real writer and decodes every block of the file as one `Rows`.
    fn decode_all(rows: &[(String, Vec<u8>)]) -> Rows {
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for (k, v) in rows {
            w.append(k, v).unwrap();
        }
        let sum = w.finish().unwrap();
        let data = Bytes::from(buf);
        let tail = data.slice(data.len() - sum.meta_bytes as usize..);
        let meta = ShardMeta::from_suffix("t".into(), data.len() as u64, tail).unwrap();
        Rows::decode(data, meta.blocks.iter().map(|b| (b.offset as usize, b.chunks, b.rows))).unwrap()
    }

    #[test]
    fn keys_sharing_a_prefix_and_short_keys_are_found() {
        let mut keys: Vec<String> = ["a", "ab", "abcdefgh", "abcdefgh0", "abcdefgh1", "abcdefgh10", "abcdefghz", "b"]
            .iter()
            .map(|s| s.to_string())
            .chain((0..2000).map(|i| format!("abcdefgh-{i:05}")))
            .collect();
        keys.sort();
        let rows: Vec<(String, Vec<u8>)> = keys.iter().map(|k| (k.clone(), format!("v{k}").into_bytes())).collect();
        let decoded = decode_all(&rows);
        assert_eq!(decoded.len(), rows.len());
        for (k, v) in &rows {
            assert_eq!(decoded.get(k.as_bytes()).as_deref(), Some(v.as_slice()), "{k}");
        }
        for absent in ["", "0", "aa", "abc", "abcdefg", "abcdefgh2", "abcdefgh-2", "abcdefgh-99999", "c", "abcdefgh00"]
        {
            assert_eq!(decoded.get(absent.as_bytes()), None, "{absent}");
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
        assert_eq!(decode_all(&rows).get(b"k099").as_deref(), Some(&[b'x'; 4000][..]));
    }
}
