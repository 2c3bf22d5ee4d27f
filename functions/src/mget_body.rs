//! An MGET's request body: a JSON list of keys, or `{"keys": [...]}`. Read in one pass straight into the
//! keys, not through serde's untagged enums, which copy the whole document into a tree first (tens of
//! bytes per element of the body); past the per-request limit keys are counted, not kept.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::routes::MAX_MGET_KEYS;

/// The keys asked for: the first [`MAX_MGET_KEYS`] of them, and how many there were.
pub struct MgetBody {
    pub keys: Vec<String>,
    pub count: usize,
}

impl MgetBody {
    pub fn parse(body: &[u8]) -> serde_json::Result<MgetBody> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let parsed = (&mut de).deserialize_any(Either)?;
        de.end()?;
        Ok(parsed)
    }
}

/// A list or an object holding one.
struct Either;
/// A list only (the object's `keys`).
struct List;

impl<'de> Visitor<'de> for List {
    type Value = MgetBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of keys")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MgetBody, A::Error> {
        let mut keys = Vec::new();
        let mut count = 0;
        while count < MAX_MGET_KEYS {
            match seq.next_element::<String>()? {
                Some(k) => keys.push(k),
                None => return Ok(MgetBody { keys, count }),
            }
            count += 1;
        }
        // Each is still checked to be a string, so a malformed body is a 400 whatever its length.
        while seq.next_element::<KeyOnly>()?.is_some() {
            count += 1;
        }
        Ok(MgetBody { keys, count })
    }
}

impl<'de> Visitor<'de> for Either {
    type Value = MgetBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(r#"a list of keys, or {"keys": [...]}"#)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MgetBody, A::Error> {
        List.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MgetBody, A::Error> {
        let mut found = None;
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if name != "keys" {
                map.next_value::<IgnoredAny>()?;
            } else if found.is_some() {
                return Err(de::Error::duplicate_field("keys"));
            } else {
                found = Some(map.next_value_seed(ListSeed)?);
            }
        }
        found.ok_or_else(|| de::Error::missing_field("keys"))
    }
}

struct ListSeed;

impl<'de> de::DeserializeSeed<'de> for ListSeed {
    type Value = MgetBody;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<MgetBody, D::Error> {
        d.deserialize_seq(List)
    }
}

/// A key past the limit: checked to be a string, not kept.
struct KeyOnly;

impl<'de> de::Deserialize<'de> for KeyOnly {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<KeyOnly, D::Error> {
        struct Str;
        impl Visitor<'_> for Str {
            type Value = KeyOnly;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<KeyOnly, E> {
                Ok(KeyOnly)
            }
        }
        d.deserialize_str(Str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(body: &str) -> Result<(Vec<String>, usize), String> {
        MgetBody::parse(body.as_bytes()).map(|b| (b.keys, b.count)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_list_or_an_object_holding_one() {
        assert_eq!(keys(r#"["a","b"]"#), Ok((vec!["a".into(), "b".into()], 2)));
        assert_eq!(keys(r#" {"x": [1, {}], "keys": ["a\u0041"]} "#), Ok((vec!["aA".into()], 1)));
        assert_eq!(keys("[]"), Ok((vec![], 0)));
        for bad in [
            r#"{"keys": ["a"], "keys": []}"#,
            r#"{"nokeys": []}"#,
            r#"{"keys": {"keys": []}}"#,
            "[1]",
            r#""a""#,
            "[\"a\"] x",
            "[\"a\"",
        ] {
            assert!(keys(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn keys_past_the_limit_are_counted_not_kept() {
        let n = MAX_MGET_KEYS + 5;
        let body = format!("[{}]", vec!["\"k\""; n].join(","));
        let (kept, count) = keys(&body).unwrap();
        assert_eq!((kept.len(), count), (MAX_MGET_KEYS, n));
        let bad = format!("[{},2]", vec!["\"k\""; n].join(","));
        assert!(keys(&bad).is_err(), "a number past the limit was accepted");
    }
}
