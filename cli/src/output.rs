//! How values are printed: raw bytes then a newline, `(nil)` for an absent key.

use std::io::Write;

pub fn print_value(v: Option<&[u8]>) {
    let mut out = std::io::stdout().lock();
    let _ = match v {
        Some(bytes) => out.write_all(bytes).and_then(|_| out.write_all(b"\n")),
        None => out.write_all(b"(nil)\n"),
    };
}

pub fn print_values(vs: &[Option<bytes::Bytes>]) {
    for v in vs {
        print_value(v.as_deref());
    }
}
