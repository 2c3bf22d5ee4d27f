//! Decoding the data pages of a cairn shard without the generic column reader: cairn writes required columns,
//! PLAIN encoding, no compression, data page v1, so a page is a Thrift-compact `PageHeader` followed by
//! `(u32 little-endian length, bytes)*`. Decoding is a header parse and one pass recording where each value
//! starts; values stay slices of the fetched buffer (no copies). Anything unexpected is reported as
//! corruption.

/// Decodes every page in `buf[range]` (one column chunk), appending the offset in `buf` where each value
/// starts (its u32 length is the 4 bytes before). Returns the number of values decoded.
pub fn decode_chunk(buf: &[u8], range: std::ops::Range<usize>, starts: &mut Vec<u32>) -> Result<usize, String> {
    if range.end > buf.len() || range.start > range.end {
        return Err(format!("column chunk {range:?} lies outside the {} bytes read", buf.len()));
    }
    if buf.len() > u32::MAX as usize {
        return Err("more than 4 GiB in one read".into());
    }
    let before = starts.len();
    let mut pos = range.start;
    while pos < range.end {
        pos = decode_page(&buf[..range.end], pos, starts)?;
    }
    Ok(starts.len() - before)
}

/// Decodes the page at `buf[at..]`, returning where it ends.
fn decode_page(buf: &[u8], at: usize, starts: &mut Vec<u32>) -> Result<usize, String> {
    let mut r = Reader { buf, pos: at };
    let header = r.page_header()?;
    if header.page_type != 0 {
        return Err(format!("page type {} is not a v1 data page", header.page_type));
    }
    if header.encoding != 0 {
        return Err(format!("page encoding {} is not PLAIN", header.encoding));
    }
    if header.compressed != header.uncompressed {
        return Err("compressed page (cairn writes uncompressed pages)".into());
    }
    let start = r.pos;
    let end = start
        .checked_add(header.compressed as usize)
        .filter(|&e| e <= buf.len())
        .ok_or("page shorter than its header says")?;
    let n = usize::try_from(header.num_values).map_err(|_| "negative value count")?;
    starts.reserve(n.min(end - start));
    let mut pos = start;
    for _ in 0..n {
        let len_end = pos.checked_add(4).filter(|&e| e <= end).ok_or("value length past page end")?;
        let len = u32::from_le_bytes(buf[pos..len_end].try_into().expect("4 bytes")) as usize;
        pos = len_end.checked_add(len).filter(|&e| e <= end).ok_or("value past page end")?;
        starts.push(len_end as u32);
    }
    if pos != end {
        return Err(format!("{} stray bytes after {n} values", end - pos));
    }
    Ok(end)
}

struct Header {
    page_type: i32,
    uncompressed: i32,
    compressed: i32,
    num_values: i32,
    encoding: i32,
}

/// Just enough of the Thrift compact protocol to read a `PageHeader` and skip what it does not need.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

const T_STRUCT: u8 = 12;

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or("truncated page header")?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn i32(&mut self) -> Result<i32, String> {
        i32::try_from(self.zigzag()?).map_err(|_| "i32 out of range".to_string())
    }

    /// Next field (id, type) of a struct, or None at its end.
    fn field(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = (b >> 4) as i16;
        *last_id = if delta == 0 { self.zigzag()? as i16 } else { *last_id + delta };
        Ok(Some((*last_id, b & 0x0f)))
    }

    fn skip(&mut self, t: u8, depth: u32) -> Result<(), String> {
        if depth > 16 {
            return Err("page header nested too deep".into());
        }
        match t {
            1 | 2 => {}
            3 => self.pos += 1,
            4..=6 => {
                self.varint()?;
            }
            7 => self.pos += 8,
            8 => {
                let n = self.varint()? as usize;
                self.pos = self.pos.checked_add(n).ok_or("bad binary length")?;
            }
            9 | 10 => {
                let h = self.byte()?;
                let n = if h >> 4 == 15 { self.varint()? as usize } else { (h >> 4) as usize };
                // Every element takes at least a byte: a count beyond the bytes left is a lie, not a loop.
                self.fits(n)?;
                if matches!(h & 0x0f, 1 | 2) {
                    // Bools in a list are a byte each (as fields they live in the type nibble).
                    self.pos += n;
                } else {
                    for _ in 0..n {
                        self.skip(h & 0x0f, depth + 1)?;
                    }
                }
            }
            11 => {
                let n = self.varint()? as usize;
                self.fits(n)?;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip(kv >> 4, depth + 1)?;
                        self.skip(kv & 0x0f, depth + 1)?;
                    }
                }
            }
            T_STRUCT => {
                let mut id = 0;
                while let Some((_, ft)) = self.field(&mut id)? {
                    self.skip(ft, depth + 1)?;
                }
            }
            _ => return Err(format!("unknown thrift type {t}")),
        }
        if self.pos > self.buf.len() { Err("truncated page header".into()) } else { Ok(()) }
    }

    /// Whether `n` more bytes could follow.
    fn fits(&self, n: usize) -> Result<(), String> {
        if n > self.buf.len().saturating_sub(self.pos) {
            Err(format!("a count of {n} past the header's end"))
        } else {
            Ok(())
        }
    }

    fn page_header(&mut self) -> Result<Header, String> {
        let mut h = Header { page_type: -1, uncompressed: -1, compressed: -1, num_values: -1, encoding: -1 };
        let mut id = 0;
        while let Some((fid, t)) = self.field(&mut id)? {
            match (fid, t) {
                (1, 5) => h.page_type = self.i32()?,
                (2, 5) => h.uncompressed = self.i32()?,
                (3, 5) => h.compressed = self.i32()?,
                (5, T_STRUCT) => {
                    let mut sid = 0;
                    while let Some((sf, st)) = self.field(&mut sid)? {
                        match (sf, st) {
                            (1, 5) => h.num_values = self.i32()?,
                            (2, 5) => h.encoding = self.i32()?,
                            _ => self.skip(st, 1)?,
                        }
                    }
                }
                _ => self.skip(t, 0)?,
            }
        }
        if h.compressed < 0 || h.num_values < 0 {
            return Err("page header lacks sizes or a data page header".into());
        }
        Ok(h)
    }
}

#[cfg(test)]
mod hostile_tests {
    use super::*;

    /// A page header holding a list of 2^62 bools skipped nothing per element: a request spun on it.
    #[test]
    fn huge_counts_in_a_page_header_are_errors_not_loops() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // field 7 (delta 7), type list (9); list header: size 15 (varint follows), element type bool (1).
            let mut bool_list = vec![0x79, 0xf1];
            bool_list.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f]);
            bool_list.push(0);
            // field 7, type map (11) with a huge count.
            let mut map = vec![0x7b];
            map.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0x11, 0]);
            let results: Vec<bool> =
                [bool_list, map].iter().map(|b| decode_chunk(b, 0..b.len(), &mut Vec::new()).is_err()).collect();
            let _ = tx.send(results);
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("decoding a hostile header hung");
        assert_eq!(got, vec![true, true]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let buf: Vec<u8> = (0..len % 97)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 56) as u8
                })
                .collect();
            let _ = decode_chunk(&buf, 0..buf.len(), &mut Vec::new());
        }
    }
}
