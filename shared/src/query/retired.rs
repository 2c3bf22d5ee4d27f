//! A layer no longer served (a publish replaced it, or its keyspace is gone): what the caches hold of it
//! (piece lists, index pieces, blocks, hot shards) is removed in the background, so its memory is free for
//! the version served now. Left to age out, it kept the data cache full and evicting after every publish,
//! and the new version's shards were then promoted only as fast as under a working set larger than the
//! cache. The removal waits until no lookup holds the replaced version (a request that resolved it before
//! the switch finishes from the cache), for at most [`HOLD_WAIT`]. A rollback to a layer removed here reads
//! it again, as it would after those entries aged out.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::caches::counted::CountedCache;
use crate::caches::promotion::Room;
use crate::query::data_cache::DataCache;
use crate::query::version::LoadedVersion;

/// Longest a removal waits for lookups still running on the replaced version.
const HOLD_WAIT: Duration = Duration::from_secs(60);

pub(crate) type PieceLists = CountedCache<(u64, u32), Arc<Vec<crate::format::piece::PieceRef>>>;
/// Keyed by (layer uid, shard, index piece; 0 for a format-2 shard's one index).
pub(crate) type Pieces = CountedCache<(u64, u32, u32), Arc<crate::format::shard_reader::ShardMeta>>;

/// The caches keyed by layer, and how to empty them of retired layers.
#[derive(Clone)]
pub(crate) struct Retired {
    pub(crate) piece_lists: Arc<PieceLists>,
    pub(crate) pieces: Arc<Pieces>,
    pub(crate) data: Arc<DataCache>,
    pub(crate) room: Arc<Room>,
    /// Removals running.
    running: Arc<AtomicUsize>,
}

impl Retired {
    pub(crate) fn new(
        piece_lists: Arc<PieceLists>,
        pieces: Arc<Pieces>,
        data: Arc<DataCache>,
        room: Arc<Room>,
    ) -> Self {
        Retired { piece_lists, pieces, data, room, running: Arc::default() }
    }

    /// Removes what the caches hold of the layers `uids` of `replaced`, once no lookup holds it, in a task
    /// of the runtime this is called on (off any runtime, nothing is removed: the entries age out).
    pub(crate) fn forget(&self, uids: Vec<u64>, replaced: Weak<LoadedVersion>) {
        if uids.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let this = self.clone();
        let running = Running::new(&self.running);
        runtime.spawn(async move {
            let _running = running;
            let since = tokio::time::Instant::now();
            while replaced.strong_count() > 0 && since.elapsed() < HOLD_WAIT {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let dead = |uid: &u64| uids.contains(uid);
            this.piece_lists.remove_where(|k| dead(&k.0)).await;
            this.pieces.remove_where(|k| dead(&k.0)).await;
            this.data.remove_where(|k| dead(&k.0)).await;
            this.data.sync().await;
            this.room.forget_evictions(this.data.evictions());
        });
    }

    /// Until every removal started has ended.
    pub(crate) async fn settled(&self) {
        while self.running.load(Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// One removal counted in [`Retired::running`] until it ends, however it ends.
struct Running(Arc<AtomicUsize>);

impl Running {
    fn new(count: &Arc<AtomicUsize>) -> Running {
        count.fetch_add(1, Relaxed);
        Running(count.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
