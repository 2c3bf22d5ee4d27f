//! Key placement: which shard holds a key. The manifest stores the [`PlacementSpec`] so any engine can
//! recompute it: `hash = xxhash64(key bytes, seed)` (XXH64, as in Python's `xxhash.xxh64_intdigest`), then
//! either jump consistent hashing (Lamping & Veach 2014, the default) or a ring of virtual nodes.
//!
//! Why jump by default: its shards differ by binomial noise only and adding a shard moves exactly 1/(N+1) of
//! the keys, with no table to store; a virtual-node ring needs thousands of points per shard to get near
//! that (figures in docs/FORMAT.md).

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::xxh64;

/// Placement parameters, stored verbatim in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum PlacementSpec {
    /// Jump consistent hash of `xxhash64(key, seed)` into `shards` buckets.
    Jump { hash: String, seed: u64, shards: u32 },
    /// Ring: point `v` of shard `s` is at `xxhash64("{s}/{v}", seed)`; a key belongs to the first point at or
    /// after its hash (wrapping around).
    Ring { hash: String, seed: u64, shards: u32, vnodes: u32 },
    /// A delta layer's placement: `shards` ranges of the base placement's shards, so a layer's shard count
    /// fits the delta while compaction merges each base shard with one shard per layer. A key's shard is
    /// `base_shard × shards / base.shards()` (integer division, `shards` ≤ the base's).
    Nested { base: Box<PlacementSpec>, shards: u32 },
}

pub const HASH_XXH64: &str = "xxhash64";

impl PlacementSpec {
    pub fn jump(shards: u32) -> Self {
        PlacementSpec::Jump { hash: HASH_XXH64.into(), seed: 0, shards }
    }

    pub fn ring(shards: u32, vnodes: u32) -> Self {
        PlacementSpec::Ring { hash: HASH_XXH64.into(), seed: 0, shards, vnodes }
    }

    /// A delta layer's placement of `shards` ranges over this (base) placement.
    pub fn nested(&self, shards: u32) -> Self {
        let base = self.base().clone();
        let shards = shards.clamp(1, base.shards());
        PlacementSpec::Nested { base: Box::new(base), shards }
    }

    /// The placement this one nests in (itself for a base placement).
    pub fn base(&self) -> &PlacementSpec {
        match self {
            PlacementSpec::Nested { base, .. } => base,
            other => other,
        }
    }

    pub fn shards(&self) -> u32 {
        match self {
            PlacementSpec::Jump { shards, .. }
            | PlacementSpec::Ring { shards, .. }
            | PlacementSpec::Nested { shards, .. } => *shards,
        }
    }
}

/// A placement ready to answer `shard_of` (the ring's points are built once per manifest).
#[derive(Debug, Clone)]
pub struct Placement {
    seed: u64,
    shards: u32,
    /// Nested: the base placement's shard count (0 for a base placement).
    base_shards: u32,
    /// Sorted (point hash, shard); empty for jump.
    points: Vec<(u64, u32)>,
}

impl Placement {
    /// Bytes it holds (the ring's points), for cache weighing.
    pub fn weight(&self) -> usize {
        self.points.len() * std::mem::size_of::<(u64, u32)>()
    }
}

/// Most shards a placement may name (`cairn ingest --shards` accepts the same).
pub const MAX_SHARDS: u32 = 100_000;
/// Most points a ring may hold (16 bytes each).
pub const MAX_RING_POINTS: u64 = 1 << 22;

impl Placement {
    pub fn new(spec: &PlacementSpec) -> Result<Self, String> {
        let (hash, seed, shards) = match spec {
            PlacementSpec::Jump { hash, seed, shards } | PlacementSpec::Ring { hash, seed, shards, .. } => {
                (hash, *seed, *shards)
            }
            PlacementSpec::Nested { base, shards } => {
                if matches!(**base, PlacementSpec::Nested { .. }) {
                    return Err("a nested placement's base cannot itself be nested".into());
                }
                let mut p = Placement::new(base)?;
                if *shards == 0 || *shards > p.shards {
                    return Err(format!("a nested placement of {shards} shards over {} base shards", p.shards));
                }
                p.base_shards = p.shards;
                p.shards = *shards;
                return Ok(p);
            }
        };
        if hash != HASH_XXH64 {
            return Err(format!("unknown hash function {hash:?} (this build knows {HASH_XXH64:?})"));
        }
        if shards == 0 {
            return Err("placement needs at least one shard".into());
        }
        let mut points = Vec::new();
        if shards > MAX_SHARDS {
            return Err(format!("{shards} shards; at most {MAX_SHARDS}"));
        }
        if let PlacementSpec::Ring { vnodes, .. } = spec {
            if *vnodes == 0 {
                return Err("a ring needs at least one virtual node per shard".into());
            }
            // From a manifest, so possibly hostile: the points are allocated up front.
            if shards as u64 * *vnodes as u64 > MAX_RING_POINTS {
                return Err(format!("{shards} shards x {vnodes} virtual nodes; at most {MAX_RING_POINTS} points"));
            }
            points.reserve(shards as usize * *vnodes as usize);
            for s in 0..shards {
                for v in 0..*vnodes {
                    points.push((xxh64(format!("{s}/{v}").as_bytes(), seed), s));
                }
            }
            points.sort_unstable();
        }
        Ok(Placement { seed, shards, base_shards: 0, points })
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        if self.base_shards == 0 {
            return self.base_shard_of(key, self.shards);
        }
        self.nest(self.base_shard_of(key, self.base_shards))
    }

    /// A nested placement's shard for base shard `b` (`b` itself for a base placement).
    #[inline]
    pub fn nest(&self, b: u32) -> u32 {
        if self.base_shards == 0 { b } else { (b as u64 * self.shards as u64 / self.base_shards as u64) as u32 }
    }

    /// The base shards a nested placement's shard `s` covers (`s..s + 1` for a base placement).
    pub fn covered(&self, s: u32) -> std::ops::Range<u32> {
        if self.base_shards == 0 {
            return s..s + 1;
        }
        // The smallest b with b × shards / base ≥ s, up to the one for s + 1.
        let first = |s: u32| ((s as u64 * self.base_shards as u64).div_ceil(self.shards as u64)) as u32;
        first(s)..first(s + 1).min(self.base_shards)
    }

    /// The shard of each key, as [`Placement::shard_of`] gives it, into `out` (cleared first). Faster per
    /// key than one at a time: jump hashing's steps for several keys are interleaved ([`jump_hash_each`]).
    pub fn shards_of<'k>(&self, keys: impl IntoIterator<Item = &'k [u8]>, out: &mut Vec<u32>) {
        out.clear();
        let hashes: Vec<u64> = keys.into_iter().map(|k| xxh64(k, self.seed)).collect();
        let shards = if self.base_shards == 0 { self.shards } else { self.base_shards };
        if self.points.is_empty() {
            jump_hash_each(&hashes, shards, out);
        } else {
            out.extend(hashes.iter().map(|&h| {
                let i = self.points.partition_point(|&(p, _)| p < h);
                self.points[if i == self.points.len() { 0 } else { i }].1
            }));
        }
        if self.base_shards != 0 {
            out.iter_mut().for_each(|s| *s = self.nest(*s));
        }
    }

    #[inline]
    fn base_shard_of(&self, key: &[u8], shards: u32) -> u32 {
        let h = xxh64(key, self.seed);
        if self.points.is_empty() {
            return jump_hash(h, shards);
        }
        let i = self.points.partition_point(|&(p, _)| p < h);
        self.points[if i == self.points.len() { 0 } else { i }].1
    }
}

/// Jump consistent hash (Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm").
#[inline]
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets as i64 {
        b = j;
        key = key.wrapping_mul(2862933555777941757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// Keys jump-hashed together: [`jump_hash`] of each key in `keys`, appended to `out`.
///
/// One key's steps are a chain of dependent float operations ending in a branch that mispredicts once per
/// key; eight keys stepped in lockstep keep the pipeline full and mispredict once per eight.
pub fn jump_hash_each(keys: &[u64], buckets: u32, out: &mut Vec<u32>) {
    const LANES: usize = 8;
    let n = buckets as i64;
    let mut lanes = keys.chunks_exact(LANES);
    for chunk in &mut lanes {
        let mut key: [u64; LANES] = chunk.try_into().expect("chunks_exact");
        let (mut b, mut j) = ([-1i64; LANES], [0i64; LANES]);
        loop {
            let mut any = false;
            for l in 0..LANES {
                let active = j[l] < n;
                any |= active;
                let next = key[l].wrapping_mul(2862933555777941757).wrapping_add(1);
                let jumped = ((j[l] + 1) as f64 * ((1u64 << 31) as f64 / ((next >> 33) + 1) as f64)) as i64;
                if active {
                    (b[l], key[l], j[l]) = (j[l], next, jumped);
                }
            }
            if !any {
                break;
            }
        }
        out.extend(b.iter().map(|&b| b as u32));
    }
    out.extend(lanes.remainder().iter().map(|&k| jump_hash(k, buckets)));
}

/// (largest - smallest) / smallest, the figure ingest prints; 0 for fewer than two shards.
pub fn imbalance(counts: &[u64]) -> f64 {
    let (Some(&min), Some(&max)) = (counts.iter().min(), counts.iter().max()) else { return 0.0 };
    if counts.len() < 2 {
        return 0.0;
    }
    if min == 0 {
        return f64::INFINITY;
    }
    (max - min) as f64 / min as f64
}

#[cfg(test)]
mod tests {
    /// A manifest naming a ring of 10^11 points made the reader abort allocating them.
    #[test]
    fn an_oversized_placement_is_refused_not_allocated() {
        assert!(super::Placement::new(&super::PlacementSpec::ring(100_000, 1_000_000)).is_err());
        assert!(super::Placement::new(&super::PlacementSpec::jump(u32::MAX)).is_err());
        assert!(super::Placement::new(&super::PlacementSpec::ring(1000, 256)).is_ok());
    }

    use super::*;

    fn keys(n: usize) -> Vec<String> {
        (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect()
    }

    fn counts(p: &Placement, keys: &[String]) -> Vec<u64> {
        let mut c = vec![0u64; p.shards() as usize];
        for k in keys {
            c[p.shard_of(k.as_bytes()) as usize] += 1;
        }
        c
    }

    #[test]
    fn jump_is_balanced_at_1m_keys() {
        let keys = keys(1_000_000);
        let jump = Placement::new(&PlacementSpec::jump(16)).unwrap();
        let imb = imbalance(&counts(&jump, &keys));
        let ring = Placement::new(&PlacementSpec::ring(16, 256)).unwrap();
        let ring_imb = imbalance(&counts(&ring, &keys));
        println!("1M keys, 16 shards: jump imbalance {:.2}%, ring(256 vnodes) {:.2}%", imb * 100.0, ring_imb * 100.0);
        assert!(imb <= 0.05, "jump imbalance {imb}");
    }

    #[test]
    fn minimal_movement_when_shards_change() {
        let keys = keys(200_000);
        for spec in [
            (PlacementSpec::jump(10), PlacementSpec::jump(11)),
            (PlacementSpec::ring(10, 256), PlacementSpec::ring(11, 256)),
        ] {
            let (a, b) = (Placement::new(&spec.0).unwrap(), Placement::new(&spec.1).unwrap());
            let mut moved = 0;
            for k in &keys {
                let (x, y) = (a.shard_of(k.as_bytes()), b.shard_of(k.as_bytes()));
                if x != y {
                    moved += 1;
                    assert_eq!(y, 10, "a key may only move to the new shard");
                }
            }
            let frac = moved as f64 / keys.len() as f64;
            println!("{spec:?}: {:.2}% moved (ideal {:.2}%)", frac * 100.0, 100.0 / 11.0);
            assert!((frac - 1.0 / 11.0).abs() < 0.03, "moved {frac}");
        }
    }

    #[test]
    fn reproducible_hash() {
        // Fixed vectors so other engines can check their implementation against ours.
        assert_eq!(xxh64(b"", 0), 0xef46db3751d8e999);
        assert_eq!(jump_hash(0, 1), 0);
        let p = Placement::new(&PlacementSpec::jump(16)).unwrap();
        let s = p.shard_of(b"8a35eb59-62b3-481c-8875-1f248df4c952");
        assert_eq!(s, jump_hash(xxh64(b"8a35eb59-62b3-481c-8875-1f248df4c952", 0), 16));
    }

    #[test]
    fn placing_keys_together_gives_each_the_shard_it_gets_alone() {
        let specs = [
            PlacementSpec::jump(1),
            PlacementSpec::jump(7),
            PlacementSpec::jump(158),
            PlacementSpec::jump(MAX_SHARDS),
            PlacementSpec::ring(7, 16),
            PlacementSpec::jump(1000).nested(10),
            PlacementSpec::ring(7, 16).nested(3),
        ];
        // Lengths that are not a multiple of the lanes, keys of every length up to past a stripe.
        let keys: Vec<Vec<u8>> = (0..1003u32).map(|i| i.to_le_bytes().repeat(i as usize % 40)).collect();
        let mut out = vec![u32::MAX; 3];
        for spec in specs {
            let p = Placement::new(&spec).unwrap();
            for n in [0, 1, 7, 8, 9, 1003] {
                p.shards_of(keys[..n].iter().map(|k| k.as_slice()), &mut out);
                let alone: Vec<u32> = keys[..n].iter().map(|k| p.shard_of(k)).collect();
                assert_eq!(out, alone, "{spec:?}, {n} keys");
            }
        }
        let hashes: Vec<u64> = (0..4096u64).map(|i| i.wrapping_mul(0x9e3779b97f4a7c15)).collect();
        for buckets in [1, 2, 3, 1 << 20, u32::MAX] {
            let mut each = Vec::new();
            jump_hash_each(&hashes, buckets, &mut each);
            assert_eq!(each, hashes.iter().map(|&h| jump_hash(h, buckets)).collect::<Vec<_>>(), "{buckets} buckets");
        }
    }

    #[test]
    fn nested_shards_are_ranges_of_base_shards() {
        for (base, m) in [(PlacementSpec::jump(10), 3), (PlacementSpec::ring(7, 16), 7), (PlacementSpec::jump(5), 1)] {
            let b = Placement::new(&base).unwrap();
            let n = Placement::new(&base.nested(m)).unwrap();
            assert_eq!(n.shards(), m);
            let mut covered: Vec<u32> = Vec::new();
            for s in 0..m {
                covered.extend(n.covered(s));
            }
            assert_eq!(covered, (0..b.shards()).collect::<Vec<_>>());
            for k in keys(2000) {
                let (bs, ns) = (b.shard_of(k.as_bytes()), n.shard_of(k.as_bytes()));
                assert_eq!(ns, n.nest(bs));
                assert!(n.covered(ns).contains(&bs));
            }
        }
        assert!(Placement::new(&PlacementSpec::Nested { base: Box::new(PlacementSpec::jump(2)), shards: 3 }).is_err());
        let twice = PlacementSpec::Nested { base: Box::new(PlacementSpec::jump(4).nested(2)), shards: 1 };
        assert!(Placement::new(&twice).is_err());
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(Placement::new(&PlacementSpec::jump(0)).is_err());
        assert!(Placement::new(&PlacementSpec::Jump { hash: "md5".into(), seed: 0, shards: 2 }).is_err());
    }
}
