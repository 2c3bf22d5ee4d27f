//! The engine `cairn serve`, the Lambda and the Python reader run: a thin facade over resolving a keyspace's
//! version (resolver/: pointer, TTL, lineage, replicas, manifest and groups) and reading a key from its
//! shard (shard_reads.rs: pieces, blocks, hot shards; promote.rs). It owns no sockets.

use std::sync::Arc;

use bytes::Bytes;

use crate::caches::counted::CacheStats;
use crate::caches::disk_tier::DiskTier;
use crate::caches::shared_tier::SharedTier;
use crate::caches::tier::CacheTier;
use crate::config::EngineConfig;
use crate::cost::Counters;
use crate::error::Result;
use crate::format::key_filter::key_hash;
use crate::format::layers::{Tagged, untag};
use crate::format::manifest::Manifest;
use crate::key::validate_key;
use crate::query::fetch::Fetcher;
use crate::query::layer::Layer;
use crate::query::resolver::Resolver;
use crate::query::roots::{RootOpener, Roots};
use crate::query::shard_reads::ShardReads;
use crate::query::telemetry::{EngineStats, EngineTelemetry, ServedKeyspace, Telemetry};
use crate::query::version::LoadedVersion;
use crate::stores::Store;

mod warm;

pub struct Engine {
    config: EngineConfig,
    roots: Roots,
    resolver: Resolver,
    reads: ShardReads,
    fetcher: Arc<Fetcher>,
    /// What `/metrics` reports besides the caches.
    telemetry: Arc<EngineTelemetry>,
    keyspaces: crate::query::keyspace_list::KeyspaceList,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Self {
        let telemetry = Arc::new(EngineTelemetry::default());
        let roots = Roots::new(store, config.replicas.clone(), config.max_concurrent_gets, telemetry.clone());
        let budget = config.metadata_cache_bytes;
        // The metadata budget is split: an eighth for loaded versions, the rest for shard index pieces.
        let reads = ShardReads::new(budget - budget / 8, config.data_cache_bytes, telemetry.hot_shards.clone());
        Engine {
            resolver: Resolver::new(&config, budget / 8, telemetry.clone(), reads.retired()),
            reads,
            fetcher: Arc::new(Fetcher::new(telemetry.clone(), tiers(&config))),
            roots,
            keyspaces: crate::query::keyspace_list::KeyspaceList::new(config.pointer_ttl),
            config,
            telemetry,
        }
    }

    /// Replaces how replica roots named in manifests are opened.
    pub fn with_root_opener(mut self, opener: RootOpener) -> Self {
        self.roots.set_opener(opener);
        self
    }

    /// Every root holding a copy of `v`'s newest layer's objects, primary first.
    pub fn roots(&self, v: &LoadedVersion) -> Result<Vec<Store>> {
        self.roots.of_version(v.top())
    }

    pub fn store(&self) -> &Store {
        self.roots.primary()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The keyspace's current version, from cache when fresh.
    pub async fn keyspace(&self, ks: &str) -> Result<Arc<LoadedVersion>> {
        let warm =
            |old, new, until| -> futures::future::BoxFuture<'_, ()> { Box::pin(self.warm_switch(old, new, until)) };
        self.resolver.keyspace(&self.roots, &self.fetcher, ks, &warm).await
    }

    /// Loads the keyspace's current version with every manifest group of its layers, as a server does
    /// before it answers ready.
    pub async fn load_keyspace(&self, ks: &str) -> Result<()> {
        let v = self.keyspace(ks).await?;
        for layer in &v.layers {
            for g in 0..layer.groups.len() {
                self.resolver.group(&self.fetcher, layer, g).await?;
            }
        }
        Ok(())
    }

    /// Forgets cached pointers so the next request re-reads them (tests, admin).
    pub fn refresh(&self) {
        self.resolver.refresh();
    }

    pub async fn get(&self, ks: &str, key: &str) -> Result<Option<Bytes>> {
        if let Some(warm) = self.get_warm(ks, key, |_, value| value) {
            return warm;
        }
        let v = self.keyspace(ks).await?;
        self.get_in(&v, key).await
    }

    /// The warm path, with no await: when the keyspace's pointer is fresh in cache and the key's shard is
    /// hot, `answer(version, value)`; None otherwise ([`Self::get`] then takes the whole path). It takes no
    /// reference count on the version, and its lookups are counted like any other.
    #[inline]
    pub fn get_warm<R>(
        &self,
        ks: &str,
        key: &str,
        answer: impl FnOnce(&LoadedVersion, Option<Bytes>) -> R,
    ) -> Option<Result<R>> {
        if let Err(e) = validate_key(key) {
            return Some(Err(e));
        }
        self.resolver.with_fresh(ks, |v| {
            let key_bytes = key.as_bytes();
            let [layer] = v.layers.as_slice() else {
                let found = self.layered_warm(v, key)?;
                v.recent.offer(key);
                return Some(found.map(|value| answer(v, value)));
            };
            let shard = layer.placement.shard_of(key_bytes);
            let (g, i) = layer.locate(shard);
            let value = self.reads.hot_get(layer, layer.groups[g].get()?, (shard, i), key)?;
            v.recent.offer(key);
            Some(Ok(answer(v, value)))
        })
    }

    /// [`Self::get_warm`] over several layers: newest first, a layer's filter skipping it, the first value
    /// or tombstone found deciding; None as soon as a layer that must be read is not hot.
    fn layered_warm(&self, v: &LoadedVersion, key: &str) -> Option<Result<Option<Bytes>>> {
        let base = v.layers[v.layers.len() - 1].placement.shard_of(key.as_bytes());
        let hash = key_hash(key.as_bytes());
        for layer in &v.layers {
            let shard = layer.placement.nest(base);
            if let Some(filter) = &layer.filter
                && !filter.may_contain(shard, hash)
            {
                continue;
            }
            let (g, i) = layer.locate(shard);
            if let Some(found) = self.reads.hot_get(layer, layer.groups[g].get()?, (shard, i), key)? {
                return Some(resolve(layer, found));
            }
        }
        Some(Ok(None))
    }

    /// Looks a key up in an already resolved version.
    pub async fn lookup(&self, v: &Arc<LoadedVersion>, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        self.get_in(v, key).await
    }

    /// Looks several keys up in one version of the keyspace (a consistent snapshot), [`MGET_CONCURRENCY`]
    /// at a time; refused once the values found pass `mget_max_bytes` (memory per request stays bounded).
    ///
    /// [`MGET_CONCURRENCY`]: crate::config::MGET_CONCURRENCY
    pub async fn mget(&self, ks: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        use futures::StreamExt;
        for k in keys {
            validate_key(k)?;
        }
        let v = self.keyspace(ks).await?;
        let v = &v;
        // Indices, not references, into the closure: a closure over `&String` makes the stream's future not
        // provably Send (a rustc limitation with higher-ranked lifetimes), and axum's handlers must be.
        let mut answers = futures::stream::iter(0..keys.len())
            .map(|i| self.boxed_get(v, &keys[i]))
            .buffered(crate::config::MGET_CONCURRENCY);
        let (mut out, mut bytes) = (Vec::with_capacity(keys.len()), 0u64);
        while let Some(value) = answers.next().await {
            let value = value?;
            bytes += value.as_ref().map_or(0, |v| v.len() as u64);
            if bytes > self.config.mget_max_bytes {
                return Err(crate::error::Error::TooLarge { limit: self.config.mget_max_bytes });
            }
            out.push(value);
        }
        Ok(out)
    }

    /// [`Self::get_in`], boxed under one lifetime: an MGET's stream of unboxed lookups is not provably Send.
    fn boxed_get<'a>(
        &'a self,
        v: &'a Arc<LoadedVersion>,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.get_in(v, key))
    }

    async fn get_in(&self, v: &Arc<LoadedVersion>, key: &str) -> Result<Option<Bytes>> {
        v.recent.offer(key);
        let base = v.layers[v.layers.len() - 1].placement.shard_of(key.as_bytes());
        let hash = (v.layers.len() > 1).then(|| key_hash(key.as_bytes()));
        for layer in &v.layers {
            let shard = layer.placement.nest(base);
            if let (Some(filter), Some(hash)) = (&layer.filter, hash)
                && !filter.may_contain(shard, hash)
            {
                continue;
            }
            let (g, i) = layer.locate(shard);
            let group = match layer.groups[g].get() {
                Some(group) => group,
                None => Box::pin(self.resolver.group(&self.fetcher, layer, g)).await?,
            };
            if let Some(found) = self.reads.get(&self.fetcher, layer, group, (shard, i), key).await? {
                return resolve(layer, found);
            }
        }
        Ok(None)
    }

    /// The manifest of `v`'s newest layer with every shard entry (its groups loaded as lookups load them, and
    /// weighed in the metadata budget): what the per-shard health report walks.
    pub async fn full_manifest(&self, v: &Arc<LoadedVersion>) -> Result<Manifest> {
        self.full_layer_manifest(v.top()).await
    }

    /// [`Self::full_manifest`] of one layer.
    pub async fn full_layer_manifest(&self, layer: &Arc<Layer>) -> Result<Manifest> {
        let mut m = layer.manifest.clone();
        for g in 0..layer.groups.len() {
            let group = self.resolver.group(&self.fetcher, layer, g).await?;
            m.shards.extend(group.entries.iter().cloned());
        }
        m.groups.clear();
        Ok(m)
    }

    /// Process totals of what requests cost (a request's own cost: [`crate::cost::measure`]).
    pub fn counters(&self) -> Counters {
        let (mut cache_hits, mut cache_misses) = (0, 0);
        for (h, m) in self.resolver.counts().into_iter().chain(self.reads.counts()) {
            cache_hits += h;
            cache_misses += m;
        }
        let (failovers, hedges, checksum_failures) = self.telemetry.replica_counts();
        let (object_gets, bytes_fetched) = self.fetcher.totals();
        Counters { object_gets, bytes_fetched, cache_hits, cache_misses, failovers, hedges, checksum_failures }
    }

    /// What `GET /v1/keyspaces/{ks}` answers (and the Python package's `info`): the published version,
    /// its size and placement, replica failover and cache figures.
    pub async fn info(&self, ks: &str) -> Result<serde_json::Value> {
        let v = self.keyspace(ks).await?;
        let m = v.manifest();
        let base = &v.layers[v.layers.len() - 1].manifest;
        Ok(serde_json::json!({
            "keyspace": m.keyspace,
            "version": m.version,
            "created_at": m.created_at,
            "shards": base.placement.shards(),
            "keys": v.rows(),
            "bytes": v.bytes(),
            "placement": base.placement,
            "replicas": m.replicas,
            "layers": v.layers.iter().map(|l| layer_info(&l.manifest)).collect::<Vec<_>>(),
            "failover": v.top().replicated.as_ref().map(|r| r.stats()),
            "cache": self.stats(),
        }))
    }

    /// Keyspaces with a published version, as of at most a pointer TTL ago.
    pub async fn list_keyspaces(&self) -> Result<Vec<String>> {
        Ok(self.keyspaces.get(self.roots.primary().inner.as_ref()).await?.to_vec())
    }

    /// The versions this engine answers from now (what it holds; no store request).
    pub fn served(&self) -> Vec<ServedKeyspace> {
        self.resolver.served()
    }

    /// Cache figures as of the caches' last housekeeping ([`Self::sync_caches`] first for exact ones).
    pub fn stats(&self) -> EngineStats {
        let (object_gets, bytes_fetched) = self.fetcher.totals();
        let [pointers, versions] = self.resolver.stats();
        let [piece_lists, pieces, data] = self.reads.stats();
        let mut caches = vec![pointers, versions, piece_lists, pieces, data];
        let (mut shared_tier, mut disk_tier) = (None, None);
        for t in self.fetcher.tiers() {
            let s = t.stats();
            caches.push(CacheStats {
                name: t.name(),
                hits: s.hits,
                misses: s.misses,
                entries: s.entries,
                bytes: s.bytes,
                capacity_bytes: s.capacity_bytes,
                evictions: 0,
            });
            match t.name() {
                "disk" => disk_tier = Some(s),
                _ => shared_tier = Some(s),
            }
        }
        EngineStats {
            store: self.roots.primary().url.clone(),
            object_gets,
            bytes_fetched,
            caches,
            hot_arena: self.reads.arena.stats(),
            shared_tier,
            disk_tier,
            switches: self.telemetry.switch_totals(),
        }
    }

    /// Whole-shard reads (promotions) running now or waiting for their turn (a small fixed budget per process).
    pub fn promotions_in_flight(&self) -> usize {
        self.reads.promotions.in_flight()
    }

    /// Removals of replaced versions' cache entries started and not ended (query/retired.rs).
    pub fn retired_removals_running(&self) -> usize {
        self.reads.retired().running()
    }

    /// Until the caches are emptied of the versions replaced so far (it waits for the lookups still
    /// running on them: retired.rs), then [`Self::sync_caches`].
    pub async fn retired_removed(&self) {
        self.reads.retired().settled().await;
        self.sync_caches().await;
    }

    /// Applies what the caches have pending (evictions, removal notices).
    pub async fn sync_caches(&self) {
        self.resolver.sync().await;
        self.reads.sync().await;
        self.fetcher.tiers().iter().for_each(|t| t.sync());
    }

    /// Everything `/metrics` reports about the engine, read now.
    pub fn telemetry(&self) -> Telemetry {
        self.telemetry.snapshot(self.stats(), self.served())
    }
}

/// What a value found in `layer` answers: itself in a base layer; in a delta, the value after its tag, or
/// "absent" for a tombstone.
#[inline]
fn resolve(layer: &Layer, found: Bytes) -> Result<Option<Bytes>> {
    if !layer.is_delta() {
        return Ok(Some(found));
    }
    match untag(found) {
        Ok(Tagged::Value(v)) => Ok(Some(v)),
        Ok(Tagged::Deleted) => Ok(None),
        Err(why) => Err(crate::error::Error::corrupt(&layer.manifest.path(), why)),
    }
}

/// One layer as `info` and `cairn versions` show it.
pub fn layer_info(m: &Manifest) -> serde_json::Value {
    serde_json::json!({
        "version": m.version,
        "kind": if m.delta.is_some() { "delta" } else { "base" },
        "created_at": m.created_at,
        "age_seconds": humantime::parse_rfc3339(&m.created_at).ok()
            .and_then(|t| std::time::SystemTime::now().duration_since(t).ok()).map(|d| d.as_secs()),
        "shards": m.placement.shards(),
        "rows": m.rows,
        "tombstones": m.tombstones(),
        "bytes": m.bytes,
    })
}

/// The cache tiers `config` names, nearest first: the local disk, then the shared tier. One that cannot be
/// used (an unparsable URL, a directory that cannot be made) is logged and the engine runs without it: a
/// cache tier only ever makes lookups faster.
fn tiers(config: &EngineConfig) -> Vec<Arc<dyn CacheTier>> {
    let mut tiers: Vec<Arc<dyn CacheTier>> = Vec::new();
    if let Some(c) = &config.disk_cache {
        match DiskTier::open(c) {
            Ok(t) => tiers.push(t),
            Err(e) => tracing::error!("{e}: running without the disk cache"),
        }
    }
    if let Some(c) = &config.shared_cache {
        match SharedTier::new(c.clone()) {
            Ok(t) => tiers.push(t),
            Err(e) => tracing::error!("{e}: running without the shared cache"),
        }
    }
    tiers
}
