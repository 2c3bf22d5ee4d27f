//! JSON Lines input: one object per line holding the key and value columns as strings (other fields are
//! ignored, blank lines skipped). Each line is parsed on its own, so a problem is reported at its exact line.

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use crate::error::IngestError;
use crate::input::InputFile;
use crate::record::{Emit, MAX_LINE, Problems, check_record};
use crate::text_input::{Line, TextInput, next_line};

pub fn read(
    file: &InputFile,
    input: &mut TextInput<'_>,
    (key, value): (&str, &str),
    problems: &mut Problems,
    emit: &mut Emit<'_>,
) -> Result<(), IngestError> {
    // The line limit leaves room for a value at its limit written with JSON escapes.
    let max = 2 * MAX_LINE;
    let mut line = Vec::with_capacity(256);
    let mut n = 0u64;
    if let Err(e) = input.skip_byte_order_mark() {
        return input.failure(file, e, 0, problems);
    }
    loop {
        let got = match next_line(&mut input.reader, &mut line, max) {
            Ok(l) => l,
            Err(e) => return input.failure(file, e, n, problems),
        };
        n += 1;
        match got {
            Line::End => return Ok(()),
            Line::TooLong => problems.add(&file.path, n, format!("line longer than {max} bytes")),
            Line::Read if line.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Read => match parse(&line, key, value) {
                Ok((k, v)) => match check_record(k.as_bytes(), v.as_bytes()) {
                    Ok(()) => emit(k.as_bytes(), Some(v.as_bytes()), n, None),
                    Err(why) => problems.add(&file.path, n, why),
                },
                Err(why) => problems.add(&file.path, n, why),
            },
        }
        if problems.full() {
            return Ok(());
        }
    }
}

/// The key and value strings of one line's object, or what is wrong with it.
fn parse(line: &[u8], key: &str, value: &str) -> Result<(String, String), String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let found = Wanted { key, value }.deserialize(&mut de).and_then(|f| de.end().map(|()| f));
    let found = found.map_err(|e| format!("not a JSON object: {e}"))?;
    let field = |v: Option<Value>, name: &str| match v {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("missing {name:?}")),
        Some(other) => Err(format!("{name:?} is {}, expected a string", kind(&other))),
    };
    Ok((field(found.key, key)?, field(found.value, value)?))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads only the two named fields of an object, skipping the others without building them.
struct Wanted<'a> {
    key: &'a str,
    value: &'a str,
}

#[derive(Default)]
struct Found {
    key: Option<Value>,
    value: Option<Value>,
}

impl<'de> DeserializeSeed<'de> for Wanted<'_> {
    type Value = Found;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_> {
    type Value = Found;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
        let mut found = Found::default();
        while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let slot = if name == self.key {
                Some(&mut found.key)
            } else if name == self.value {
                Some(&mut found.value)
            } else {
                None
            };
            if let Some(slot) = slot {
                // Which of two values a reader would take is not defined by JSON: refused, not guessed.
                if slot.replace(map.next_value()?).is_some() {
                    return Err(serde::de::Error::custom(format!("{name:?} appears twice")));
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects() {
        let p = |l: &str| parse(l.as_bytes(), "key", "value");
        assert_eq!(p(r#"{"key":"a","value":"b c","x":[1,{"y":2}]}"#), Ok(("a".into(), "b c".into())));
        assert_eq!(p(r#" {"value":"\u00e9\n","key":"k"} "#), Ok(("k".into(), "é\n".into())));
        assert!(p(r#"{"key":"a","value":17}"#).unwrap_err().contains("\"value\" is a number"));
        assert!(p(r#"{"key":null,"value":"v"}"#).unwrap_err().contains("missing \"key\""));
        assert!(p(r#"{"key":"a"}"#).unwrap_err().contains("missing \"value\""));
        assert!(p(r#"{"key":"a","value":"v"} x"#).unwrap_err().contains("not a JSON object"));
        assert!(p(r#"["a","b"]"#).unwrap_err().contains("not a JSON object"));
        assert!(p(r#"{"key":"a","#).unwrap_err().contains("not a JSON object"));
        assert!(p(r#"{"key":"a","value":"1","value":"2"}"#).unwrap_err().contains("\"value\" appears twice"));
    }
}
