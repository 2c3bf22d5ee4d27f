//! Reading a key from its shard in a loaded version: a hot shard from its slot (in memory, no lookup), else
//! the index piece whose key range holds the key (cached), the one block whose key range holds it unless its
//! filter rules the key out (cached, decoded), then a binary search. Each cache here is one budget: index
//! metadata (piece lists and pieces) and data (blocks and hot shards).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use bytes::Bytes;
use object_store::GetOptions;
use object_store::path::Path;

use crate::caches::arena::Arena;
use crate::caches::counted::{CacheStats, CountedCache, sampled, weight};
use crate::error::{Error, Result};
use crate::format::block::{Rows, Search};
use crate::format::checksum::{block_checksum, checksum_of};
use crate::format::manifest::ShardEntry;
use crate::format::piece::{self, PieceRef};
use crate::format::shard_reader::ShardMeta;
use crate::query::data_cache::{Cached, DataCache, WHOLE_SHARD, data_cache};
use crate::query::fetch::{Fetcher, ReadKind};
use crate::query::layer::{Group, Layer};
use crate::query::promote::Promotions;
use crate::query::retired::{PieceLists, Pieces, Retired};

// One hot-shard lookup in TOUCH_EVERY refreshes the shard's recency in the data cache.
thread_local! {
    static HOT_TICK: Cell<u32> = const { Cell::new(0) };
}

pub(crate) struct ShardReads {
    /// (version uid, shard) → the pieces a shard lists in its object (shards with more than a manifest
    /// entry lists).
    piece_lists: Arc<PieceLists>,
    /// (version uid, shard, piece) → the blocks an index piece lists.
    pieces: Arc<Pieces>,
    /// Decoded blocks and whole (hot) shards, under one byte budget.
    pub(crate) data: Arc<DataCache>,
    /// Where hot shards live (on huge pages), sized like the data cache that owns them.
    pub(crate) arena: Arc<Arena>,
    pub(crate) promotions: Promotions,
    retired: Retired,
}

impl ShardReads {
    /// Index metadata in `metadata` bytes (a fifth for piece lists), data in `data` bytes.
    pub(crate) fn new(metadata: u64, data: u64, hot_shards: Arc<std::sync::atomic::AtomicI64>) -> ShardReads {
        let data_cache = Arc::new(data_cache(data, hot_shards.clone()));
        let arena = Arena::new(data as usize);
        let piece_lists: Arc<PieceLists> = Arc::new(CountedCache::new("shard_roots", metadata / 5, |_, v| {
            weight(64 + v.iter().map(|p| 48 + p.key.len()).sum::<usize>())
        }));
        let pieces: Arc<Pieces> =
            Arc::new(CountedCache::new("shard_metadata", metadata - metadata / 5, |_, v| weight(v.weight())));
        let promotions = Promotions::new(data_cache.clone(), arena.clone(), hot_shards);
        let retired = Retired::new(piece_lists.clone(), pieces.clone(), data_cache.clone(), promotions.room.clone());
        ShardReads { piece_lists, pieces, data: data_cache, arena, promotions, retired }
    }

    /// `key`'s value in shard `shard` of `v` (entry `i` of `group`).
    pub(crate) async fn get(
        &self,
        fetcher: &Arc<Fetcher>,
        v: &Arc<Layer>,
        group: &Group,
        (shard, i): (u32, usize),
        key: &str,
    ) -> Result<Option<Bytes>> {
        if let Some(answer) = self.hot_get(v, group, (shard, i), key) {
            return Ok(answer);
        }
        if group.entries[i].rows == 0 {
            return Ok(None);
        }
        // Boxed: the cold path's state would otherwise make every lookup's future large (MGET holds up to
        // 1,000 of them).
        Box::pin(self.get_from_blocks(fetcher, v, group, (shard, i), key)).await
    }

    /// `key`'s value if its shard is hot: read from the slot, with no await and no cache lookup. One such
    /// lookup in [`TOUCH_EVERY`](crate::caches::counted::TOUCH_EVERY) also marks the shard used in the data
    /// cache (its eviction order), in the background.
    #[inline]
    pub(crate) fn hot_get(
        &self,
        v: &Layer,
        group: &Group,
        (shard, i): (u32, usize),
        key: &str,
    ) -> Option<Option<Bytes>> {
        let slot = group.hot[i].load();
        let rows = slot.as_ref()?;
        self.data.add_hits(1);
        if sampled(&HOT_TICK)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (data, k) = (self.data.clone(), (v.uid, shard, WHOLE_SHARD, WHOLE_SHARD));
            runtime.spawn(async move { data.touch(&k, 0).await });
        }
        Some(rows.get(key.as_bytes()))
    }

    /// [`Self::get`] for a shard that is not hot: its index piece, then its block.
    async fn get_from_blocks(
        &self,
        fetcher: &Arc<Fetcher>,
        v: &Arc<Layer>,
        group: &Group,
        (shard, i): (u32, usize),
        key: &str,
    ) -> Result<Option<Bytes>> {
        let entry = &group.entries[i];
        let list = match entry.root {
            Some(_) => Some(self.piece_list(fetcher, v, shard, entry).await?),
            None => None,
        };
        let pieces: &[PieceRef] = list.as_deref().map_or(&entry.pieces, |r| r.as_slice());
        let piece = if pieces.is_empty() {
            0
        } else {
            match piece::locate(pieces, key.as_bytes()) {
                Some(p) => p as u32,
                None => return Ok(None),
            }
        };
        let open = self.pieces.get_or_load((v.uid, shard, piece), async {
            Ok(Arc::new(open_piece(fetcher, v, entry, pieces.get(piece as usize)).await?))
        });
        let meta = open.await?;
        let Some(b) = meta.probe(key.as_bytes()) else { return Ok(None) };
        // Only the caller whose read ran counts it towards promotion (and may promote).
        let read_here = AtomicBool::new(false);
        let read = self.data.get_or_load((v.uid, shard, piece, b as u32), async {
            read_here.store(true, Relaxed);
            let rows = Arc::new(read_block(fetcher, v, &meta, b).await?);
            self.promotions.inserted(rows.weight());
            Ok(Cached { rows, slot: None })
        });
        let rows = read.await?.rows;
        if read_here.load(Relaxed) {
            let len = meta.blocks[b].len as u64;
            self.promotions.consider(fetcher, v, group, (shard, i), pieces, &meta, len);
        }
        Ok(rows.get(key.as_bytes()))
    }

    /// The pieces a shard's object lists: one range GET, verified against the manifest, then cached.
    async fn piece_list(
        &self,
        fetcher: &Fetcher,
        v: &Layer,
        shard: u32,
        entry: &ShardEntry,
    ) -> Result<Arc<Vec<PieceRef>>> {
        let root = entry.root.expect("called for shards with a root");
        self.piece_lists
            .get_or_load((v.uid, shard), async {
                let path = Path::from(entry.path.as_str());
                let range = root.offset..root.offset + root.len as u64;
                let opts = GetOptions { range: Some(range.into()), ..Default::default() };
                let valid = |b: &[u8]| block_checksum(b) == root.checksum;
                let data = fetcher.fetch(v, &path, opts, &valid, ReadKind::Small).await?;
                let pieces = piece::decode_root(&data, entry.bytes, &root).map_err(|why| Error::corrupt(&path, why))?;
                Ok(Arc::new(pieces))
            })
            .await
    }

    pub(crate) fn counts(&self) -> [(u64, u64); 3] {
        [self.piece_lists.counts(), self.pieces.counts(), self.data.counts()]
    }

    /// What removes retired layers from these caches.
    pub(crate) fn retired(&self) -> Retired {
        self.retired.clone()
    }

    pub(crate) fn stats(&self) -> [CacheStats; 3] {
        [self.piece_lists.stats(), self.pieces.stats(), self.data.stats()]
    }

    pub(crate) async fn sync(&self) {
        self.piece_lists.sync().await;
        self.pieces.sync().await;
        self.data.sync().await;
    }
}

/// One range GET of an index piece, verified against the manifest's checksum (format 2: one suffix GET of
/// the footer and filters), yields the blocks it lists.
async fn open_piece(fetcher: &Fetcher, v: &Layer, entry: &ShardEntry, piece: Option<&PieceRef>) -> Result<ShardMeta> {
    let path = Path::from(entry.path.as_str());
    if let Some(p) = piece {
        let opts = GetOptions { range: Some((p.offset..p.offset + p.len as u64).into()), ..Default::default() };
        let valid = |b: &[u8]| block_checksum(b) == p.checksum;
        let data = fetcher.fetch(v, &path, opts, &valid, ReadKind::Small).await?;
        return ShardMeta::from_piece(path, entry.bytes, &data, p.key.as_bytes());
    }
    let suffix = entry.meta_bytes.min(entry.bytes);
    let opts = GetOptions { range: Some(object_store::GetRange::Suffix(suffix)), ..Default::default() };
    let expected = entry.meta_checksum.as_str();
    let valid = |b: &[u8]| checksum_of(b) == expected;
    let data = fetcher.fetch(v, &path, opts, &valid, ReadKind::Small).await?;
    ShardMeta::from_suffix(path, entry.bytes, data)
}

/// One range GET: the block's key and value pages, checksum verified, decoded.
async fn read_block(fetcher: &Fetcher, v: &Layer, meta: &ShardMeta, b: usize) -> Result<Rows> {
    let at = meta.blocks[b];
    let valid = |d: &[u8]| at.checksum.is_none_or(|sum| block_checksum(d) == sum);
    let range = at.offset..at.offset + at.len as u64;
    let opts = GetOptions { range: Some(range.into()), ..Default::default() };
    let buf = fetcher.fetch(v, &meta.path, opts, &valid, ReadKind::Small).await?;
    Rows::decode(buf, [(0, at.chunks, at.rows)], Search::Binary).map_err(|why| Error::corrupt(&meta.path, why))
}
