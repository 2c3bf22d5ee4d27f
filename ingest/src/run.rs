//! Sorted runs. Records are buffered in a [`Chunk`] (one arena plus fixed-size record headers) up to a byte
//! budget, sorted by (shard, key), then either kept in memory (the last chunk) or spilled to a temp file
//! with one section per shard, so the merge for shard `s` reads only its section of every run.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Bytes of bookkeeping per record, counted against the memory budget.
const REC_OVERHEAD: usize = std::mem::size_of::<Rec>();

#[derive(Debug, Clone, Copy)]
struct Rec {
    shard: u32,
    file: u32,
    off: u32,
    klen: u32,
    vlen: u32,
    line: u64,
}

/// One record as the merge sees it.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub file: u32,
    pub line: u64,
}

#[derive(Default)]
pub struct Chunk {
    data: Vec<u8>,
    recs: Vec<Rec>,
}

impl Chunk {
    pub fn with_capacity(bytes: usize) -> Self {
        Chunk { data: Vec::with_capacity(bytes), recs: Vec::with_capacity(bytes / 128) }
    }

    pub fn push(&mut self, shard: u32, key: &[u8], value: &[u8], file: u32, line: u64) {
        let off = self.data.len() as u32;
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.recs.push(Rec { shard, file, off, klen: key.len() as u32, vlen: value.len() as u32, line });
    }

    /// Bytes held, bookkeeping included.
    pub fn footprint(&self) -> usize {
        self.data.len() + self.recs.len() * REC_OVERHEAD
    }

    pub fn len(&self) -> usize {
        self.recs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recs.is_empty()
    }

    #[inline]
    fn key(&self, r: &Rec) -> &[u8] {
        &self.data[r.off as usize..(r.off + r.klen) as usize]
    }

    fn record(&self, r: &Rec) -> Record<'_> {
        let k = r.off as usize + r.klen as usize;
        Record {
            key: &self.data[r.off as usize..k],
            value: &self.data[k..k + r.vlen as usize],
            file: r.file,
            line: r.line,
        }
    }

    /// Sorts by (shard, key) and turns the chunk into an in-memory run.
    pub fn into_run(mut self, shards: u32) -> Run {
        let mut recs = std::mem::take(&mut self.recs);
        recs.sort_unstable_by(|a, b| a.shard.cmp(&b.shard).then_with(|| self.key(a).cmp(self.key(b))));
        self.recs = recs;
        let mut ranges = Vec::with_capacity(shards as usize);
        let mut start = 0;
        for s in 0..shards {
            let end = start + self.recs[start..].partition_point(|r| r.shard == s);
            ranges.push(start..end);
            start = end;
        }
        Run::Memory { chunk: self, ranges }
    }
}

/// A sorted run, in memory or in a spill file.
pub enum Run {
    Memory {
        chunk: Chunk,
        ranges: Vec<Range<usize>>,
    },
    /// `offsets[s]..offsets[s+1]` is shard s's section.
    File {
        path: PathBuf,
        offsets: Vec<u64>,
    },
}

impl Run {
    /// Writes a memory run to `dir` and returns the file-backed run (frees the chunk).
    pub fn spill(self, dir: &Path, id: usize) -> io::Result<Run> {
        let Run::Memory { chunk, ranges } = self else { return Ok(self) };
        let path = dir.join(format!("run-{id:05}.bin"));
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut offsets = Vec::with_capacity(ranges.len() + 1);
        let mut pos = 0u64;
        for range in &ranges {
            offsets.push(pos);
            for r in &chunk.recs[range.clone()] {
                let rec = chunk.record(r);
                w.write_all(&r.klen.to_le_bytes())?;
                w.write_all(&r.vlen.to_le_bytes())?;
                w.write_all(&r.file.to_le_bytes())?;
                w.write_all(&r.line.to_le_bytes())?;
                w.write_all(rec.key)?;
                w.write_all(rec.value)?;
                pos += 20 + rec.key.len() as u64 + rec.value.len() as u64;
            }
        }
        offsets.push(pos);
        w.flush()?;
        Ok(Run::File { path, offsets })
    }

    /// Records of one shard, in key order.
    pub fn cursor(&self, shard: u32) -> io::Result<Box<dyn Cursor + '_>> {
        match self {
            Run::Memory { chunk, ranges } => {
                let r = ranges[shard as usize].clone();
                Ok(Box::new(MemCursor { chunk, pos: r.start, end: r.end }))
            }
            Run::File { path, offsets } => {
                let (start, end) = (offsets[shard as usize], offsets[shard as usize + 1]);
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(start))?;
                let mut c = FileCursor {
                    reader: BufReader::with_capacity(256 << 10, f.take(end - start)),
                    key: Vec::new(),
                    value: Vec::new(),
                    file: 0,
                    line: 0,
                    valid: false,
                };
                c.advance()?;
                Ok(Box::new(c))
            }
        }
    }
}

pub trait Cursor {
    fn current(&self) -> Option<Record<'_>>;
    fn advance(&mut self) -> io::Result<()>;
}

struct MemCursor<'a> {
    chunk: &'a Chunk,
    pos: usize,
    end: usize,
}

impl Cursor for MemCursor<'_> {
    fn current(&self) -> Option<Record<'_>> {
        (self.pos < self.end).then(|| self.chunk.record(&self.chunk.recs[self.pos]))
    }

    fn advance(&mut self) -> io::Result<()> {
        self.pos += 1;
        Ok(())
    }
}

struct FileCursor {
    reader: BufReader<io::Take<File>>,
    key: Vec<u8>,
    value: Vec<u8>,
    file: u32,
    line: u64,
    valid: bool,
}

impl Cursor for FileCursor {
    fn current(&self) -> Option<Record<'_>> {
        self.valid.then_some(Record { key: &self.key, value: &self.value, file: self.file, line: self.line })
    }

    fn advance(&mut self) -> io::Result<()> {
        let mut head = [0u8; 20];
        match self.reader.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.valid = false;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes")) as usize;
        let (klen, vlen) = (u32_at(0), u32_at(4));
        self.file = u32_at(8) as u32;
        self.line = u64::from_le_bytes(head[12..20].try_into().expect("8 bytes"));
        self.key.resize(klen, 0);
        self.reader.read_exact(&mut self.key)?;
        self.value.resize(vlen, 0);
        self.reader.read_exact(&mut self.value)?;
        self.valid = true;
        Ok(())
    }
}
