//! Resolving a keyspace to the version to answer from: its pointer (trusted for a TTL, refreshed ahead by one
//! reader; from a replica root's copy when the primary fails), the never-move-back rule, the version's
//! manifest (verified, read with failover) and its groups of shard entries. Every loaded version is weighed
//! in the metadata budget, the groups it loads included.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::{GetOptions, ObjectStore};

use crate::caches::counted::{CacheStats, CountedCache, weight};
use crate::caches::single_flight::SingleFlight;
use crate::caches::ttl_map::{Lookup, TtlMap};
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::format::checksum::ObjectRef;
use crate::format::checksum::checksum_of;
use crate::format::key_filter::LayerFilter;
use crate::format::layout;
use crate::format::ring::Placement;
use crate::key::validate_keyspace;
use crate::query::fetch::{Fetcher, ReadKind};
use crate::query::layer::{Group, Layer};
use crate::query::retired::Retired;
use crate::query::roots::Roots;
use crate::query::telemetry::ServedKeyspace;
use crate::query::version::LoadedVersion;
use crate::stores::Store;
use crate::stores::replicated::{FailoverConfig, ReplicatedStore};
use crate::versions::pointer::{Current, Pointer};

mod reads;

type VersionId = (String, String);

/// Run with (the version served, the version about to replace it, when other readers stop answering from
/// the old one) before a refresh switches to it: the refreshing reader waits for it while the others answer
/// from the old version, so it must end before that moment.
pub(crate) type Warm<'a> = &'a (
        dyn Fn(Arc<LoadedVersion>, Arc<LoadedVersion>, std::time::Instant) -> futures::future::BoxFuture<'a, ()>
            + Send
            + Sync
    );

pub(crate) struct Resolver {
    /// keyspace → current version (None = no such keyspace), re-read after the TTL.
    pointers: TtlMap<Option<Arc<LoadedVersion>>>,
    /// Hand-written, not moka: a cold pointer miss is coalesced here, while the TTL map refreshes an expired
    /// pointer ahead (one reader re-reads it, the others keep using it), which no moka cache does.
    loads: SingleFlight<String, Option<Arc<LoadedVersion>>>,
    /// keyspace → the pointer served and its version: a replica's copy read later is taken only if it
    /// supersedes it (never back within a lineage).
    served: Mutex<HashMap<String, (Pointer, Arc<LoadedVersion>)>>,
    /// (keyspace, version) → the layer that version wrote; layers are immutable, and versions stacking on
    /// one share it.
    versions: CountedCache<VersionId, Arc<Layer>>,
    failover: FailoverConfig,
    telemetry: Arc<crate::query::telemetry::EngineTelemetry>,
    /// Empties the read side's caches of the layers a switch retires.
    retired: Retired,
}

impl Resolver {
    pub(crate) fn new(
        config: &EngineConfig,
        budget: u64,
        telemetry: Arc<crate::query::telemetry::EngineTelemetry>,
        retired: Retired,
    ) -> Resolver {
        Resolver {
            pointers: TtlMap::new("pointer", config.pointer_ttl, 4096, Option::is_none),
            loads: SingleFlight::default(),
            served: Mutex::default(),
            versions: CountedCache::new("manifest", budget, |_, v| weight(v.weight())),
            failover: config.failover.clone(),
            telemetry,
            retired,
        }
    }

    /// `f` of the keyspace's version when its pointer is cached and fresh (no await, no clone); None when
    /// there is none or `f` declines: [`Self::keyspace`] then resolves it.
    #[inline]
    pub(crate) fn with_fresh<R>(&self, ks: &str, f: impl FnOnce(&Arc<LoadedVersion>) -> Option<R>) -> Option<R> {
        self.pointers.with_fresh(ks, |v| v.as_ref().and_then(f))
    }

    /// The keyspace's current version, from cache when fresh.
    pub(crate) async fn keyspace(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        warm: Warm<'_>,
    ) -> Result<Arc<LoadedVersion>> {
        validate_keyspace(ks)?;
        let cached = match self.pointers.get(ks) {
            Lookup::Use(c) => c,
            // Slow paths are boxed: their state would otherwise make every request's future large.
            Lookup::Load(load) => Box::pin(self.reload(roots, fetcher, ks, warm, load)).await?,
        };
        cached.ok_or_else(|| Error::KeyspaceNotFound(ks.to_string()))
    }

    /// [`Self::keyspace`] when its pointer must be read: one reader per keyspace reads it (the others wait
    /// for that read, or answer from the stale pointer it refreshes).
    async fn reload(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        warm: Warm<'_>,
        load: crate::caches::ttl_map::Load<Option<Arc<LoadedVersion>>>,
    ) -> Result<Option<Arc<LoadedVersion>>> {
        let stale = load.stale.clone();
        let stale_until = load.stale_until;
        let read = self.loads.run(ks.to_string(), async {
            // A load that finished while this caller waited to run has put a fresh answer here.
            if let Some(c) = self.pointers.fresh(ks) {
                return Ok(c);
            }
            let loaded = self.load(roots, fetcher, ks, stale.as_ref().zip(stale_until), warm).await?;
            self.pointers.insert(load, loaded.clone());
            Ok(loaded)
        });
        match read.await {
            Ok(loaded) => Ok(loaded),
            // A refresh that failed answers from the pointer it was refreshing (at most 2 × TTL old); the
            // next request past the TTL tries again.
            Err(e) => match stale {
                Some(stale) => {
                    tracing::warn!(keyspace = ks, error = %e, "pointer refresh failed; using the cached one");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    /// The pointer's version, loaded; or the one already served when the pointer read does not supersede it.
    async fn load(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        stale: Option<(&Option<Arc<LoadedVersion>>, std::time::Instant)>,
        warm: Warm<'_>,
    ) -> Result<Option<Arc<LoadedVersion>>> {
        let (stale, stale_until) = (stale.map(|(s, _)| s), stale.map(|(_, u)| u));
        let Some((current, root)) = self.read_pointer(roots, fetcher, ks).await? else {
            // The primary says there is no such keyspace: what was served is gone, and a keyspace created
            // anew under this name starts afresh.
            let gone = self.served.lock().expect("served pointers").remove(ks);
            if let Some((_, gone)) = gone {
                self.retired.forget(gone.retire(), Arc::downgrade(&gone));
            }
            return Ok(None);
        };
        // The primary's pointer is the commit point: always taken (a keyspace restored from a backup, or
        // rebuilt by a host whose clock is behind, included). A replica's copy may lag: taken only if it
        // supersedes what is served.
        let from_primary = root.url == roots.primary().url;
        let held = self.served.lock().expect("served pointers").get(ks).cloned();
        if let Some((p, v)) = &held
            && !from_primary
            && !current.pointer.supersedes(p)
        {
            tracing::warn!(keyspace = ks, seq = current.pointer.seq, served = p.seq, root = %root.url, "ignoring an older pointer");
            return Ok(Some(stale.cloned().flatten().unwrap_or_else(|| v.clone())));
        }
        // The version already served keeps its identity even if the cache let it go: its footers, blocks and
        // hot shards are cached under its uid.
        let same = held.and_then(|(_, v)| (v.manifest().version == current.pointer.version).then_some(v));
        let v = match same {
            Some(v) => v,
            None => {
                let new = self.load_version(roots, fetcher, ks, &current, &root).await?;
                // Its layers may be cached ones retired before (a rollback): served again from here on, and
                // warming's promotions must not give up.
                new.unretire();
                // Only a refresh ahead is warmed: other readers then answer from the old version meanwhile
                // (a reader loading without one would make them wait).
                if let (Some(Some(old)), Some(until)) = (stale, stale_until) {
                    warm(old.clone(), new.clone(), until).await;
                }
                new
            }
        };
        // Installed at once: the replaced version's cache entries are removed afterwards, in the background,
        // once the lookups still running on it have ended (retired.rs).
        let replaced = {
            let mut served = self.served.lock().expect("served pointers");
            match served.get(ks) {
                Some((p, _)) if !from_primary && !current.pointer.supersedes(p) => None,
                _ => served.insert(ks.to_string(), (current.pointer.clone(), v.clone())),
            }
        };
        if let Some((_, old)) = replaced {
            self.retired.forget(v.retire_layers_of(&old), Arc::downgrade(&old));
        }
        Ok(Some(v))
    }

    /// The version `current` names: its own layer and every older one its manifest lists, each from the
    /// cache or read from the roots.
    async fn load_version(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        current: &Current,
        root: &Store,
    ) -> Result<Arc<LoadedVersion>> {
        let top =
            self.layer(roots, fetcher, ks, &current.pointer.version, current.pointer.manifest.as_ref(), root).await?;
        let mut layers = vec![top.clone()];
        for older in &top.manifest.layers {
            layers.push(self.layer(roots, fetcher, ks, &older.version, Some(&older.manifest), root).await?);
        }
        // Every layer but the oldest is a delta nested in the oldest's placement: a lookup places the key
        // once, in the base, and each layer's shard follows from it.
        let base = &layers[layers.len() - 1].manifest.placement;
        let path = top.manifest.path();
        if layers[layers.len() - 1].is_delta()
            || layers[..layers.len() - 1].iter().any(|l| !l.is_delta() || l.manifest.placement.base() != base)
        {
            return Err(Error::corrupt(&path, "its layers are not deltas over one base layer"));
        }
        Ok(Arc::new(LoadedVersion::new(layers)))
    }

    /// The layer `version` wrote, from the cache or read from the roots (its manifest top level checked
    /// against `expected`, its key filter loaded): one object per layer, whoever loaded it first, since hot
    /// shards and footers are cached under its uid.
    async fn layer(
        &self,
        roots: &Roots,
        fetcher: &Fetcher,
        ks: &str,
        version: &str,
        expected: Option<&ObjectRef>,
        root: &Store,
    ) -> Result<Arc<Layer>> {
        let id = (ks.to_string(), version.to_string());
        if let Some(l) = self.versions.get(&id).await {
            return Ok(l);
        }
        let manifest = self.read_manifest_top(roots, fetcher, ks, version, expected, root).await?;
        roots.remember(ks, &manifest.replicas);
        let placement = Placement::new(&manifest.placement).map_err(|why| Error::corrupt(&manifest.path(), why))?;
        let (shard_store, replicated): (Arc<dyn ObjectStore>, _) = if manifest.replicas.is_empty() {
            (roots.primary().inner.clone(), None)
        } else {
            let mut stores = vec![roots.primary().inner.clone()];
            for url in &manifest.replicas {
                stores.push(roots.replica(url)?.inner);
            }
            let r = Arc::new(
                ReplicatedStore::new(stores, self.failover.clone()).with_totals(self.telemetry.replicas.clone()),
            );
            (r.clone(), Some(r))
        };
        let mut layer = Layer::new(manifest, placement, shard_store, replicated);
        if let Some(delta) = &layer.manifest.delta {
            let path = layout::filter_path(ks, version);
            let want = &delta.filter;
            let valid = |b: &[u8]| want.matches(b);
            let opts = GetOptions { range: Some((0..want.bytes).into()), ..Default::default() };
            // The filter only saves requests: a layer whose filter is missing or damaged is read without one.
            let decoded = fetcher.fetch(&layer, &path, opts, &valid, ReadKind::Bulk).await.and_then(|bytes| {
                LayerFilter::decode(&bytes, layer.placement.shards()).map_err(|why| Error::corrupt(&path, why))
            });
            match decoded {
                Ok(filter) => layer.filter = Some(filter),
                Err(e) => {
                    tracing::warn!(keyspace = ks, layer = version, error = %e, "key filter unreadable; reading the layer without it")
                }
            }
        }
        Ok(self.versions.get_or_insert(id, Arc::new(layer)).await)
    }

    /// Group `g` of `v`'s manifest (read and verified against the top level on first use; concurrent first
    /// users share the read). Loading one weighs the version again in its cache.
    pub(crate) async fn group<'v>(&self, fetcher: &Fetcher, v: &'v Arc<Layer>, g: usize) -> Result<&'v Group> {
        if let Some(group) = v.groups[g].get() {
            return Ok(group);
        }
        let group = v.groups[g]
            .get_or_try_init(|| async {
                let path = v.manifest.group_path(g);
                let want = &v.manifest.groups[g];
                let valid = |b: &[u8]| b.len() as u64 == want.bytes && checksum_of(b) == want.checksum;
                // Only the bytes the top level names: its checksum vouches for them.
                let opts = GetOptions { range: Some((0..want.bytes).into()), ..Default::default() };
                let bytes = fetcher.fetch(v, &path, opts, &valid, ReadKind::Small).await?;
                Ok::<_, Error>(Group::new(v.manifest.parse_group(g, &bytes)?))
            })
            .await?;
        // Weighed again with the group it now holds.
        let id = (v.manifest.keyspace.clone(), v.manifest.version.clone());
        self.versions.reweigh(id, v.clone(), Arc::ptr_eq).await;
        Ok(group)
    }

    /// The versions this engine answers from.
    pub(crate) fn served(&self) -> Vec<ServedKeyspace> {
        let served = self.served.lock().expect("served versions");
        let mut out: Vec<ServedKeyspace> = served
            .iter()
            .map(|(name, (p, v))| ServedKeyspace {
                keyspace: name.clone(),
                version: v.manifest().version.clone(),
                seq: p.seq,
                keys: v.rows(),
                bytes: v.bytes(),
            })
            .collect();
        out.sort_by(|a, b| a.keyspace.cmp(&b.keyspace));
        out
    }

    /// Forgets cached pointers so the next request re-reads them.
    pub(crate) fn refresh(&self) {
        self.pointers.invalidate_all();
    }

    pub(crate) fn counts(&self) -> [(u64, u64); 2] {
        [self.pointers.counts(), self.versions.counts()]
    }

    pub(crate) fn stats(&self) -> [CacheStats; 2] {
        [self.pointers.stats(), self.versions.stats()]
    }

    pub(crate) async fn sync(&self) {
        self.versions.sync().await;
    }
}
