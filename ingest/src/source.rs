//! Input files and their formats. The text format is the assignment's: `<key> <value>\n`, ONE space, the
//! value is every byte up to the newline (spaces, tabs, `\r`, non-UTF-8 all kept; the last line may lack its
//! newline). JSON Lines (`{"key": .., "value": ..}`) and CSV with a `key,value` header go through arrow's
//! readers, Parquet through parquet_input.rs. Text formats may be gzip or zstd compressed and come from an
//! object store: line numbers are those of the decompressed file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use arrow_schema::{DataType, Field, Schema};
use tokio::runtime::Handle;

use crate::error::IngestError;
use crate::input::{Compression, InputFile, InputFormat, Location};
use crate::object_read::ObjectRead;
use crate::record::{Columns, Emit, MAX_VALUE_LEN, Problems, check_record};

/// Longest text line read: a key at its limit, a space, a value at its limit, the newline.
const MAX_LINE: usize = cairn_shared::key::MAX_KEY_LEN + 1 + MAX_VALUE_LEN + 1;

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

/// Counts the stored bytes read, for progress by bytes over all sources.
struct Counted<'a, R> {
    inner: R,
    pending: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pending += n as u64;
        if self.pending >= 1 << 20 || n == 0 {
            (self.progress)(std::mem::take(&mut self.pending));
        }
        Ok(n)
    }
}

/// The decompressed bytes of a text input, wherever it is.
fn open_text<'a>(
    file: &InputFile,
    handle: &Handle,
    progress: &'a mut dyn FnMut(u64),
) -> Result<Box<dyn BufRead + 'a>, IngestError> {
    let raw: Box<dyn Read + Send> = match &file.location {
        Location::Local(p) => {
            Box::new(File::open(p).map_err(IngestError::io(format!("cannot read {}", file.path.display())))?)
        }
        Location::Object(o) => Box::new(ObjectRead::new(o.clone(), handle.clone())),
    };
    let counted = Counted { inner: raw, pending: 0, progress };
    Ok(match file.compression {
        Compression::None => Box::new(BufReader::with_capacity(1 << 20, counted)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, counted)),
        )),
        Compression::Zstd => Box::new(BufReader::with_capacity(
            1 << 20,
            zstd::stream::read::Decoder::new(counted)
                .map_err(IngestError::io(format!("cannot start decompressing {}", file.path.display())))?,
        )),
    })
}

/// Reads every record of `file`, calling `emit(key, value, line)` (a Parquet row number for Parquet); bad
/// records go to `problems`. `progress(bytes)` is called as stored bytes are consumed.
pub fn read_records(
    file: &InputFile,
    columns: &Columns,
    handle: &Handle,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), IngestError> {
    if file.format == InputFormat::Parquet {
        return crate::parquet_input::read_parquet(file, columns, handle, problems, emit, progress);
    }
    let value_column = match file.format {
        InputFormat::Text if *columns != Columns::default() => {
            return Err(IngestError::Invalid(format!(
                "{} is read as `<key> <value>` text (by its name), which has no columns: --key-column, \
                 --value-column and --value-columns apply to Parquet, CSV and JSON Lines (say which with --format)",
                file.path.display()
            )));
        }
        InputFormat::Text => "value",
        _ => columns.single_value(file)?,
    };
    let ctx = || format!("cannot read {}", file.path.display());
    let mut r = open_text(file, handle, progress)?;
    match file.format {
        InputFormat::Text | InputFormat::Parquet => {
            let mut line = Vec::with_capacity(256);
            let mut n = 0u64;
            loop {
                line.clear();
                // At most one record's worth of a line is held: a longer one is skipped to its newline.
                let got =
                    (&mut r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).map_err(IngestError::io(ctx()))?;
                if got == 0 {
                    break;
                }
                n += 1;
                if got > MAX_LINE && !line.ends_with(b"\n") {
                    r.skip_until(b'\n').map_err(IngestError::io(ctx()))?;
                    problems.add(
                        &file.path,
                        n,
                        format!("line longer than {MAX_LINE} bytes (the key and value limits)"),
                    );
                    if problems.full() {
                        break;
                    }
                    continue;
                }
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                match parse_line(body) {
                    Ok((k, v)) => emit(k, v, n),
                    Err(why) => {
                        problems.add(&file.path, n, why);
                        if problems.full() {
                            break;
                        }
                    }
                }
            }
        }
        InputFormat::JsonLines => {
            let schema = Arc::new(Schema::new(vec![
                Field::new(&columns.key, DataType::Utf8, true),
                Field::new(value_column, DataType::Utf8, true),
            ]));
            let reader = arrow_json::ReaderBuilder::new(schema)
                .with_batch_size(4096)
                .build(r)
                .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.path.display())))?;
            emit_batches(file, reader, 0, (&columns.key, value_column), problems, emit)?;
        }
        InputFormat::Csv => {
            let mut header = Vec::new();
            r.read_until(b'\n', &mut header).map_err(IngestError::io(ctx()))?;
            let format = arrow_csv::reader::Format::default().with_header(true);
            let (head, _) = format.infer_schema(std::io::Cursor::new(&header), Some(0)).map_err(|e| {
                IngestError::Invalid(format!("{}: cannot read the CSV header: {e}", file.path.display()))
            })?;
            let names: Vec<&String> = head.fields().iter().map(|f| f.name()).collect();
            let (Some(ki), Some(vi)) =
                (names.iter().position(|n| **n == columns.key), names.iter().position(|n| *n == value_column))
            else {
                problems.add(
                    &file.path,
                    1,
                    format!("CSV header must name a {:?} and a {value_column:?} column, found {names:?}", columns.key),
                );
                return Ok(());
            };
            let all_text = Arc::new(Schema::new(
                names.iter().map(|n| Field::new(n.as_str(), DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            let reader = arrow_csv::ReaderBuilder::new(all_text)
                .with_header(false)
                .with_batch_size(4096)
                .with_projection(vec![ki, vi])
                .build_buffered(r)
                .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.path.display())))?;
            emit_batches(file, reader, 1, (&columns.key, value_column), problems, emit)?;
        }
    }
    Ok(())
}

/// Feeds (key, value) string batches; `header_lines` shifts record numbers to line numbers.
fn emit_batches(
    file: &InputFile,
    reader: impl Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>,
    header_lines: u64,
    (key, value): (&str, &str),
    problems: &mut Problems,
    emit: &mut Emit<'_>,
) -> Result<(), IngestError> {
    let mut line = header_lines;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            // The store or the disk failed, not the data: not bad input (which would discard the run).
            Err(arrow_schema::ArrowError::IoError(_, e)) => {
                return Err(IngestError::Io { context: format!("cannot read {}", file.path.display()), source: e });
            }
            Err(e) => {
                problems.add(&file.path, line + 1, format!("unreadable record: {e}"));
                return Ok(());
            }
        };
        let col = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().cloned();
        let (Some(keys), Some(values)) = (col(0), col(1)) else {
            return Err(IngestError::Invalid(format!("{}: {key} and {value} must be strings", file.path.display())));
        };
        for i in 0..batch.num_rows() {
            line += 1;
            if keys.is_null(i) {
                problems.add(&file.path, line, format!("missing {key:?}"));
            } else if values.is_null(i) {
                problems.add(&file.path, line, format!("missing {value:?}"));
            } else {
                let (k, v) = (keys.value(i).as_bytes(), values.value(i).as_bytes());
                match check_record(k, v) {
                    Ok(()) => emit(k, v, line),
                    Err(why) => problems.add(&file.path, line, why),
                }
            }
            if problems.full() {
                return Ok(());
            }
        }
    }
    Ok(())
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
