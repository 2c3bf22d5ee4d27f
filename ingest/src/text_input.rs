//! The decompressed bytes of a text input (plain `<key> <value>`, JSON Lines, CSV), wherever it is stored,
//! and what a failed read of them means: the disk or the store failing is an I/O error (a rerun resumes);
//! the decompressor refusing the stored bytes (a truncated or damaged `.gz`/`.zst`) is bad input, reported
//! at the last good line.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use tokio::runtime::Handle;

use crate::error::IngestError;
use crate::input::{Compression, InputFile, Location};
use crate::object_read::ObjectRead;
use crate::record::Problems;

pub struct TextInput<'a> {
    pub reader: Box<dyn BufRead + 'a>,
    /// Set when reading the stored bytes failed (as opposed to decoding them).
    source_failed: Rc<Cell<bool>>,
    compression: Compression,
}

impl<'a> TextInput<'a> {
    /// Opens `file`; `progress(bytes)` is called as stored bytes are consumed.
    pub fn open(file: &InputFile, handle: &Handle, progress: &'a mut dyn FnMut(u64)) -> Result<Self, IngestError> {
        let raw: Box<dyn Read + Send> = match &file.location {
            Location::Local(p) => {
                Box::new(File::open(p).map_err(IngestError::io(format!("cannot read {}", file.path.display())))?)
            }
            Location::Object(o) => Box::new(ObjectRead::new(o.clone(), handle.clone())),
        };
        let source_failed = Rc::new(Cell::new(false));
        let counted = Counted { inner: raw, pending: 0, progress, failed: source_failed.clone() };
        let reader: Box<dyn BufRead + 'a> = match file.compression {
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
        };
        Ok(TextInput { reader, source_failed, compression: file.compression })
    }

    /// Drops a UTF-8 byte-order mark at the start (editors on Windows and spreadsheets save files with one):
    /// it is not part of the first key. Its three bytes are read one read at a time if need be (a
    /// decompressor may hand them over in pieces); what is not a mark is put back in front.
    pub fn skip_byte_order_mark(&mut self) -> io::Result<()> {
        const MARK: &[u8] = b"\xef\xbb\xbf";
        let mut head = Vec::with_capacity(MARK.len());
        while head.len() < MARK.len() && MARK.starts_with(&head) {
            let buf = match self.reader.fill_buf() {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => other?,
            };
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(MARK.len() - head.len());
            head.extend_from_slice(&buf[..n]);
            self.reader.consume(n);
        }
        if head != MARK {
            let rest = std::mem::replace(&mut self.reader, Box::new(io::empty()));
            self.reader = Box::new(io::Cursor::new(head).chain(rest));
        }
        Ok(())
    }

    /// Classifies a read error met after `good_line` complete lines: bad input (added to `problems`; reading
    /// this file ends) when the decompressor refused the bytes, else an I/O error.
    pub fn failure(
        &self,
        file: &InputFile,
        e: io::Error,
        good_line: u64,
        problems: &mut Problems,
    ) -> Result<(), IngestError> {
        let name = match self.compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "",
        };
        if name.is_empty() || self.source_failed.get() {
            return Err(IngestError::Io { context: format!("cannot read {}", file.path.display()), source: e });
        }
        let place = if good_line == 0 { "before the first line" } else { "after this line" };
        problems.add(&file.path, good_line, format!("truncated or damaged {name} data {place} ({e})"));
        Ok(())
    }
}

/// Counts the stored bytes read, for progress by bytes over all sources, and notes a failed read.
struct Counted<'a, R> {
    inner: R,
    pending: u64,
    progress: &'a mut dyn FnMut(u64),
    failed: Rc<Cell<bool>>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // An interrupted read is retried by the caller: not a failure of the source.
        let n = self.inner.read(buf).inspect_err(|e| self.failed.set(e.kind() != io::ErrorKind::Interrupted))?;
        self.pending += n as u64;
        if self.pending >= 1 << 20 || n == 0 {
            (self.progress)(std::mem::take(&mut self.pending));
        }
        Ok(n)
    }
}

/// One line of a text input.
pub enum Line {
    End,
    /// A line is in the buffer, with its `\n` if it had one.
    Read,
    /// A line longer than the limit, skipped to its newline.
    TooLong,
}

/// Reads the next line into `line`, holding at most `max + 1` bytes of it.
pub fn next_line(r: &mut dyn BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    let got = Read::take(&mut *r, max as u64 + 1).read_until(b'\n', line)?;
    if got == 0 {
        return Ok(Line::End);
    }
    if got > max && !line.ends_with(b"\n") {
        r.skip_until(b'\n')?;
        return Ok(Line::TooLong);
    }
    Ok(Line::Read)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is left to read after the mark is skipped, reading `input` `chunk` bytes at a time.
    fn after_mark(input: &[u8], chunk: usize) -> Vec<u8> {
        let reader = BufReader::with_capacity(chunk, io::Cursor::new(input.to_vec()));
        let mut t =
            TextInput { reader: Box::new(reader), source_failed: Rc::default(), compression: Compression::None };
        t.skip_byte_order_mark().unwrap();
        let mut rest = Vec::new();
        t.reader.read_to_end(&mut rest).unwrap();
        rest
    }

    #[test]
    fn a_byte_order_mark_is_skipped_however_it_is_read_and_anything_else_is_kept() {
        for chunk in [1, 2, 3, 64] {
            assert_eq!(after_mark(b"\xef\xbb\xbfk v\n", chunk), b"k v\n", "chunks of {chunk}");
            assert_eq!(after_mark(b"\xef\xbb\xbf", chunk), b"", "chunks of {chunk}");
            for kept in [&b"k v\n"[..], b"", b"k", b"\xef", b"\xef\xbb", b"\xef\xbbX rest\n", b"\xefk v\n"] {
                assert_eq!(after_mark(kept, chunk), kept, "{kept:?} in chunks of {chunk}");
            }
        }
    }
}
