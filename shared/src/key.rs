//! What a key and a keyspace name may be. Keys are opaque byte strings compared bytewise, with the few rules
//! the text format and URLs need (no separators, no control bytes); the reference data's UUIDs all qualify.

use crate::error::{Error, Result};

/// Longest key accepted, in bytes (UTF-8).
pub const MAX_KEY_LEN: usize = 1024;

/// Why `key` is not a valid cairn key, if it is not.
pub fn key_problem(key: &[u8]) -> Option<String> {
    if key.is_empty() {
        return Some("empty key".into());
    }
    if key.len() > MAX_KEY_LEN {
        return Some(format!("key is {} bytes, the limit is {MAX_KEY_LEN}", key.len()));
    }
    // One pass without an early exit, which the compiler vectorizes (every lookup and every ingested
    // record comes through here): a space or control byte anywhere, and any byte outside ASCII (only then
    // can the key be invalid UTF-8).
    let (mut control, mut high) = (false, false);
    for &b in key {
        control |= (b <= 0x20) | (b == 0x7f);
        high |= b >= 0x80;
    }
    if let Some(pos) = control.then(|| key.iter().position(|&b| b <= 0x20 || b == 0x7f)).flatten() {
        let what = match key[pos] {
            // Lookups could never name it: the text format splits at the first space, and requests refuse it.
            b' ' => "a space".to_string(),
            b'\t' => "a tab".to_string(),
            b'\r' => "a carriage return".to_string(),
            b => format!("control byte 0x{b:02x}"),
        };
        return Some(format!("key contains {what} at byte {pos}"));
    }
    if high && std::str::from_utf8(key).is_err() {
        return Some("key is not valid UTF-8".into());
    }
    None
}

/// Checks a key from a request; the error names the problem.
pub fn validate_key(key: &str) -> Result<()> {
    match key_problem(key.as_bytes()) {
        Some(why) => Err(Error::InvalidKey(why)),
        None => Ok(()),
    }
}

/// Keyspace names become path segments in every store (S3 included): lowercase letters, digits, `-` and `_`,
/// 1 to 63 characters, starting with a letter or digit.
pub fn validate_keyspace(name: &str) -> Result<()> {
    let bad = |why| Err(Error::InvalidKeyspace { name: name.to_string(), why });
    if name.is_empty() || name.len() > 63 {
        return bad("must be 1 to 63 characters");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
        return bad("may only hold a-z, 0-9, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("8a35eb59-62b3-481c-8875-1f248df4c952").is_ok());
        assert!(validate_key("ключ").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a b").is_err());
        assert!(validate_key("a\tb").is_err());
        assert!(validate_key(&"x".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(key_problem(b"\xff\xfe").is_some());
    }

    #[test]
    fn every_byte_in_every_position_is_judged_as_byte_by_byte() {
        // The check as it was before it became one vectorized pass.
        let reference = |key: &[u8]| -> Option<String> {
            if let Some(pos) = key.iter().position(|&b| b <= 0x20 || b == 0x7f) {
                return Some(format!("at byte {pos}"));
            }
            std::str::from_utf8(key).is_err().then(|| "utf-8".to_string())
        };
        let judged = |key: &[u8]| match key_problem(key) {
            Some(why) if why.contains("at byte") => Some(format!("at byte {}", why.rsplit(' ').next().unwrap())),
            Some(_) => Some("utf-8".to_string()),
            None => None,
        };
        let base = "8a35eb59-62b3-481c-8875-1f248df4c952ключ".as_bytes();
        for len in [1, 7, 16, 31, 32, 33, base.len()] {
            for pos in 0..len {
                for b in 0..=255u8 {
                    let mut key = base[..len].to_vec();
                    key[pos] = b;
                    assert_eq!(judged(&key), reference(&key), "{key:?}");
                }
            }
        }
    }

    #[test]
    fn keyspaces() {
        assert!(validate_keyspace("default").is_ok());
        assert!(validate_keyspace("users_2024-v1").is_ok());
        for bad in ["", "Default", "-x", "a/b", "a=b", "..", &"a".repeat(64)] {
            assert!(validate_keyspace(bad).is_err(), "{bad:?}");
        }
    }
}
