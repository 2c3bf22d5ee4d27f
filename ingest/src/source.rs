//! Input files and their formats. The text format is the assignment's: `<key> <value>\n`, ONE space, the
//! value is every byte up to the newline (spaces, tabs, `\r`, non-UTF-8 all kept; the last line may lack its
//! newline). JSON Lines (jsonl_input.rs), CSV (csv_input.rs) and Parquet (parquet_input.rs) have their own
//! readers. Text formats may be gzip or zstd compressed and come from an object store (text_input.rs): line
//! numbers are those of the decompressed file, exact for every format.

use std::ops::Range;

use cairn_shared::format::ring::Placement;

use crate::error::IngestError;
use crate::input::{InputFile, InputFormat};
use crate::record::{Columns, Emit, MAX_LINE, Problems, ReadContext, check_record};
use crate::text_input::{Line, TextInput, next_line};

/// Splits one text line (without its `\n`) into key and value, or says what is wrong with it.
pub fn parse_line(line: &[u8]) -> Result<(&[u8], &[u8]), String> {
    if line.is_empty() {
        return Err("empty line (expected `<key> <value>`)".into());
    }
    let Some(sp) = memchr::memchr(b' ', line) else {
        return Err("no space between key and value (expected `<key> <value>`)".into());
    };
    let (key, value) = (&line[..sp], &line[sp + 1..]);
    check_record(key, value)?;
    Ok((key, value))
}

/// [`parse_line`] for a record of `<key> <value>` text: the value present.
fn parse_record_line(line: &[u8]) -> Result<(&[u8], Option<&[u8]>), String> {
    parse_line(line).map(|(k, v)| (k, Some(v)))
}

/// One line of a keys file (`cairn delete --keys-from`): the whole line is a key to delete (a trailing
/// `\r` dropped, so files written on Windows work).
fn parse_key_line(line: &[u8]) -> Result<(&[u8], Option<&[u8]>), String> {
    let key = line.strip_suffix(b"\r").unwrap_or(line);
    if key.is_empty() {
        return Err("empty line (expected one key per line)".into());
    }
    check_record(key, b"").map_err(|why| why.replace(" (the line starts with a space)", ""))?;
    Ok((key, None))
}

/// Reads every record of `file`, calling `emit(key, value, line, shard)` (a Parquet row number for
/// Parquet); bad records go to `problems`. `progress(bytes)` is called as stored bytes are consumed.
pub fn read_records(
    file: &InputFile,
    cx: &ReadContext<'_>,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), IngestError> {
    let (columns, handle) = (cx.columns, cx.handle);
    if file.format == InputFormat::Parquet {
        return crate::parquet_input::read_parquet(file, cx, problems, emit, progress);
    }
    let value_column = match file.format {
        InputFormat::Text | InputFormat::Keys if *columns != Columns::default() => {
            return Err(IngestError::Invalid(format!(
                "{} is read as `<key> <value>` text (by its name), which has no columns: --key-column, \
                 --value-column and --value-columns apply to Parquet, CSV and JSON Lines (say which with --format)",
                file.path.display()
            )));
        }
        InputFormat::Text | InputFormat::Keys => "value",
        _ => columns.single_value(file)?,
    };
    let mut input = TextInput::open(file, handle, progress)?;
    match file.format {
        InputFormat::Text | InputFormat::Keys | InputFormat::Parquet => {
            read_lines(file, &mut input, cx.placement, problems, emit)
        }
        InputFormat::JsonLines => {
            crate::jsonl_input::read(file, &mut input, (&columns.key, value_column), problems, emit)
        }
        InputFormat::Csv => crate::csv_input::read(file, &mut input, (&columns.key, value_column), problems, emit),
    }
}

/// `<key> <value>` lines.
fn read_lines(
    file: &InputFile,
    input: &mut TextInput<'_>,
    placement: &Placement,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
) -> Result<(), IngestError> {
    let parse_line = if file.format == InputFormat::Keys { parse_key_line } else { parse_record_line };
    let mut line = Vec::with_capacity(256);
    let mut n = 0u64;
    // The good lines of a batch (key and value as offsets into the reader's buffer, and the line number),
    // and their shards: placed together, which is faster per key (`Placement::shards_of`).
    let mut batch: Vec<(Range<usize>, Option<Range<usize>>, u64)> = Vec::new();
    let mut shards = Vec::new();
    if let Err(e) = input.skip_byte_order_mark() {
        return input.failure(file, e, 0, problems);
    }
    loop {
        // The lines whole in the reader's buffer are parsed where they lie; one that straddles the buffer's
        // end (or is too long) is copied out by `next_line`.
        let buf = match input.reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return input.failure(file, e, n, problems),
        };
        if buf.is_empty() {
            return Ok(());
        }
        let mut used = 0;
        batch.clear();
        while let Some(i) = memchr::memchr(b'\n', &buf[used..]).filter(|&i| i <= MAX_LINE) {
            n += 1;
            let body = &buf[used..used + i];
            match parse_line(body) {
                Ok((k, v)) => batch.push((offsets(buf, k), v.map(|v| offsets(buf, v)), n)),
                Err(why) => problems.add(&file.path, n, why),
            }
            used += i + 1;
            if problems.full() || batch.len() == LINE_BATCH {
                break;
            }
        }
        if used > 0 {
            placement.shards_of(batch.iter().map(|(k, _, _)| &buf[k.clone()]), &mut shards);
            for ((k, v, n), &shard) in batch.iter().zip(&shards) {
                emit(&buf[k.clone()], v.clone().map(|v| &buf[v]), *n, Some(shard));
            }
            input.reader.consume(used);
            if problems.full() {
                return Ok(());
            }
            continue;
        }
        let got = match next_line(&mut input.reader, &mut line, MAX_LINE) {
            Ok(l) => l,
            Err(e) => return input.failure(file, e, n, problems),
        };
        n += 1;
        match got {
            Line::End => return Ok(()),
            Line::TooLong => {
                problems.add(&file.path, n, format!("line longer than {MAX_LINE} bytes (the key and value limits)"))
            }
            Line::Read => {
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                match parse_line(body) {
                    Ok((k, v)) => emit(k, v, n, None),
                    Err(why) => problems.add(&file.path, n, why),
                }
            }
        }
        if problems.full() {
            return Ok(());
        }
    }
}

/// Lines placed together at most.
const LINE_BATCH: usize = 4096;

/// Where `part` lies in `buf` (of which it is a slice).
fn offsets(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse_line(b"k v"), Ok((&b"k"[..], &b"v"[..])));
        assert_eq!(parse_line(b"k "), Ok((&b"k"[..], &b""[..])));
        assert_eq!(parse_line(b"k  two  spaces \r"), Ok((&b"k"[..], &b" two  spaces \r"[..])));
        assert_eq!(parse_line(b"k \xff\xfe"), Ok((&b"k"[..], &b"\xff\xfe"[..])));
        assert!(parse_line(b"").unwrap_err().contains("empty line"));
        assert!(parse_line(b"nospace").unwrap_err().contains("no space"));
        assert!(parse_line(b" v").unwrap_err().contains("empty key"));
        assert!(parse_line(b"k\tx v").unwrap_err().contains("tab"));
    }
}
