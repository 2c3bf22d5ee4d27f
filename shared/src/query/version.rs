//! One published version of a keyspace, loaded: its layers, newest first. A full ingest is one layer; each
//! delta publish stacks one more over the layers of the version it was published on. Lookups visit the
//! layers newest first and stop at the first that holds the key (a value or a tombstone).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::format::manifest::Manifest;
use crate::query::layer::{Layer, RetiredLayer};
use crate::query::recent_keys::RecentKeys;

#[derive(Debug)]
pub struct LoadedVersion {
    /// Newest first; never empty. `layers[0]` is the version's own shards and manifest.
    pub layers: Vec<Arc<Layer>>,
    /// Keys recently asked of it: what a switch to the next version warms.
    pub(crate) recent: RecentKeys,
}

impl LoadedVersion {
    pub(crate) fn new(layers: Vec<Arc<Layer>>) -> LoadedVersion {
        assert!(!layers.is_empty(), "a version has at least one layer");
        LoadedVersion { layers, recent: RecentKeys::default() }
    }

    /// The version's own manifest (its top level): its name, placement and what it lists of older layers.
    #[inline]
    pub fn manifest(&self) -> &Manifest {
        &self.layers[0].manifest
    }

    /// Process-unique per version (its newest layer's): tells two loaded versions apart without comparing
    /// names.
    #[inline]
    pub fn uid(&self) -> u64 {
        self.layers[0].uid()
    }

    /// The newest layer.
    #[inline]
    pub fn top(&self) -> &Arc<Layer> {
        &self.layers[0]
    }

    /// Keys the version answers for: live rows of every layer, less what newer layers override (an upper
    /// bound: the sum of the layers' rows less their tombstones).
    pub fn rows(&self) -> u64 {
        self.layers.iter().map(|l| l.manifest.rows.saturating_sub(l.manifest.tombstones())).sum()
    }

    /// Served in place of `old`: `old`'s layers this version does not share are retired, and its own are
    /// not (one served again by a rollback). Those it retired.
    pub(crate) fn retire_layers_of(&self, old: &LoadedVersion) -> Vec<RetiredLayer> {
        self.unretire();
        let gone = old.layers.iter().filter(|l| !self.layers.iter().any(|n| n.uid == l.uid));
        gone.map(|layer| layer.retire()).collect()
    }

    /// About to be served: none of its layers is retired.
    pub(crate) fn unretire(&self) {
        for layer in &self.layers {
            layer.retired.store(false, Relaxed);
        }
    }

    /// No longer served (its keyspace is gone): every layer is retired.
    pub(crate) fn retire(&self) -> Vec<RetiredLayer> {
        self.layers.iter().map(|l| l.retire()).collect()
    }

    /// Bytes of every layer's shard objects.
    pub fn bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.manifest.bytes).sum()
    }
}
