//! Index pieces (format 3): a shard's block index cut into pieces of at most [`PIECE_BYTES`], written into
//! the shard object between its blocks. Parquet readers skip bytes that no footer offset points at, so the
//! object stays plain Parquet; cairn finds a piece through the manifest entry's [`PieceRef`]s (first key,
//! byte range, checksum), so opening a shard for one key reads one piece, whatever the shard's size.
//!
//! A piece (little-endian): `CIX1`, u32 block count, then per block: u64 offset, u32 length, u32 length of
//! its key chunk (the value chunk follows it), u32 rows, u32 checksum (low 32 bits of XXH3-64 of the block's
//! bytes), u16 + bytes of its first key, u16 + bytes of its last key, u16 + bytes of its key
//! bloom filter (a Parquet split-block bitset; 0 bytes: none).
//!
//! A shard with more than [`INLINE_PIECES`] pieces lists them in a *root* written into the object after the
//! last piece, and the manifest entry names the root instead ([`RootRef`]), so the manifest every reader
//! loads stays the same size per shard however large shards grow. A root: `CRT1`, u32 piece count, then per
//! piece: u64 offset, u32 length, u32 checksum, u16 + bytes of its first key.

use bytes::Buf;
use parquet::bloom_filter::Sbbf;
use serde::{Deserialize, Serialize};

use crate::format::block::BlockRef;
use crate::format::block::ChunkRanges;

pub const PIECE_MAGIC: &[u8; 4] = b"CIX1";
/// A cold lookup reads one piece, then one block: the piece stays small whatever the shard holds.
pub const PIECE_BYTES: usize = 8 << 10;
const HEADER: usize = 8;
/// Pieces a manifest entry lists itself; a shard with more has a root (read once, then cached).
pub const INLINE_PIECES: usize = 6;
pub const ROOT_MAGIC: &[u8; 4] = b"CRT1";

/// Where a shard's root (its list of pieces) lies in the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRef {
    pub offset: u64,
    pub len: u32,
    /// Low 32 bits of XXH3-64 of the root's bytes.
    pub checksum: u32,
    pub pieces: u32,
}

pub fn encode_root(pieces: &[PieceRef]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + pieces.iter().map(|p| 18 + p.key.len()).sum::<usize>());
    out.extend_from_slice(ROOT_MAGIC);
    out.extend_from_slice(&(pieces.len() as u32).to_le_bytes());
    for p in pieces {
        out.extend_from_slice(&p.offset.to_le_bytes());
        out.extend_from_slice(&p.len.to_le_bytes());
        out.extend_from_slice(&p.checksum.to_le_bytes());
        // Piece keys are block keys, which encode_entry already bounded to u16.
        out.extend_from_slice(&(p.key.len() as u16).to_le_bytes());
        out.extend_from_slice(p.key.as_bytes());
    }
    out
}

/// Decodes and checks a root (`root`: what the manifest says of it) of an object `object_len` bytes long.
pub fn decode_root(data: &[u8], object_len: u64, root: &RootRef) -> Result<Vec<PieceRef>, String> {
    let mut r = Reader { rest: data };
    if r.take(4)? != ROOT_MAGIC {
        return Err("not a shard root (bad magic)".into());
    }
    let n = r.u32()?;
    if n != root.pieces || n as usize > data.len() / 18 {
        return Err(format!("root lists {n} pieces, the manifest {}", root.pieces));
    }
    let mut pieces: Vec<PieceRef> = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (offset, len, checksum) = (r.u64()?, r.u32()?, r.u32()?);
        let key = std::str::from_utf8(r.part()?).map_err(|_| format!("piece {i}: a key that is not UTF-8"))?;
        if offset.checked_add(len as u64).is_none_or(|e| e > object_len) {
            return Err(format!("piece {i}: bytes {offset}+{len} in a {object_len}-byte object"));
        }
        if pieces.last().is_some_and(|p| p.key.as_str() >= key || p.offset + p.len as u64 > offset) {
            return Err(format!("piece {i} is out of order"));
        }
        pieces.push(PieceRef { key: key.to_string(), offset, len, checksum });
    }
    if r.rest.has_remaining() {
        return Err(format!("{} bytes after the last piece", r.rest.remaining()));
    }
    Ok(pieces)
}

/// Where a piece lies in its shard object, as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceRef {
    /// The first key of the piece's first block: a key belongs to the last piece whose `key` is ≤ it.
    pub key: String,
    pub offset: u64,
    pub len: u32,
    /// Low 32 bits of XXH3-64 of the piece's bytes.
    pub checksum: u32,
}

/// One block's entry, as the writer hands it over.
pub struct BlockEntry<'a> {
    pub at: BlockRef,
    pub min_key: &'a [u8],
    pub max_key: &'a [u8],
    pub bloom: Option<&'a Sbbf>,
}

/// Builds the pieces of one shard as its blocks are written.
#[derive(Default)]
pub struct PieceBuilder {
    buf: Vec<u8>,
    blocks: u32,
    first_key: String,
}

impl PieceBuilder {
    /// Whether `entry` still fits this piece (an empty piece takes any one entry).
    pub fn fits(&self, entry: &[u8], limit: usize) -> bool {
        self.blocks == 0 || HEADER + self.buf.len() + entry.len() <= limit
    }

    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    pub fn push(&mut self, entry: &[u8], first_key: &str) {
        if self.blocks == 0 {
            self.first_key = first_key.to_string();
        }
        self.buf.extend_from_slice(entry);
        self.blocks += 1;
    }

    /// The finished piece's bytes and its first key; the builder starts over.
    pub fn take(&mut self) -> (Vec<u8>, String) {
        let mut out = Vec::with_capacity(HEADER + self.buf.len());
        out.extend_from_slice(PIECE_MAGIC);
        out.extend_from_slice(&self.blocks.to_le_bytes());
        out.append(&mut self.buf);
        self.blocks = 0;
        (out, std::mem::take(&mut self.first_key))
    }
}

/// Encodes one block's entry (keys and filter must fit their u16 lengths; ingest caps keys at 1 KiB).
pub fn encode_entry(e: &BlockEntry<'_>) -> Result<Vec<u8>, String> {
    let mut bloom = Vec::new();
    if let Some(f) = e.bloom {
        f.write_bitset(&mut bloom).expect("writing to a Vec");
    }
    let mut out = Vec::with_capacity(30 + e.min_key.len() + e.max_key.len() + bloom.len());
    out.extend_from_slice(&e.at.offset.to_le_bytes());
    out.extend_from_slice(&e.at.len.to_le_bytes());
    out.extend_from_slice(&e.at.chunks.key.1.to_le_bytes());
    out.extend_from_slice(&(e.at.rows as u32).to_le_bytes());
    out.extend_from_slice(&e.at.checksum.unwrap_or(0).to_le_bytes());
    for part in [e.min_key, e.max_key, &bloom] {
        let len = u16::try_from(part.len()).map_err(|_| format!("an index entry field of {} bytes", part.len()))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(part);
    }
    Ok(out)
}

/// A piece's blocks, decoded and checked (any bytes give this or an error, never a panic).
pub struct Decoded {
    pub blocks: Vec<BlockRef>,
    pub min_keys: Vec<Box<[u8]>>,
    pub max_keys: Vec<Box<[u8]>>,
    pub blooms: Vec<Option<Sbbf>>,
    /// Bytes the decoded piece holds in memory, roughly.
    pub weight: usize,
}

/// Decodes a piece of an object `object_len` bytes long; `first_key` is what the manifest says its first
/// block starts with.
pub fn decode(data: &[u8], object_len: u64, first_key: &[u8]) -> Result<Decoded, String> {
    let mut r = Reader { rest: data };
    if r.take(4)? != PIECE_MAGIC {
        return Err("not an index piece (bad magic)".into());
    }
    let n = r.u32()? as usize;
    // Every entry takes at least 30 bytes: a count beyond that is a lie, not an allocation to make.
    if n == 0 || n > data.len() / 30 {
        return Err(format!("index piece claims {n} blocks in {} bytes", data.len()));
    }
    let mut d = Decoded {
        blocks: Vec::with_capacity(n),
        min_keys: Vec::with_capacity(n),
        max_keys: Vec::with_capacity(n),
        blooms: Vec::with_capacity(n),
        weight: 256 + n * 64,
    };
    for i in 0..n {
        let (offset, len, key_len, rows, checksum) = (r.u64()?, r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let (min, max, bloom) = (r.part()?, r.part()?, r.part()?);
        let end = offset.checked_add(len as u64).filter(|&e| e <= object_len);
        if end.is_none() || key_len == 0 || key_len >= len || rows == 0 {
            return Err(format!("block {i}: bytes {offset}+{len} (keys {key_len}) in a {object_len}-byte object"));
        }
        if d.blocks.last().is_some_and(|b: &BlockRef| b.offset + b.len as u64 > offset) {
            return Err(format!("block {i} overlaps the block before it"));
        }
        if min > max || d.max_keys.last().is_some_and(|m| m.as_ref() >= min) {
            return Err(format!("block {i}: keys out of order"));
        }
        if i == 0 && min != first_key {
            return Err("the first block does not start with the key the manifest names".into());
        }
        // A filter without a 32-byte block would panic on every check.
        if !bloom.len().is_multiple_of(32) {
            return Err(format!("block {i}: a {}-byte bloom filter", bloom.len()));
        }
        d.weight += min.len() + max.len() + bloom.len();
        d.blocks.push(BlockRef {
            offset,
            len,
            rows: rows as u64,
            chunks: ChunkRanges { key: (0, key_len), value: (key_len, len - key_len) },
            checksum: Some(checksum),
        });
        d.min_keys.push(min.into());
        d.max_keys.push(max.into());
        d.blooms.push((!bloom.is_empty()).then(|| Sbbf::new(bloom)));
    }
    if r.rest.has_remaining() {
        return Err(format!("{} bytes after the last entry", r.rest.remaining()));
    }
    Ok(d)
}

/// Fields read off the front of a root or piece with `bytes::Buf` (little-endian); running out is an error,
/// never a panic. Variable-length parts are borrowed, not copied.
struct Reader<'a> {
    rest: &'a [u8],
}

fn short(_: bytes::TryGetError) -> String {
    "index piece ends inside an entry".into()
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.rest.remaining() < n {
            return Err("index piece ends inside an entry".into());
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, String> {
        self.rest.try_get_u16_le().map_err(short)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.rest.try_get_u32_le().map_err(short)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.rest.try_get_u64_le().map_err(short)
    }
    fn part(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

/// The piece that could hold `key`: the last whose first key is ≤ it.
pub fn locate(pieces: &[PieceRef], key: &[u8]) -> Option<usize> {
    pieces.partition_point(|p| p.key.as_bytes() <= key).checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::checksum::block_checksum;
    use crate::format::shard_reader::ShardMeta;
    use crate::format::shard_writer::{ShardFormat, ShardWriter};

    fn shard(rows: usize) -> (Vec<u8>, Vec<PieceRef>, Vec<String>) {
        let keys: Vec<String> = (0..rows).map(|i| format!("key-{i:07}")).collect();
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for k in &keys {
            w.append(k, format!("value of {k}, padded to look like the reference data").as_bytes()).unwrap();
        }
        let sum = w.finish().unwrap();
        let pieces = match sum.root {
            Some(r) => {
                assert!(sum.pieces.is_empty());
                decode_root(&buf[r.offset as usize..(r.offset + r.len as u64) as usize], buf.len() as u64, &r).unwrap()
            }
            None => sum.pieces,
        };
        (buf, pieces, keys)
    }

    /// A shard with few pieces lists them in its manifest entry; with more, in a root inside the object,
    /// which any corruption turns into an error, never a panic.
    #[test]
    fn a_root_lists_the_pieces_of_larger_shards() {
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for i in 0..2_000 {
            w.append(&format!("key-{i:07}"), b"v").unwrap();
        }
        let small = w.finish().unwrap();
        assert!(small.root.is_none() && (1..=INLINE_PIECES).contains(&small.pieces.len()));

        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
        for i in 0..60_000 {
            w.append(&format!("key-{i:07}"), b"v").unwrap();
        }
        let sum = w.finish().unwrap();
        let root = sum.root.expect("a root");
        let bytes = buf[root.offset as usize..(root.offset + root.len as u64) as usize].to_vec();
        assert_eq!(block_checksum(&bytes), root.checksum);
        let pieces = decode_root(&bytes, buf.len() as u64, &root).unwrap();
        assert_eq!(pieces.len(), root.pieces as usize);
        assert!(pieces.last().unwrap().offset + pieces.last().unwrap().len as u64 <= root.offset);
        assert!(decode_root(&bytes, buf.len() as u64, &RootRef { pieces: root.pieces + 1, ..root }).is_err());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x80;
            let _ = decode_root(&bad, buf.len() as u64, &root);
        }
        for cut in 0..bytes.len() {
            assert!(decode_root(&bytes[..cut], buf.len() as u64, &root).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn pieces_are_small_cover_every_block_and_find_every_key() {
        let (buf, pieces, keys) = shard(60_000);
        assert!(pieces.len() > 10, "{} pieces", pieces.len());
        let mut blocks = 0;
        for (i, p) in pieces.iter().enumerate() {
            let bytes = &buf[p.offset as usize..(p.offset + p.len as u64) as usize];
            assert!(bytes.len() <= PIECE_BYTES, "piece {i}: {} bytes", bytes.len());
            assert_eq!(block_checksum(bytes), p.checksum);
            let meta = ShardMeta::from_piece("t".into(), buf.len() as u64, bytes, p.key.as_bytes()).unwrap();
            assert_eq!(meta.bloom_filters(), meta.blocks.len());
            for b in &meta.blocks {
                let block = &buf[b.offset as usize..(b.offset + b.len as u64) as usize];
                assert_eq!(Some(block_checksum(block)), b.checksum, "piece {i}");
            }
            blocks += meta.blocks.len();
        }
        assert_eq!(blocks, keys.len().div_ceil(128), "every block is in one piece");
        let absent = |k: &String| format!("{k}x");
        let (mut passed, mut found) = (0, 0);
        for k in keys.iter().step_by(7) {
            let p = locate(&pieces, k.as_bytes()).unwrap();
            let piece = &pieces[p];
            let bytes = &buf[piece.offset as usize..(piece.offset + piece.len as u64) as usize];
            let meta = ShardMeta::from_piece("t".into(), buf.len() as u64, bytes, piece.key.as_bytes()).unwrap();
            found += meta.probe(k.as_bytes()).is_some() as usize;
            let a = absent(k);
            if locate(&pieces, a.as_bytes()) == Some(p) {
                passed += meta.probe(a.as_bytes()).is_some() as usize;
            }
        }
        assert_eq!(found, keys.len().div_ceil(7), "no false negatives");
        assert!(passed <= keys.len() / 7 / 40, "{passed} absent keys passed the filters");
        assert_eq!(locate(&pieces, b"a"), None, "before the first key");
    }

    /// Bytes that are not a piece cairn wrote (every single-byte change of a real one, cut lengths, a wrong
    /// object size) give an error or a decoded piece, never a panic.
    #[test]
    fn hostile_pieces_are_errors_never_panics() {
        let (buf, pieces, _) = shard(3_000);
        let p = &pieces[0];
        let piece = buf[p.offset as usize..(p.offset + p.len as u64) as usize].to_vec();
        let len = buf.len() as u64;
        assert!(decode(&piece, len, p.key.as_bytes()).is_ok());
        assert!(decode(&piece, 100, p.key.as_bytes()).is_err(), "blocks past the object's end");
        assert!(decode(&piece, len, b"another key").is_err(), "a piece the manifest does not describe");
        let mut decoded = 0;
        for at in 0..piece.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = piece.clone();
                bad[at] ^= flip;
                if let Ok(d) = decode(&bad, len, p.key.as_bytes()) {
                    decoded += 1;
                    // What decodes is still safe to probe.
                    let meta = ShardMeta::from_piece("t".into(), len, &bad, p.key.as_bytes()).unwrap();
                    let _ = meta.probe(b"key-0000100");
                    assert_eq!(d.blocks.len(), meta.blocks.len());
                }
            }
        }
        for cut in 0..piece.len() {
            assert!(decode(&piece[..cut], len, p.key.as_bytes()).is_err(), "cut at {cut}");
        }
        println!("{decoded} of {} corrupted pieces still decoded", 3 * piece.len());
    }
}
