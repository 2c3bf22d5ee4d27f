//! Promotion: a shard whose blocks keep being fetched fast enough that reading it whole pays
//! (caches/promotion.rs decides) is read whole in one GET and kept decoded, served from its slot with no
//! cache lookup. Off the request path: the lookup that trips the rule is answered from its block, and the
//! whole-shard read and decode run in the background, at most [`IN_FLIGHT`] at a time per process, not
//! hedged, and decoded on a blocking thread. Up to [`QUEUED`] more wait for their turn: one skipped instead
//! would only be asked again by a later block fetch, and once the lookups' blocks are all cached none
//! comes. A failure leaves the shard served block by block and backs its rule off.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use object_store::GetOptions;

use crate::caches::arena::Arena;
use crate::caches::promotion::{RESERVE, Room};
use crate::error::{Error, Result};
use crate::format::block::{BlockRef, Rows, Search};
use crate::format::checksum::block_checksum;
use crate::format::piece::{self, PieceRef};
use crate::format::shard_reader::ShardMeta;
use crate::query::data_cache::{Cached, DataCache, WHOLE_SHARD};
use crate::query::fetch::{Fetcher, ReadKind};
use crate::query::layer::{Group, HotRef, HotSlot, Layer};

/// Whole-shard reads running at once, per process.
pub const IN_FLIGHT: usize = 2;

/// Promotions waiting for one of the [`IN_FLIGHT`] permits, per process; beyond them the rule's choice is
/// dropped (its shard is picked again by a later fetch). Each holds only its shard's block list meanwhile,
/// and gives up when its turn comes if it waited longer than a cache capacity of turnover (the fetches that
/// chose it are as old as the blocks they read, which are gone) or its version is no longer served.
pub const QUEUED: usize = 1024;

/// A whole-shard read (every attempt, every copy) that has not ended by then fails: reads that hang cannot
/// hold the budget, and so turn promotion off, for ever.
const WHOLE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A promotion running: when it ends, however it ends, the shard may be promoted again and the budget has
/// its permit back.
struct Running {
    state: Arc<crate::caches::promotion::Promotion>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    _reserved: Held,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.promoting.store(false, Relaxed);
    }
}

/// A share of a running total (the data cache room promotions reserved, the promotions waiting for a
/// permit), given back however the promotion ends.
struct Held(Arc<AtomicU64>, u64);

impl Held {
    /// Adds `n` to `total`; also returns what it held before.
    fn new(total: &Arc<AtomicU64>, n: u64) -> (Held, u64) {
        (Held(total.clone(), n), total.fetch_add(n, Relaxed))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Relaxed);
    }
}

pub(crate) struct Promotions {
    budget: Arc<tokio::sync::Semaphore>,
    /// Promotions waiting for a permit.
    queued: Arc<AtomicU64>,
    /// Bytes inserted into the data cache so far: the clock promotion decisions are measured in.
    turnover: Arc<AtomicU64>,
    /// Room in the data cache the promotions asked will take.
    reserved: Arc<AtomicU64>,
    pub(crate) room: Arc<Room>,
    /// Whole shards in the data cache (a gauge `/metrics` reports).
    hot_shards: Arc<AtomicI64>,
    /// Where promoted shards go, and the memory they live in.
    data: Arc<DataCache>,
    arena: Arc<Arena>,
}

impl Promotions {
    pub(crate) fn new(data: Arc<DataCache>, arena: Arc<Arena>, hot_shards: Arc<AtomicI64>) -> Promotions {
        Promotions {
            budget: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            queued: Arc::default(),
            turnover: Arc::default(),
            reserved: Arc::default(),
            room: Arc::default(),
            hot_shards,
            data,
            arena,
        }
    }

    /// Whole-shard reads running now, or waiting for their turn.
    pub(crate) fn in_flight(&self) -> usize {
        IN_FLIGHT - self.budget.available_permits() + self.queued.load(Relaxed) as usize
    }

    /// Counts `bytes` inserted into the data cache.
    pub(crate) fn inserted(&self, bytes: usize) {
        self.turnover.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts one block fetch of `block_len` bytes of shard `shard` (entry `i` of `group`); when that makes
    /// reading it whole pay, and it fits an eighth of the data cache (so one shard cannot flush the rest),
    /// starts its promotion in the background.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn consider(
        &self,
        fetcher: &Arc<Fetcher>,
        v: &Arc<Layer>,
        group: &Group,
        (shard, i): (u32, usize),
        pieces: &[PieceRef],
        meta: &ShardMeta,
        block_len: u64,
    ) {
        let range = match pieces.last() {
            // The blocks start after the leading magic; the last piece follows the last block.
            Some(last) if last.offset >= 4 => 4..last.offset + last.len as u64,
            Some(_) => return,
            None => match meta.data_range() {
                Some(r) => r,
                None => return,
            },
        };
        let (capacity, size) = (self.data.capacity(), range.end - range.start);
        let state = &group.promotion[i];
        let now = self.turnover.load(Relaxed);
        let (used, reserved) = (self.data.used(), self.reserved.load(Relaxed));
        let free = self.room.free(capacity, used, reserved, self.data.evictions(), now);
        if !state.note_fetch(now, block_len, size, (capacity, free)) || size > capacity / 8 {
            return;
        }
        // Lookups still running on a version that was just replaced do not start reads of it.
        if v.retired.load(Relaxed) || state.promoting.swap(true, Relaxed) {
            return;
        }
        let permit = self.budget.clone().try_acquire_owned().ok();
        let queued = match permit {
            Some(_) => None,
            None => match Held::new(&self.queued, 1) {
                (place, before) if before < QUEUED as u64 => Some(place),
                _ => {
                    state.promoting.store(false, Relaxed);
                    return;
                }
            },
        };
        let (reserved, _) = Held::new(&self.reserved, RESERVE * size);
        let budget = self.budget.clone();
        // Held weakly until the read starts: a waiting promotion keeps no engine, cache or version alive.
        let owners = Owners {
            fetcher: Arc::downgrade(fetcher),
            layer: Arc::downgrade(v),
            data: Arc::downgrade(&self.data),
            arena: Arc::downgrade(&self.arena),
            slots: Arc::downgrade(&group.hot),
        };
        // Built before the task: a task the runtime drops before it first runs still ends the promotion.
        let running = Running { state: state.clone(), _permit: permit, _reserved: reserved };
        let (state, turnover, hot_shards) = (state.clone(), self.turnover.clone(), self.hot_shards.clone());
        let (pieces, blocks, object_len) = (pieces.to_vec(), meta.blocks.clone(), group.entries[i].bytes);
        let path = meta.path.clone();
        tokio::spawn(async move {
            // Ends the promotion however the task ends (a panic included), once its result is installed.
            let mut running = running;
            let waited = queued.is_some();
            if let Some(place) = queued {
                // The semaphore is never closed; a runtime shutting down drops this task, and the guards.
                let Ok(permit) = budget.acquire_owned().await else { return };
                running._permit = Some(permit);
                drop(place);
            }
            let Some((fetcher, v, data, arena, slot)) = owners.upgrade() else { return };
            if v.retired.load(Relaxed) || (waited && turnover.load(Relaxed).saturating_sub(now) > capacity) {
                state.reset();
                return;
            }
            let read = read_shard(&fetcher, &v, &arena, &path, &pieces, &blocks, range, object_len);
            let result = match tokio::time::timeout(WHOLE_READ_TIMEOUT, read).await {
                Ok(r) => r,
                Err(_) => Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the whole-shard read did not end within {WHOLE_READ_TIMEOUT:?}"),
                ))),
            };
            state.ended(result.is_ok(), turnover.load(Relaxed), capacity);
            match result {
                Ok(rows) => {
                    let rows = Arc::new(rows);
                    slot[i].store(Some(rows.clone()));
                    turnover.fetch_add(rows.weight() as u64, Relaxed);
                    hot_shards.fetch_add(1, Relaxed);
                    let cached = Cached { rows, slot: Some(HotRef::new(&slot, i)) };
                    let key = (v.uid, shard, WHOLE_SHARD, WHOLE_SHARD);
                    data.insert(key, cached).await;
                    // Its version was replaced while it read: the removal of its entries (retired.rs) may
                    // have run already.
                    if v.retired.load(Relaxed) {
                        data.invalidate(&key).await;
                    }
                    // Into the cache's own figure of bytes held before its reservation is let go, or the next
                    // promotion would count the same room free.
                    data.sync().await;
                }
                Err(e) => {
                    tracing::warn!(shard = %path, error = %e, "could not load the whole shard; serving it block by block")
                }
            }
        });
    }
}

/// What a promotion reads through and installs into, held weakly while it waits for its turn.
struct Owners {
    fetcher: Weak<Fetcher>,
    layer: Weak<Layer>,
    data: Weak<DataCache>,
    arena: Weak<Arena>,
    slots: Weak<[HotSlot]>,
}

type Owned = (Arc<Fetcher>, Arc<Layer>, Arc<DataCache>, Arc<Arena>, Arc<[HotSlot]>);

impl Owners {
    /// Each, unless one is gone (its engine dropped, or its version let go).
    fn upgrade(&self) -> Option<Owned> {
        Some((
            self.fetcher.upgrade()?,
            self.layer.upgrade()?,
            self.data.upgrade()?,
            self.arena.upgrade()?,
            self.slots.upgrade()?,
        ))
    }
}

/// Reads every block of a shard in one GET (format 3: with the index pieces between them, each verified
/// against the manifest, then each block against its piece; format 2: the blocks `blocks` lists), and
/// decodes it on a blocking thread.
#[allow(clippy::too_many_arguments)]
async fn read_shard(
    fetcher: &Fetcher,
    v: &Layer,
    arena: &Arc<Arena>,
    path: &object_store::path::Path,
    pieces: &[PieceRef],
    format2_blocks: &[BlockRef],
    range: std::ops::Range<u64>,
    object_len: u64,
) -> Result<Rows> {
    let base = range.start;
    let blocks_in = |d: &[u8]| -> std::result::Result<Vec<BlockRef>, String> {
        if pieces.is_empty() {
            return Ok(format2_blocks.to_vec());
        }
        let mut blocks = Vec::new();
        for p in pieces {
            let bytes = p
                .offset
                .checked_sub(base)
                .and_then(|lo| d.get(lo as usize..lo as usize + p.len as usize))
                .ok_or("an index piece lies outside the shard's data")?;
            if block_checksum(bytes) != p.checksum {
                return Err("index piece checksum mismatch".into());
            }
            blocks.extend(piece::decode(bytes, object_len, p.key.as_bytes())?.blocks);
        }
        Ok(blocks)
    };
    let valid = |d: &[u8]| {
        blocks_in(d).is_ok_and(|blocks| {
            blocks.iter().all(|at| {
                let Some(lo) = at.offset.checked_sub(base).map(|lo| lo as usize) else { return false };
                at.checksum.is_none_or(|sum| d.get(lo..lo + at.len as usize).is_some_and(|b| block_checksum(b) == sum))
            })
        })
    };
    let opts = GetOptions { range: Some(range.into()), ..Default::default() };
    let buf = fetcher.fetch(v, path, opts, &valid, ReadKind::Bulk).await?;
    let blocks = blocks_in(&buf).map_err(|why| Error::corrupt(path, why))?;
    if blocks.iter().any(|at| at.offset < base) {
        return Err(Error::corrupt(path, "a block lies before the shard's data"));
    }
    let (arena, path) = (arena.clone(), path.clone());
    tokio::task::spawn_blocking(move || {
        let blocks = blocks.iter().map(|at| ((at.offset - base) as usize, at.chunks, at.rows));
        Rows::decode(buf, blocks, Search::Hashed(Some(&arena))).map_err(|why| Error::corrupt(&path, why))
    })
    .await
    .map_err(|e| Error::Config(format!("decoding a whole shard: {e}")))?
}
