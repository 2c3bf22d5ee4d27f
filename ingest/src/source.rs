//! Input files and their formats. The text format is the assignment's: `<key> <value>\n`, ONE space, the
//! value is every byte up to the newline (spaces, tabs, `\r`, non-UTF-8 all kept; the last line may lack its
//! newline). JSON Lines (`{"key": .., "value": ..}`) and CSV with a `key,value` header go through arrow's
//! readers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cairn_shared::key::key_problem;
use xxhash_rust::xxh3::Xxh3;

use crate::error::{IngestError, InputError};

/// Largest value accepted: a Lambda function URL response is at most 6 MB, base64 adds a third.
pub const MAX_VALUE_LEN: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Text,
    JsonLines,
    Csv,
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" | "txt" => Ok(InputFormat::Text),
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::JsonLines),
            "csv" => Ok(InputFormat::Csv),
            _ => Err(format!("unknown format {s:?} (text, jsonl or csv)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct InputFile {
    pub path: PathBuf,
    pub format: InputFormat,
    pub size: u64,
}

/// The files to ingest: `path` itself, or every regular file below a directory (sorted, skipping names
/// starting with `.` or `_`). The format comes from `format` or the extension (.jsonl/.ndjson/.json, .csv,
/// anything else is text).
pub fn list_inputs(path: &Path, format: Option<InputFormat>) -> Result<Vec<InputFile>, IngestError> {
    let meta = std::fs::metadata(path).map_err(IngestError::io(format!("cannot read {}", path.display())))?;
    let mut paths = Vec::new();
    if meta.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(IngestError::io(format!("cannot list {}", dir.display())))? {
                let entry = entry.map_err(IngestError::io(format!("cannot list {}", dir.display())))?;
                let name = entry.file_name();
                if name.to_string_lossy().starts_with(['.', '_']) {
                    continue;
                }
                let ft =
                    entry.file_type().map_err(IngestError::io(format!("cannot stat {}", entry.path().display())))?;
                if ft.is_dir() {
                    stack.push(entry.path());
                } else if ft.is_file() {
                    paths.push(entry.path());
                }
            }
        }
        paths.sort();
        if paths.is_empty() {
            return Err(IngestError::Invalid(format!("{} holds no input files", path.display())));
        }
    } else {
        paths.push(path.to_path_buf());
    }
    paths
        .into_iter()
        .map(|p| {
            let size = std::fs::metadata(&p).map_err(IngestError::io(format!("cannot stat {}", p.display())))?.len();
            let format = format.unwrap_or_else(|| match p.extension().and_then(|e| e.to_str()) {
                Some("jsonl" | "ndjson" | "json") => InputFormat::JsonLines,
                Some("csv") => InputFormat::Csv,
                _ => InputFormat::Text,
            });
            Ok(InputFile { path: p, format, size })
        })
        .collect()
}

/// `xxh3-64:<hex>` over each file's name and contents, in order: identifies a dataset whatever its path or
/// modification time, so re-serving the same file reuses the published version and a rerun resumes.
pub fn fingerprint(files: &[InputFile]) -> Result<String, IngestError> {
    let mut all = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let name = f.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        all.update(name.as_bytes());
        all.update(&[0]);
        let mut file = File::open(&f.path).map_err(IngestError::io(format!("cannot open {}", f.path.display())))?;
        let mut one = Xxh3::new();
        loop {
            let n = file.read(&mut buf).map_err(IngestError::io(format!("cannot read {}", f.path.display())))?;
            if n == 0 {
                break;
            }
            one.update(&buf[..n]);
        }
        all.update(&one.digest().to_le_bytes());
    }
    Ok(cairn_shared::manifest::checksum_label(all.digest()))
}

/// Collects bad-input reports up to a limit.
pub struct Problems {
    pub list: Vec<InputError>,
    limit: usize,
}

impl Problems {
    pub fn new(limit: usize) -> Self {
        Problems { list: Vec::new(), limit }
    }

    pub fn add(&mut self, file: &Path, line: u64, message: impl Into<String>) {
        if self.list.len() < self.limit {
            self.list.push(InputError { file: file.to_path_buf(), line, message: message.into() });
        }
    }

    pub fn full(&self) -> bool {
        self.list.len() >= self.limit
    }
}

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

fn check_record(key: &[u8], value: &[u8]) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty key (the line starts with a space)".into());
    }
    if let Some(why) = key_problem(key) {
        return Err(format!("invalid key: {why}"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(format!("value is {} bytes, the limit is {MAX_VALUE_LEN}", value.len()));
    }
    Ok(())
}

/// Receives (key, value, line) for each good record.
pub type Emit<'a> = dyn FnMut(&[u8], &[u8], u64) + 'a;

/// Reads every record of `file`, calling `emit(key, value, line)`; bad records go to `problems`.
/// `progress(bytes)` is called as input is consumed.
pub fn read_records(
    file: &InputFile,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(), IngestError> {
    let ctx = || format!("cannot read {}", file.path.display());
    let f = File::open(&file.path).map_err(IngestError::io(ctx()))?;
    match file.format {
        InputFormat::Text => {
            let mut r = BufReader::with_capacity(1 << 20, f);
            let mut line = Vec::with_capacity(256);
            let mut n = 0u64;
            let mut pending = 0u64;
            loop {
                line.clear();
                let got = r.read_until(b'\n', &mut line).map_err(IngestError::io(ctx()))?;
                if got == 0 {
                    break;
                }
                n += 1;
                pending += got as u64;
                if pending >= 1 << 20 {
                    progress(pending);
                    pending = 0;
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
            progress(pending);
        }
        InputFormat::JsonLines => {
            let schema = Arc::new(Schema::new(vec![
                Field::new("key", DataType::Utf8, true),
                Field::new("value", DataType::Utf8, true),
            ]));
            let reader = arrow_json::ReaderBuilder::new(schema)
                .with_batch_size(4096)
                .build(BufReader::with_capacity(1 << 20, f))
                .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.path.display())))?;
            emit_batches(file, reader, 0, problems, emit)?;
            progress(file.size);
        }
        InputFormat::Csv => {
            let mut f = f;
            let format = arrow_csv::reader::Format::default().with_header(true);
            let (header, _) = format.infer_schema(&mut f, Some(0)).map_err(|e| {
                IngestError::Invalid(format!("{}: cannot read the CSV header: {e}", file.path.display()))
            })?;
            let names: Vec<&String> = header.fields().iter().map(|f| f.name()).collect();
            let (Some(ki), Some(vi)) =
                (names.iter().position(|n| *n == "key"), names.iter().position(|n| *n == "value"))
            else {
                problems.add(
                    &file.path,
                    1,
                    format!("CSV header must name a `key` and a `value` column, found {names:?}"),
                );
                return Ok(());
            };
            f.rewind().map_err(IngestError::io(ctx()))?;
            let all_text = Arc::new(Schema::new(
                names.iter().map(|n| Field::new(n.as_str(), DataType::Utf8, true)).collect::<Vec<_>>(),
            ));
            let reader = arrow_csv::ReaderBuilder::new(all_text)
                .with_header(true)
                .with_batch_size(4096)
                .with_projection(vec![ki, vi])
                .build(BufReader::with_capacity(1 << 20, f))
                .map_err(|e| IngestError::Invalid(format!("{}: {e}", file.path.display())))?;
            emit_batches(file, reader, 1, problems, emit)?;
            progress(file.size);
        }
    }
    Ok(())
}

/// Feeds (key, value) string batches; `header_lines` shifts record numbers to line numbers.
fn emit_batches(
    file: &InputFile,
    reader: impl Iterator<Item = Result<arrow_array::RecordBatch, arrow_schema::ArrowError>>,
    header_lines: u64,
    problems: &mut Problems,
    emit: &mut Emit<'_>,
) -> Result<(), IngestError> {
    let mut line = header_lines;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                problems.add(&file.path, line + 1, format!("unreadable record: {e}"));
                return Ok(());
            }
        };
        let col = |i: usize| batch.column(i).as_any().downcast_ref::<StringArray>().cloned();
        let (Some(keys), Some(values)) = (col(0), col(1)) else {
            return Err(IngestError::Invalid(format!("{}: key and value must be strings", file.path.display())));
        };
        for i in 0..batch.num_rows() {
            line += 1;
            if keys.is_null(i) {
                problems.add(&file.path, line, "missing \"key\"");
            } else if values.is_null(i) {
                problems.add(&file.path, line, "missing \"value\"");
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
