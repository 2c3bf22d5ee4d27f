//! Key filters of a delta layer: per shard, a split-block Bloom filter (Parquet's SBBF algorithm: 256-bit
//! blocks, eight salted bits per key) over `xxh3_64(key)`. Each shard object of a delta layer carries its
//! own filter; the publish gathers them into one layer filter object that readers load with the version, so
//! a key absent from a layer costs that layer no request. Hand-written rather than parquet's `Sbbf` because
//! a lookup hashes a key once for every layer, which `Sbbf`'s private `check_hash` does not allow.

use xxhash_rust::xxh3::xxh3_64;

/// The rate a filter is sized for by Parquet's formula (bits = -8·n / ln(1 - p^(1/8)), ~17 bits a key). Split
/// blocks let about twice that through: ~0.1% measured (the test below), so at the most layers a version
/// may stack (8) a key of the base costs at most ~0.7% extra reads.
pub const FILTER_FPP: f64 = 0.0004;

const SALT: [u32; 8] = [0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31];

const MAGIC: &[u8; 8] = b"CAIRNKF1";

/// The hash every layer's filter is probed with.
#[inline]
pub fn key_hash(key: &[u8]) -> u64 {
    xxh3_64(key)
}

/// One shard's filter: whole 256-bit blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyFilter {
    blocks: Vec<[u32; 8]>,
}

#[inline]
fn mask(hash: u64) -> [u32; 8] {
    let x = hash as u32;
    std::array::from_fn(|i| 1u32 << (x.wrapping_mul(SALT[i]) >> 27))
}

#[inline]
fn block_of(hash: u64, blocks: usize) -> usize {
    (((hash >> 32) * blocks as u64) >> 32) as usize
}

#[inline]
fn probe(blocks: &[[u32; 8]], hash: u64) -> bool {
    if blocks.is_empty() {
        return false;
    }
    let b = &blocks[block_of(hash, blocks.len())];
    mask(hash).iter().zip(b).all(|(m, w)| w & m == *m)
}

impl KeyFilter {
    /// A filter for `hashes` at [`FILTER_FPP`] (empty, and answering "absent" to all, for none).
    pub fn build(hashes: &[u64]) -> KeyFilter {
        if hashes.is_empty() {
            return KeyFilter::default();
        }
        // Parquet's sizing: bits = -8·n / ln(1 - p^(1/8)).
        let bits = -8.0 * hashes.len() as f64 / (1.0 - FILTER_FPP.powf(1.0 / 8.0)).ln();
        let n = ((bits / 256.0).ceil() as usize).max(1);
        let mut blocks = vec![[0u32; 8]; n];
        for &h in hashes {
            let b = &mut blocks[block_of(h, n)];
            for (w, m) in b.iter_mut().zip(mask(h)) {
                *w |= m;
            }
        }
        KeyFilter { blocks }
    }

    pub fn may_contain(&self, hash: u64) -> bool {
        probe(&self.blocks, hash)
    }

    /// Little-endian words, block after block.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.blocks.iter().flatten().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<KeyFilter, String> {
        if !bytes.len().is_multiple_of(32) {
            return Err(format!("a {}-byte key filter (not whole 32-byte blocks)", bytes.len()));
        }
        let words: Vec<u32> = bytes.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4"))).collect();
        Ok(KeyFilter { blocks: words.chunks_exact(8).map(|c| c.try_into().expect("8")).collect() })
    }

    pub fn len_bytes(&self) -> usize {
        self.blocks.len() * 32
    }
}

/// A layer's filters, one per shard, in one object: `CAIRNKF1`, the shard count (u32 LE), one end offset
/// per shard (u64 LE, into the bitsets that follow), then the bitsets.
#[derive(Debug, Default)]
pub struct LayerFilter {
    /// Per shard, where its blocks start in `blocks` (shards + 1 entries).
    starts: Vec<usize>,
    blocks: Vec<[u32; 8]>,
}

impl LayerFilter {
    pub fn encode(filters: &[KeyFilter]) -> Vec<u8> {
        let total: usize = filters.iter().map(KeyFilter::len_bytes).sum();
        let mut out = Vec::with_capacity(12 + 8 * filters.len() + total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(filters.len() as u32).to_le_bytes());
        let mut end = 0u64;
        for f in filters {
            end += f.len_bytes() as u64;
            out.extend_from_slice(&end.to_le_bytes());
        }
        for f in filters {
            out.extend_from_slice(&f.to_bytes());
        }
        out
    }

    /// Decodes a layer filter of `shards` shards; anything that does not add up is refused.
    pub fn decode(bytes: &[u8], shards: u32) -> Result<LayerFilter, String> {
        let head = 12 + 8 * shards as usize;
        if bytes.len() < head || &bytes[..8] != MAGIC {
            return Err("not a cairn layer filter".into());
        }
        let n = u32::from_le_bytes(bytes[8..12].try_into().expect("4"));
        if n != shards {
            return Err(format!("a filter of {n} shards for a layer of {shards}"));
        }
        let body = &bytes[head..];
        let mut starts = vec![0usize];
        for s in 0..shards as usize {
            let end = u64::from_le_bytes(bytes[12 + 8 * s..20 + 8 * s].try_into().expect("8"));
            let prev = *starts.last().expect("one") as u64 * 32;
            if end < prev || end > body.len() as u64 || !end.is_multiple_of(32) {
                return Err(format!("shard {s}: its filter lies outside the object"));
            }
            starts.push((end / 32) as usize);
        }
        if *starts.last().expect("one") * 32 != body.len() {
            return Err("trailing bytes after the last filter".into());
        }
        let blocks = KeyFilter::from_bytes(body)?.blocks;
        Ok(LayerFilter { starts, blocks })
    }

    /// Whether shard `shard` may hold the key hashed to `hash` (false: surely not).
    #[inline]
    pub fn may_contain(&self, shard: u32, hash: u64) -> bool {
        let s = shard as usize;
        match (self.starts.get(s), self.starts.get(s + 1)) {
            (Some(&a), Some(&b)) => probe(&self.blocks[a..b], hash),
            _ => true,
        }
    }

    pub fn weight(&self) -> usize {
        self.blocks.len() * 32 + self.starts.len() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<String> = (0..20_000).map(|i| format!("key-{i}")).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
        let f = KeyFilter::build(&hashes);
        assert!(hashes.iter().all(|&h| f.may_contain(h)));
        let fp = (0..200_000).filter(|i| f.may_contain(key_hash(format!("other-{i}").as_bytes()))).count();
        assert!(fp < 200_000 * 15 / 10_000, "{fp} false positives in 200k (0.15% allowed)");
        let layer = LayerFilter::encode(&[KeyFilter::default(), f.clone()]);
        let d = LayerFilter::decode(&layer, 2).unwrap();
        assert!(!d.may_contain(0, hashes[0]));
        assert!(hashes.iter().all(|&h| d.may_contain(1, h)));
        assert!(LayerFilter::decode(&layer, 3).is_err());
        assert!(LayerFilter::decode(&layer[..layer.len() - 1], 2).is_err());
        let mut bad = layer.clone();
        bad[12] = 0xff;
        assert!(LayerFilter::decode(&bad, 2).is_err());
    }
}
