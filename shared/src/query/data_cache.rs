//! The data cache: decoded blocks and whole (hot) shards under one byte budget. A hot shard's entry owns its
//! memory; evicting it empties the slot lookups read it from.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering::Relaxed};

use crate::caches::counted::{CountedCache, weight};
use crate::format::block::Rows;
use crate::query::layer::HotRef;

/// (version uid, shard, index piece, block in it); ([`WHOLE_SHARD`], [`WHOLE_SHARD`]) for a hot shard.
pub(crate) type DataKey = (u64, u32, u32, u32);
pub(crate) const WHOLE_SHARD: u32 = u32::MAX;

/// A data cache entry: a block, or a whole shard together with the slot that serves it.
#[derive(Clone)]
pub(crate) struct Cached {
    pub(crate) rows: Arc<Rows>,
    pub(crate) slot: Option<HotRef>,
}

pub(crate) type DataCache = CountedCache<DataKey, Cached>;

/// A data cache of `bytes`, keeping `hot_shards` (a gauge) as whole shards come and go.
pub(crate) fn data_cache(bytes: u64, hot_shards: Arc<AtomicI64>) -> DataCache {
    CountedCache::with_listener(
        "data",
        bytes,
        |_, v: &Cached| weight(v.rows.weight()),
        move |k: Arc<DataKey>, v: Cached, cause| {
            if k.3 == WHOLE_SHARD {
                hot_shards.fetch_sub(1, Relaxed);
            }
            // Evicted or invalidated (not replaced): the hot slot lets go of the shard too.
            if cause == moka::notification::RemovalCause::Replaced {
                return;
            }
            if let Some(slot) = &v.slot {
                slot.clear_if(&v.rows);
            }
        },
    )
}
