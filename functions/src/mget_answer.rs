//! An MGET's JSON answer, sized before it is built: a value's JSON can be up to six times its bytes (a
//! control byte is written `\u0001`), so checking the size of the answer once written would let a request
//! the engine allowed build a multiple of its limit first.

use base64::Engine as _;
use bytes::Bytes;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// How one value is written.
enum Form<'a> {
    Null,
    Text(&'a str),
    /// A base64 string; wrapped as `{"base64": ...}` unless every value is base64.
    Base64(&'a [u8], bool),
}

fn form(v: &Option<Bytes>, all_base64: bool) -> Form<'_> {
    match v {
        None => Form::Null,
        Some(v) if all_base64 => Form::Base64(v, false),
        Some(v) => match std::str::from_utf8(v) {
            Ok(s) => Form::Text(s),
            Err(_) => Form::Base64(v, true),
        },
    }
}

/// An answer's size: its JSON, and that JSON once written again as a JSON string (what the Lambda runtime
/// does with a text body: each `"` and `\` in it gains a `\`).
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct Size {
    pub json: usize,
    pub escaped: usize,
}

impl Size {
    fn add(&mut self, json: usize, quotes_and_backslashes: usize) {
        self.json += json;
        self.escaped += json + quotes_and_backslashes;
    }
}

/// The size of the answer to `values`, without building it.
pub fn size(values: &[Option<Bytes>], all_base64: bool) -> Size {
    let mut size = Size::default();
    size.add(2 + values.len().saturating_sub(1), 0);
    for v in values {
        match form(v, all_base64) {
            Form::Null => size.add(4, 0),
            Form::Base64(v, wrapped) => {
                let b64 = base64::encoded_len(v.len(), true).unwrap_or(usize::MAX / 4);
                if wrapped { size.add(13 + b64, 4) } else { size.add(2 + b64, 2) }
            }
            Form::Text(s) => {
                let (mut json, mut special) = (2, 2);
                for &b in s.as_bytes() {
                    let (j, q) = match b {
                        b'"' | b'\\' => (2, 2),
                        b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => (2, 1),
                        0..0x20 => (6, 1),
                        _ => (1, 0),
                    };
                    json += j;
                    special += q;
                }
                size.add(json, special);
            }
        }
    }
    size
}

/// The answer: a JSON list in the order of `values`, `null` where absent; `capacity` is its [`size`].
pub fn write(values: &[Option<Bytes>], all_base64: bool, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    out.push(b'[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match form(v, all_base64) {
            Form::Null => out.extend_from_slice(b"null"),
            Form::Text(s) => serde_json::to_writer(&mut out, s).expect("a string writes to a Vec"),
            Form::Base64(v, wrapped) => {
                out.extend_from_slice(if wrapped { b"{\"base64\":\"" } else { b"\"" });
                let at = out.len();
                out.resize(at + base64::encoded_len(v.len(), true).expect("sized"), 0);
                B64.encode_slice(v, &mut out[at..]).expect("sized to fit");
                out.extend_from_slice(if wrapped { b"\"}" } else { b"\"" });
            }
        }
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// What the answer was before it was sized first: serde_json over `Value`s.
    fn as_values(values: &[Option<Bytes>], all_base64: bool) -> Vec<u8> {
        let out: Vec<Value> = values
            .iter()
            .map(|v| match v {
                None => Value::Null,
                Some(v) if all_base64 => Value::String(B64.encode(v)),
                Some(v) => match std::str::from_utf8(v) {
                    Ok(s) => Value::String(s.to_string()),
                    Err(_) => json!({ "base64": B64.encode(v) }),
                },
            })
            .collect();
        serde_json::to_vec(&out).unwrap()
    }

    fn escaped(json: &[u8]) -> usize {
        serde_json::to_string(std::str::from_utf8(json).unwrap()).unwrap().len() - 2
    }

    #[test]
    fn the_answer_and_its_size_are_what_serde_json_writes() {
        let odd: Vec<u8> = (0u8..=255).collect();
        let cases: Vec<Vec<Option<Bytes>>> = vec![
            vec![],
            vec![None],
            vec![Some(Bytes::new()), None, Some(Bytes::from_static(b"plain"))],
            vec![Some(Bytes::from("a\"b\\c\nd\u{1}e\u{7f}\u{1f}\r\t\u{8}\u{c}😀/"))],
            vec![Some(Bytes::from(odd.clone())), Some(Bytes::from_static(b"x")), None],
            vec![Some(Bytes::from(vec![0xff; 7])), Some(Bytes::from(vec![1u8; 3]))],
        ];
        for values in &cases {
            for all_base64 in [false, true] {
                let expected = as_values(values, all_base64);
                let size = size(values, all_base64);
                let written = write(values, all_base64, size.json);
                assert_eq!(String::from_utf8_lossy(&written), String::from_utf8_lossy(&expected));
                assert_eq!(size, Size { json: expected.len(), escaped: escaped(&expected) }, "{values:?}");
            }
        }
    }
}
