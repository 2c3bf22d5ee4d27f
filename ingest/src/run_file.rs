//! A spilled run on disk: records in (shard, key) order, each `klen vlen file shard line` (LEB128 varints)
//! then key and value, packed into blocks of about [`BLOCK_BYTES`], each block zstd-compressed on its own
//! and written as `[compressed len u32][raw len u32][bytes]` (each frame with zstd's checksum: a run may
//! come back from a store); then a footer of one entry `(block offset u64, offset in the block u32, that
//! block's length u32, check u32)` per shard of the range it indexes plus one, entry s being where shard
//! s's records start (so a reader of a range of shards knows the bytes to fetch from two entries), its
//! check the low half of an XXH3 of the shard number and the rest (a damaged entry is found, not followed).
//! A whole run indexes every shard; a slice of one (a bulk load's reducer fetches only its shards,
//! `staged_merge.rs`) only its own. Spilled data
//! is written once and read once: compressing it halves what a large ingest moves through the disk, which
//! is what bounds it. Nothing but the path and two numbers stays in memory per run: a cursor reads the entry
//! it needs from the footer when it opens, and stops at the first record past its shards.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::cursor::{Cursor, Record};

/// Uncompressed bytes per block: what a cursor holds (twice: compressed and not) per run it reads.
pub const BLOCK_BYTES: usize = 64 << 10;
/// zstd's fastest regular level: a spilled run is read back once, soon.
const LEVEL: i32 = 1;
pub const ENTRY: u64 = 20;
/// A block's header: compressed and raw lengths.
pub const BLOCK_HEAD: u64 = 8;

/// A finished run file: where it is, its bytes of blocks (the footer follows), and the shards it indexes.
pub struct RunFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub shards: Range<u32>,
}

pub struct RunWriter {
    w: BufWriter<File>,
    path: PathBuf,
    /// The shards the footer indexes (every record's shard is in it).
    shards: Range<u32>,
    /// Where each shard so far starts, from `shards.start` (a start's block length is filled in when that
    /// block is written).
    starts: Vec<Start>,
    block: Vec<u8>,
    packed: Vec<u8>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Bytes written to the file so far (the next block's offset).
    pos: u64,
}

impl RunWriter {
    pub fn create(path: PathBuf, shards: Range<u32>) -> io::Result<RunWriter> {
        let w = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut compressor = zstd::bulk::Compressor::new(LEVEL)?;
        compressor.set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))?;
        Ok(RunWriter {
            w,
            path,
            starts: Vec::with_capacity(shards.len() + 1),
            shards,
            block: Vec::with_capacity(BLOCK_BYTES + 4096),
            packed: Vec::new(),
            compressor,
            pos: 0,
        })
    }

    /// Appends a record; records must come in (shard, key) order.
    pub fn push(&mut self, rec: &Record<'_>) -> io::Result<()> {
        debug_assert!(self.shards.contains(&rec.shard));
        let at = (rec.shard - self.shards.start) as usize;
        debug_assert!(self.starts.len() <= at + 1);
        while self.starts.len() <= at {
            self.starts.push(Start { block: self.pos, at: self.block.len() as u32, len: 0 });
        }
        for n in [rec.key.len() as u64, rec.value.len() as u64, rec.file as u64, rec.shard as u64, rec.line] {
            put_varint(&mut self.block, n);
        }
        self.block.extend_from_slice(rec.key);
        self.block.extend_from_slice(rec.value);
        if self.block.len() >= BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(())
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.packed.clear();
        self.packed.reserve(zstd::zstd_safe::compress_bound(self.block.len()));
        self.compressor.compress_to_buffer(&self.block, &mut self.packed)?;
        self.w.write_all(&(self.packed.len() as u32).to_le_bytes())?;
        self.w.write_all(&(self.block.len() as u32).to_le_bytes())?;
        self.w.write_all(&self.packed)?;
        // The starts in this block are the last ones recorded.
        let len = (BLOCK_HEAD as usize + self.packed.len()) as u32;
        for s in self.starts.iter_mut().rev().take_while(|s| s.block == self.pos) {
            s.len = len;
        }
        self.pos += BLOCK_HEAD + self.packed.len() as u64;
        self.block.clear();
        Ok(())
    }

    pub fn finish(mut self) -> io::Result<RunFile> {
        self.flush_block()?;
        while self.starts.len() <= self.shards.len() {
            self.starts.push(Start { block: self.pos, at: 0, len: 0 });
        }
        let mut footer = Vec::with_capacity(self.starts.len() * ENTRY as usize);
        for (s, start) in (self.shards.start..).zip(&self.starts) {
            put_footer_entry(&mut footer, s, *start);
        }
        self.w.write_all(&footer)?;
        self.w.flush()?;
        Ok(RunFile { path: self.path, bytes: self.pos, shards: self.shards })
    }
}

/// Where a shard's records start: a block's offset and the offset in it, and the block's length (header
/// included; 0 for the end of the blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub block: u64,
    pub at: u32,
    pub len: u32,
}

fn entry_check(shard: u32, e: &Start) -> u32 {
    let mut b = [0u8; 20];
    b[..4].copy_from_slice(&shard.to_le_bytes());
    b[4..12].copy_from_slice(&e.block.to_le_bytes());
    b[12..16].copy_from_slice(&e.at.to_le_bytes());
    b[16..].copy_from_slice(&e.len.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&b) as u32
}

/// Shard `shard`'s footer entry; None if it is damaged.
pub fn footer_entry(entry: &[u8], shard: u32) -> Option<Start> {
    let word = |i: usize| u32::from_le_bytes(entry[i..i + 4].try_into().expect("4 bytes"));
    let e = Start { block: u64::from_le_bytes(entry[..8].try_into().expect("8 bytes")), at: word(8), len: word(12) };
    (word(16) == entry_check(shard, &e)).then_some(e)
}

pub fn put_footer_entry(out: &mut Vec<u8>, shard: u32, e: Start) {
    out.extend_from_slice(&e.block.to_le_bytes());
    out.extend_from_slice(&e.at.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
    out.extend_from_slice(&entry_check(shard, &e).to_le_bytes());
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

pub struct FileCursor {
    path: PathBuf,
    file: File,
    /// Where the blocks end (the footer starts).
    end: u64,
    /// The next block's offset.
    next: u64,
    packed: Vec<u8>,
    block: Vec<u8>,
    at: usize,
    stop: u32,
    decompressor: zstd::bulk::Decompressor<'static>,
    /// The current record: key and value are ranges of `block`.
    key: Range<usize>,
    value: Range<usize>,
    file_index: u32,
    shard: u32,
    line: u64,
    valid: bool,
}

fn damaged(path: &Path, why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: damaged run file ({why})", path.display()))
}

impl FileCursor {
    /// Opens the records of `shards` of the run file at `path` (`bytes` of blocks, a footer indexing
    /// `indexed`).
    pub fn open(path: &Path, bytes: u64, indexed: &Range<u32>, shards: Range<u32>) -> io::Result<FileCursor> {
        assert!(
            shards.start <= shards.end && indexed.start <= shards.start && shards.end <= indexed.end,
            "shards {shards:?} of a run indexing {indexed:?}"
        );
        let file = File::open(path)?;
        let mut entry = [0u8; ENTRY as usize];
        file.read_exact_at(&mut entry, bytes + ENTRY * (shards.start - indexed.start) as u64)?;
        let Start { block, at, .. } = footer_entry(&entry, shards.start).ok_or_else(|| damaged(path, "its footer"))?;
        let at = at as usize;
        if block > bytes {
            return Err(damaged(path, "a shard starts past the blocks"));
        }
        let mut c = FileCursor {
            path: path.to_path_buf(),
            file,
            end: bytes,
            next: block,
            packed: Vec::new(),
            block: Vec::new(),
            at: 0,
            stop: shards.end,
            decompressor: zstd::bulk::Decompressor::new()?,
            key: 0..0,
            value: 0..0,
            file_index: 0,
            shard: 0,
            line: 0,
            valid: false,
        };
        if shards.is_empty() {
            return Ok(c);
        }
        c.file.seek(SeekFrom::Start(block))?;
        if block < bytes {
            c.load_block()?;
            if at > c.block.len() {
                return Err(damaged(path, "a shard starts past its block"));
            }
            c.at = at;
        }
        c.advance()?;
        Ok(c)
    }

    fn load_block(&mut self) -> io::Result<()> {
        let path = self.path.as_path();
        let mut head = [0u8; 8];
        self.file.read_exact(&mut head)?;
        let packed = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let raw = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        if self.next + 8 + packed as u64 > self.end || raw > 4 * BLOCK_BYTES + (16 << 20) {
            return Err(damaged(path, "a block runs past the blocks"));
        }
        self.packed.resize(packed, 0);
        self.file.read_exact(&mut self.packed)?;
        self.block.clear();
        self.block.reserve(raw);
        let got = self.decompressor.decompress_to_buffer(&self.packed, &mut self.block)?;
        if got != raw {
            return Err(damaged(path, "a block's size"));
        }
        self.next += 8 + packed as u64;
        self.at = 0;
        Ok(())
    }

    fn varint(&mut self) -> Option<u64> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.block.get(self.at)?;
            self.at += 1;
            n |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return Some(n);
            }
        }
        None
    }
}

impl Cursor for FileCursor {
    fn current(&self) -> Option<Record<'_>> {
        self.valid.then(|| Record {
            shard: self.shard,
            key: &self.block[self.key.clone()],
            value: &self.block[self.value.clone()],
            file: self.file_index,
            line: self.line,
        })
    }

    fn advance(&mut self) -> io::Result<()> {
        self.valid = false;
        if self.at >= self.block.len() {
            if self.next >= self.end {
                return Ok(());
            }
            self.load_block()?;
        }
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "damaged run file (a record)");
        let (Some(klen), Some(vlen), Some(file), Some(shard), Some(line)) =
            (self.varint(), self.varint(), self.varint(), self.varint(), self.varint())
        else {
            return Err(bad());
        };
        let kend = self.at.checked_add(klen as usize).ok_or_else(bad)?;
        let vend = kend.checked_add(vlen as usize).ok_or_else(bad)?;
        if vend > self.block.len() {
            return Err(bad());
        }
        (self.key, self.value) = (self.at..kend, kend..vend);
        self.at = vend;
        (self.file_index, self.shard, self.line) = (file as u32, shard as u32, line);
        self.valid = self.shard < self.stop;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every footer entry names the block its shard starts in and that block's length, as the blocks lie in
    /// the file: shards starting mid-block, at a block's start, several in one block, and past the last
    /// record (the end, length 0).
    #[test]
    fn footer_entries_carry_the_length_of_the_block_they_start_in() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.run");
        let mut w = RunWriter::create(path.clone(), 2..12).unwrap();
        let value = vec![b'v'; BLOCK_BYTES / 3];
        // Shards 2 and 3 share the first block; 5's records fill blocks; 6-8 have none; 9 has one; 10 and
        // 11 none (past the end).
        let mut line = 0;
        for (shard, n) in [(2u32, 1), (3, 1), (5, 7), (9, 1)] {
            for i in 0..n {
                line += 1;
                let key = format!("k{shard}-{i:03}");
                w.push(&Record { shard, key: key.as_bytes(), value: &value, file: 0, line }).unwrap();
            }
        }
        let RunFile { bytes, .. } = w.finish().unwrap();
        let file = std::fs::read(&path).unwrap();
        // The blocks as they lie: offset -> length, header included.
        let mut lens = std::collections::BTreeMap::new();
        let mut at = 0u64;
        while at < bytes {
            let packed = u32::from_le_bytes(file[at as usize..at as usize + 4].try_into().unwrap()) as u64;
            lens.insert(at, (BLOCK_HEAD + packed) as u32);
            at += BLOCK_HEAD + packed;
        }
        assert!(lens.len() >= 3, "{} blocks", lens.len());
        let footer = &file[bytes as usize..];
        assert_eq!(footer.len() as u64, ENTRY * 11);
        for (i, shard) in (2u32..=12).enumerate() {
            let e = footer_entry(&footer[i * ENTRY as usize..(i + 1) * ENTRY as usize], shard).expect("intact");
            if e.block == bytes {
                assert_eq!((e.at, e.len), (0, 0), "shard {shard} starts at the end");
            } else {
                assert_eq!(Some(&e.len), lens.get(&e.block), "shard {shard}: {e:?}");
            }
            // Every entry is checked against its own shard: another's does not pass.
            assert!(footer_entry(&footer[i * ENTRY as usize..(i + 1) * ENTRY as usize], shard + 1).is_none());
        }
        let cursor = FileCursor::open(&path, bytes, &(2..12), 9..10).unwrap();
        assert_eq!(cursor.current().map(|r| r.key.to_vec()), Some(b"k9-000".to_vec()));
    }
}
