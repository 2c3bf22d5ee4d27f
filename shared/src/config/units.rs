//! How sizes and durations are written in `CAIRN_*` variables and flags.

use std::time::Duration;

/// `5s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e} (expected e.g. 5s or 500ms)"))
}

/// The longest timeout: it is added to clock readings, and one past what they hold panicked every request.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 86_400);

/// A duration above zero (a timeout of 0 would fail everything at once) and at most a year.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: a timeout must be above 0")),
        d if d > MAX_TIMEOUT => Err(format!("{s:?}: a timeout must be at most 365days")),
        d => Ok(d),
    }
}

/// `1048576`, `64KiB`, `128MiB`, `2GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size (expected e.g. 128MiB)"))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        u => return Err(format!("unknown unit {u:?} in {s:?} (use B, KiB, MiB, GiB, KB, MB or GB)")),
    };
    n.checked_mul(mul).ok_or_else(|| format!("{s:?} is too large"))
}

/// A size that must be above zero (a cache of 0 bytes holds nothing: say `off` where that is allowed).
pub fn parse_size(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err(format!("{s:?}: must be above 0")),
        n => Ok(n),
    }
}

/// A count above zero, and at most what a semaphore can hold (counts here size one).
pub fn parse_count(s: &str) -> Result<usize, String> {
    let n: usize = s.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("{s:?} is not a positive count"))?;
    match n <= tokio::sync::Semaphore::MAX_PERMITS {
        true => Ok(n),
        false => Err(format!("{s:?} is more than {} allowed", tokio::sync::Semaphore::MAX_PERMITS)),
    }
}

/// `on`/`off` (also true/false, 1/0).
pub fn parse_switch(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" | "" => Ok(false),
        _ => Err(format!("{s:?}: use on or off")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_durations_and_their_errors() {
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("42"), Ok(42));
        assert!(parse_bytes("12 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_bytes("MiB").is_err());
        assert!(parse_size("0").is_err() && parse_size("0MiB").is_err());
        assert!(parse_timeout("0s").unwrap_err().contains("above 0"));
        assert!(parse_timeout("-1s").is_err());
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        // Added to a clock reading when used: past what an `Instant` holds, every connection would panic.
        assert!(parse_timeout("1000000000years").unwrap_err().contains("at most"));
        assert_eq!(parse_timeout("365days"), Ok(Duration::from_secs(365 * 86_400)));
        assert!(parse_count("0").is_err() && parse_count("-3").is_err());
        assert_eq!(parse_switch("on"), Ok(true));
    }
}
