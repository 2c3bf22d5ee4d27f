//! A layer no longer served (a publish replaced it, or its keyspace is gone): what the caches hold of it
//! (piece lists, index pieces, blocks, hot shards) is removed in the background, so its memory is free for
//! the version served now. Left to age out, it kept the data cache full and evicting after every publish,
//! and the new version's shards were then promoted only as fast as under a working set larger than the
//! cache. The removal waits until no lookup holds the replaced version (a request that resolved it before
//! the switch finishes from the cache), for at most [`HOLD_WAIT`]; it skips a layer served again meanwhile
//! (a rollback); and removals due together share one walk of the caches. A rollback to a layer removed here
//! reads it again, as it would after those entries aged out.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::caches::counted::CountedCache;
use crate::caches::promotion::Room;
use crate::query::data_cache::DataCache;
use crate::query::layer::RetiredLayer;
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
    /// Layers no lookup holds any more, waiting for the next walk.
    due: Arc<Mutex<Vec<RetiredLayer>>>,
    /// One walk at a time.
    walking: Arc<tokio::sync::Mutex<()>>,
    /// Removals started and not ended.
    running: Arc<AtomicUsize>,
}

impl Retired {
    pub(crate) fn new(
        piece_lists: Arc<PieceLists>,
        pieces: Arc<Pieces>,
        data: Arc<DataCache>,
        room: Arc<Room>,
    ) -> Self {
        Retired {
            piece_lists,
            pieces,
            data,
            room,
            due: Arc::default(),
            walking: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Removes what the caches hold of `layers` of `replaced`, once no lookup holds it, in a task of the
    /// runtime this is called on (off any runtime, nothing is removed: the entries age out).
    pub(crate) fn forget(&self, layers: Vec<RetiredLayer>, replaced: Weak<LoadedVersion>) {
        if layers.is_empty() {
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
            this.due.lock().expect("due layers").extend(layers);
            this.walk().await;
        });
    }

    /// One walk of the caches for every layer due that is still retired (a rollback serves a layer again)
    /// or gone.
    async fn walk(&self) {
        let _walking = self.walking.lock().await;
        let mut due = std::mem::take(&mut *self.due.lock().expect("due layers"));
        due.retain(still_retired);
        if due.is_empty() {
            return;
        }
        // Asked again of each entry's layer: a rollback may serve it again while the walk runs.
        let dead = |uid: &u64| due.iter().any(|l| l.0 == *uid && still_retired(l));
        self.data.sync().await;
        let before = self.data.used();
        self.piece_lists.remove_where(|k| dead(&k.0)).await;
        self.pieces.remove_where(|k| dead(&k.0)).await;
        self.data.remove_where(|k| dead(&k.0)).await;
        self.data.sync().await;
        // A removal that freed a share of the data cache leaves it filling, not evicting, whatever it
        // evicted before; a small keyspace's does not.
        if before.saturating_sub(self.data.used()) >= self.data.capacity() / 8 {
            self.room.forget_evictions(self.data.evictions());
        }
    }

    /// Removals started and not ended (each waits for the lookups holding its version first).
    pub(crate) fn running(&self) -> usize {
        self.running.load(Relaxed)
    }

    /// Until every removal started has ended.
    pub(crate) async fn settled(&self) {
        while self.running.load(Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Still retired by the retirement that made it due (a rollback serves it again, and a later switch may
/// retire it anew, with a removal of its own that waits for its own lookups), or dropped.
fn still_retired((_, layer, retirement): &RetiredLayer) -> bool {
    layer.upgrade().is_none_or(|l| l.retired.load(Relaxed) && l.retirements.load(Relaxed) == *retirement)
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
