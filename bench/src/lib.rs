//! Shared pieces of the benchmark binaries.

pub mod s3_like;
pub mod template_store;

/// Up to about `n` keys spread over a `<key> <value>` file (every k-th line).
pub fn sample_keys(path: &str, n: usize) -> Vec<String> {
    let bytes = std::fs::read(path).expect("data file");
    let lines = bytes.iter().filter(|&&b| b == b'\n').count().max(1);
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .step_by(lines.div_ceil(n).max(1))
        .map(|l| String::from_utf8_lossy(&l[..l.iter().position(|&b| b == b' ').unwrap_or(l.len())]).into_owned())
        .collect()
}

/// `len` indices into `n` keys: uniform, or Zipf(0.99) over a fixed random ranking of the keys.
pub fn choose(n: usize, len: usize, zipf: bool) -> Vec<usize> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    if !zipf {
        return (0..len).map(|_| (next() % n as u64) as usize).collect();
    }
    let mut cdf = Vec::with_capacity(n);
    let mut sum = 0.0;
    for r in 1..=n {
        sum += 1.0 / (r as f64).powf(0.99);
        cdf.push(sum);
    }
    // Rank r is key (r * a large odd number) mod n: hot keys spread over every shard.
    (0..len)
        .map(|_| {
            let u = (next() >> 11) as f64 / (1u64 << 53) as f64 * sum;
            let rank = cdf.partition_point(|&c| c < u).min(n - 1);
            (rank as u64 * 0x9e37_79b9_7f4a_7c15 % n as u64) as usize
        })
        .collect()
}
