//! A spilled run on disk: records in (shard, key) order, each `[klen u32][vlen u32][file u32][shard u32]
//! [line u64] key value` (little-endian), then a footer of `shards + 1` u64 offsets, `offsets[s]` being where
//! shard s's records start. Nothing but the path and two numbers stays in memory per run: a cursor reads the
//! two offsets it needs from the footer when it opens.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::run::{Cursor, Record, Run};

const HEAD: usize = 24;

pub struct RunWriter {
    w: BufWriter<File>,
    path: PathBuf,
    shards: u32,
    offsets: Vec<u64>,
    pos: u64,
}

impl RunWriter {
    pub fn create(path: PathBuf, shards: u32) -> io::Result<RunWriter> {
        let w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Ok(RunWriter { w, path, shards, offsets: Vec::with_capacity(shards as usize + 1), pos: 0 })
    }

    /// Appends a record; records must come in (shard, key) order.
    pub fn push(&mut self, rec: &Record<'_>) -> io::Result<()> {
        debug_assert!(rec.shard < self.shards && self.offsets.len() <= rec.shard as usize + 1);
        while self.offsets.len() <= rec.shard as usize {
            self.offsets.push(self.pos);
        }
        let mut head = [0u8; HEAD];
        head[0..4].copy_from_slice(&(rec.key.len() as u32).to_le_bytes());
        head[4..8].copy_from_slice(&(rec.value.len() as u32).to_le_bytes());
        head[8..12].copy_from_slice(&rec.file.to_le_bytes());
        head[12..16].copy_from_slice(&rec.shard.to_le_bytes());
        head[16..24].copy_from_slice(&rec.line.to_le_bytes());
        self.w.write_all(&head)?;
        self.w.write_all(rec.key)?;
        self.w.write_all(rec.value)?;
        self.pos += (HEAD + rec.key.len() + rec.value.len()) as u64;
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<Run> {
        while self.offsets.len() <= self.shards as usize {
            self.offsets.push(self.pos);
        }
        for o in &self.offsets {
            self.w.write_all(&o.to_le_bytes())?;
        }
        self.w.flush()?;
        Ok(Run::File { path: self.path, bytes: self.pos, shards: self.shards })
    }
}

pub struct FileCursor {
    reader: BufReader<io::Take<File>>,
    key: Vec<u8>,
    value: Vec<u8>,
    file: u32,
    shard: u32,
    line: u64,
    valid: bool,
}

impl FileCursor {
    /// Opens the section of `shards` of the run file at `path` (`bytes` of records, `n` shards).
    pub fn open(path: &Path, bytes: u64, n: u32, shards: Range<u32>, buf: usize) -> io::Result<FileCursor> {
        assert!(shards.start <= shards.end && shards.end <= n, "shards {shards:?} of a run of {n}");
        let mut f = File::open(path)?;
        let offset = |s: u32| -> io::Result<u64> {
            let mut b = [0u8; 8];
            f.read_exact_at(&mut b, bytes + 8 * s as u64)?;
            Ok(u64::from_le_bytes(b))
        };
        let (start, end) = (offset(shards.start)?, offset(shards.end)?);
        if start > end || end > bytes {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: damaged footer", path.display())));
        }
        f.seek(SeekFrom::Start(start))?;
        let mut c = FileCursor {
            reader: BufReader::with_capacity(buf, f.take(end - start)),
            key: Vec::new(),
            value: Vec::new(),
            file: 0,
            shard: 0,
            line: 0,
            valid: false,
        };
        c.advance()?;
        Ok(c)
    }
}

impl Cursor for FileCursor {
    fn current(&self) -> Option<Record<'_>> {
        self.valid.then_some(Record {
            shard: self.shard,
            key: &self.key,
            value: &self.value,
            file: self.file,
            line: self.line,
        })
    }

    fn advance(&mut self) -> io::Result<()> {
        let mut head = [0u8; HEAD];
        match self.reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.valid = false;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
        let (klen, vlen) = (u32_at(0) as usize, u32_at(4) as usize);
        self.file = u32_at(8);
        self.shard = u32_at(12);
        self.line = u64::from_le_bytes(head[16..24].try_into().expect("8 bytes"));
        self.key.resize(klen, 0);
        self.reader.read_exact(&mut self.key)?;
        self.value.resize(vlen, 0);
        self.reader.read_exact(&mut self.value)?;
        self.valid = true;
        Ok(())
    }
}
