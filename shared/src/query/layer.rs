//! One layer of a keyspace, loaded: the shards one version wrote (a whole base, or a delta) with its
//! manifest's top level, its placement, where its objects are read from, and per shard (group by group, as
//! lookups need them) its entry and lookup state. Versions that share a layer share this object, so its
//! caches stay warm across a delta publish.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use tokio::sync::OnceCell;

use arc_swap::ArcSwapOption;
use object_store::ObjectStore;

use crate::caches::promotion::Promotion;
use crate::format::block::Rows;
use crate::format::key_filter::LayerFilter;
use crate::format::manifest::{Manifest, ShardEntry};
use crate::format::ring::Placement;
use crate::stores::replicated::ReplicatedStore;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
pub struct Layer {
    /// A delta layer's key filter (loaded with it): a key it rules out costs this layer no request. None
    /// for a base, or when the filter could not be read (every key then probes the layer's shard).
    pub filter: Option<LayerFilter>,
    /// A delta layer: its values are tagged (format/layers.rs).
    delta: bool,
    /// The manifest's top level: with many shards, where their entries are (groups), not the entries.
    pub manifest: Manifest,
    pub placement: Placement,
    /// Where shard objects (and manifest groups) are read: the primary, or every copy behind failover and
    /// hedging.
    pub shard_store: Arc<dyn ObjectStore>,
    pub replicated: Option<Arc<ReplicatedStore>>,
    /// Process-unique, so cache keys are small and never mix versions.
    pub(crate) uid: u64,
    /// Per group of [`Manifest::group_shards`] shards, its entries and lookup state, loaded on first use
    /// (an ungrouped manifest is one group, loaded with it); concurrent first users share one load.
    pub(crate) groups: Vec<OnceCell<Group>>,
    pub(crate) group_shards: u32,
    /// Set while no served version of its keyspace holds this layer (a rollback may serve it again): a
    /// promotion still waiting for it gives up.
    pub(crate) retired: std::sync::atomic::AtomicBool,
    /// Times it was retired: tells a removal waiting since one retirement from a later one (retired.rs).
    pub(crate) retirements: AtomicU64,
}

/// A layer retired (query/retired.rs removes its cache entries): its uid, the layer while anything holds it,
/// and which of its retirements this is.
pub(crate) type RetiredLayer = (u64, Weak<Layer>, u64);

/// The shards of one manifest group, ready for lookups.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) entries: Vec<ShardEntry>,
    /// Per shard, the shard decoded whole once it is hot: read with no lock and no cache lookup. The data
    /// cache owns the memory; evicting the entry empties the slot. One array, so finding a slot is not a
    /// load of its own on the warm path.
    pub(crate) hot: Arc<[HotSlot]>,
    /// Per shard, its recent block fetches: whether reading it whole would pay.
    pub(crate) promotion: Vec<Arc<Promotion>>,
    /// Bytes it holds, weighed once: the version is weighed again at every group load, and walking every
    /// loaded group's entries each time made loading a keyspace's groups quadratic in their number.
    weight: usize,
}

pub(crate) type HotSlot = ArcSwapOption<Rows>;

/// One shard's slot in its group's array, as the data cache entry that owns the shard holds it (weakly: an
/// entry outliving its version does not keep the group alive).
#[derive(Clone)]
pub(crate) struct HotRef {
    slots: Weak<[HotSlot]>,
    i: usize,
}

impl HotRef {
    pub(crate) fn new(slots: &Arc<[HotSlot]>, i: usize) -> HotRef {
        HotRef { slots: Arc::downgrade(slots), i }
    }

    /// Empties the slot if it still serves `rows`.
    pub(crate) fn clear_if(&self, rows: &Arc<Rows>) {
        if let Some(slots) = self.slots.upgrade()
            && let Some(slot) = slots.get(self.i)
            && slot.load().as_ref().is_some_and(|r| Arc::ptr_eq(r, rows))
        {
            slot.store(None);
        }
    }
}

impl Group {
    pub(crate) fn new(entries: Vec<ShardEntry>) -> Group {
        let hot = entries.iter().map(|_| HotSlot::empty()).collect();
        let promotion = entries.iter().map(|_| Arc::new(Promotion::default())).collect();
        let pieces: usize = entries.iter().map(|s| s.pieces.iter().map(|p| 48 + p.key.len()).sum::<usize>()).sum();
        let weight = entries.iter().map(|s| 160 + 112 + s.path.len()).sum::<usize>() + pieces;
        Group { entries, hot, promotion, weight }
    }
}

impl Layer {
    pub(crate) fn new(
        mut manifest: Manifest,
        placement: Placement,
        shard_store: Arc<dyn ObjectStore>,
        replicated: Option<Arc<ReplicatedStore>>,
    ) -> Layer {
        let group_shards = manifest.group_shards();
        let mut groups: Vec<OnceCell<Group>> = Vec::new();
        if manifest.groups.is_empty() {
            groups.push(OnceCell::new_with(Some(Group::new(std::mem::take(&mut manifest.shards)))));
        } else {
            groups.resize_with(manifest.groups.len(), OnceCell::new);
        }
        let uid = NEXT_UID.fetch_add(1, Relaxed);
        let delta = manifest.delta.is_some();
        let (retired, retirements) = Default::default();
        Layer {
            filter: None,
            delta,
            manifest,
            placement,
            shard_store,
            replicated,
            uid,
            groups,
            group_shards,
            retired,
            retirements,
        }
    }

    /// Bytes this version holds besides its cached shards: the top level, the ring, and the groups loaded
    /// so far (the version is weighed again, by re-inserting it in its cache, whenever a group loads).
    pub(crate) fn weight(&self) -> usize {
        let groups: usize = self.groups.iter().filter_map(|g| g.get()).map(|g| g.weight).sum();
        let filter = self.filter.as_ref().map_or(0, LayerFilter::weight);
        1024 + self.manifest.groups.len() * 96 + groups + self.placement.weight() + filter
    }

    /// Group and index in it of `shard`.
    pub(crate) fn locate(&self, shard: u32) -> (usize, usize) {
        ((shard / self.group_shards) as usize, (shard % self.group_shards) as usize)
    }

    /// Whether the layer's values are tagged (a delta layer).
    #[inline]
    pub fn is_delta(&self) -> bool {
        self.delta
    }

    /// Process-unique: tells two loaded layers apart without comparing names.
    pub fn uid(&self) -> u64 {
        self.uid
    }

    /// No served version holds it any more: this retirement.
    pub(crate) fn retire(self: &Arc<Self>) -> RetiredLayer {
        let n = self.retirements.fetch_add(1, Relaxed) + 1;
        self.retired.store(true, Relaxed);
        (self.uid, Arc::downgrade(self), n)
    }

    /// How many groups are loaded.
    pub fn loaded_groups(&self) -> usize {
        self.groups.iter().filter(|g| g.get().is_some()).count()
    }
}
