//! CSV input: a header naming the key and value columns, then one record per row (RFC 4180 quoting; a
//! quoted field may span lines). Fields are bytes: the key is checked like any key, the value stored as it
//! is (an empty field is an empty value). Problems are reported at the line where the record starts. A
//! record is held whole, so its size is bounded: a quote that is never closed would make the rest of the
//! file one record.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::error::IngestError;
use crate::input::InputFile;
use crate::record::{Emit, MAX_LINE, Problems, check_record};
use crate::text_input::TextInput;

/// Longest CSV record read: a key and a value at their limits, quoted (doubled quotes), with room to spare.
const MAX_RECORD: u64 = 2 * MAX_LINE as u64 + (1 << 20);

/// Counts the bytes the CSV reader takes since the last record ended (plus its read-ahead buffer) and fails
/// the read past [`MAX_RECORD`].
struct RecordLimit<R> {
    inner: R,
    since: Rc<Cell<u64>>,
    over: Rc<Cell<bool>>,
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since.get() > MAX_RECORD {
            self.over.set(true);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "CSV record too long"));
        }
        let n = self.inner.read(buf)?;
        self.since.set(self.since.get() + n as u64);
        Ok(n)
    }
}

pub fn read(
    file: &InputFile,
    input: &mut TextInput<'_>,
    (key, value): (&str, &str),
    problems: &mut Problems,
    emit: &mut Emit<'_>,
) -> Result<(), IngestError> {
    let (since, over) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(false)));
    let limited = RecordLimit { inner: &mut input.reader, since: since.clone(), over: over.clone() };
    let mut rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(limited);
    let mut rec = csv::ByteRecord::new();
    // The line after the last record read whole: where a failed read is reported from.
    let mut good = 0u64;
    let mut columns: Option<(usize, usize, usize)> = None;
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(e) => {
                if !matches!(e.kind(), csv::ErrorKind::Io(_)) {
                    let line = e.position().map_or(good, |p| p.line());
                    problems.add(&file.path, line, format!("unreadable CSV: {e}"));
                    return Ok(());
                }
                let csv::ErrorKind::Io(io) = e.into_kind() else { unreachable!("matched above") };
                drop(rdr);
                if over.get() {
                    let why = format!("a record longer than {MAX_RECORD} bytes (a quote never closed?)");
                    problems.add(&file.path, good + 1, why);
                    return Ok(());
                }
                return input.failure(file, io, good, problems);
            }
        }
        since.set(0);
        let line = rec.position().map_or(good + 1, |p| p.line());
        good = rdr.position().line().saturating_sub(1);
        let Some((ki, vi, width)) = columns else {
            let mut names: Vec<String> = rec.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
            // A UTF-8 byte-order mark (spreadsheets write one) is not part of the first column's name.
            if let Some(first) = names.first_mut().and_then(|n| n.strip_prefix('\u{feff}').map(str::to_owned)) {
                names[0] = first;
            }
            let (Some(ki), Some(vi)) = (names.iter().position(|n| n == key), names.iter().position(|n| n == value))
            else {
                problems.add(
                    &file.path,
                    line,
                    format!("CSV header must name a {key:?} and a {value:?} column, found {names:?}"),
                );
                return Ok(());
            };
            columns = Some((ki, vi, names.len()));
            continue;
        };
        if rec.len() != width {
            problems.add(&file.path, line, format!("{} fields, the header has {width}", rec.len()));
        } else {
            let (k, v) = (&rec[ki], &rec[vi]);
            if k.is_empty() {
                problems.add(&file.path, line, format!("empty {key:?}"));
            } else {
                match check_record(k, v) {
                    Ok(()) => emit(k, Some(v), line, None),
                    Err(why) => problems.add(&file.path, line, why),
                }
            }
        }
        if problems.full() {
            return Ok(());
        }
    }
}
