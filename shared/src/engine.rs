//! The query engine: key → keyspace pointer (cached for a TTL; from a replica root's copy when the primary
//! root fails) → manifest (cached per version) → shard via
//! placement → a hot shard decoded whole (in memory, no I/O), or else: the index piece whose key range
//! holds the key (one range GET of ≤ 8 KiB, cached; format 2: the footer and bloom filters, one suffix GET)
//! → the one block whose key range holds the key, unless its filter rules the key out (one range GET,
//! decoded block cached) → binary search.
//! A shard whose blocks keep being fetched, fast enough to pay for reading it whole (promotion.rs), is
//! promoted: read whole in one GET and decoded. Both
//! `cairn serve` and the Lambda call this; it owns no sockets. Concurrent misses of one pointer, footer or
//! block share one read (single_flight.rs).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use serde::Serialize;

use crate::arena::{Arena, ArenaStats};
use crate::block::{Rows, Search};
use crate::cache::{CacheStats, CountedCache, HIT_SAMPLE, sampled, weight};
use crate::config::EngineConfig;
use crate::engine_telemetry::{EngineTelemetry, ServedKeyspace, Telemetry};
use crate::error::{Error, Result};
use crate::failover::{ReplicatedStore, Validator};
use crate::key::{validate_key, validate_keyspace};
use crate::manifest::ShardEntry;
use crate::manifest::{Manifest, checksum_of};
use crate::piece::{self, PieceRef};
use crate::pointer;
use crate::promotion::Promotion;
use crate::ring::Placement;
use crate::shard_reader::ShardMeta;
use crate::shard_writer::block_checksum;
use crate::single_flight::SingleFlight;
use crate::store::Store;
use crate::ttl_map::{Lookup, TtlMap};

/// A published version, ready for lookups.
#[derive(Debug)]
pub struct Keyspace {
    /// The manifest's top level: with many shards, where their entries are (groups), not the entries.
    pub manifest: Manifest,
    pub placement: Placement,
    /// Where shard objects (and manifest groups) are read: the primary, or every copy behind failover and
    /// hedging.
    pub shard_store: Arc<dyn ObjectStore>,
    pub replicated: Option<Arc<ReplicatedStore>>,
    /// Process-unique, so cache keys are small and never mix versions.
    uid: u64,
    /// Per group of [`Manifest::group_shards`] shards, its entries and lookup state, loaded on first use
    /// (an ungrouped manifest is one group, loaded with it).
    groups: Vec<std::sync::OnceLock<Group>>,
    group_shards: u32,
}

/// The shards of one manifest group, ready for lookups.
#[derive(Debug)]
struct Group {
    entries: Vec<ShardEntry>,
    /// Per shard, the shard decoded whole once it is hot: read with no lock and no cache lookup. The data
    /// cache owns the memory; evicting the entry empties the slot.
    hot: Vec<Arc<HotSlot>>,
    /// Per shard, its recent block fetches: whether reading it whole would pay.
    promotion: Vec<Promotion>,
}

impl Group {
    fn new(entries: Vec<ShardEntry>) -> Group {
        let hot = entries.iter().map(|_| Arc::new(HotSlot::empty())).collect();
        let promotion = entries.iter().map(|_| Promotion::default()).collect();
        Group { entries, hot, promotion }
    }
}

type HotSlot = ArcSwapOption<Rows>;

impl Keyspace {
    /// Bytes this version holds besides its cached shards: the top level, the ring, and the groups loaded
    /// with it (groups loaded later add ~500 bytes a shard, bounded by the keyspace's shard count).
    fn weight(&self) -> usize {
        let groups: usize = self.groups.iter().filter_map(|g| g.get()).map(Group::weight).sum();
        1024 + self.manifest.groups.len() * 96 + groups + self.placement.weight()
    }

    /// Group and index in it of `shard`.
    fn locate(&self, shard: u32) -> (usize, usize) {
        ((shard / self.group_shards) as usize, (shard % self.group_shards) as usize)
    }

    /// Shard entries of the groups loaded so far (every one for an ungrouped manifest).
    fn loaded_entries(&self) -> impl Iterator<Item = &ShardEntry> {
        self.groups.iter().filter_map(|g| g.get()).flat_map(|g| g.entries.iter())
    }
}

impl Group {
    fn weight(&self) -> usize {
        let entries: usize = self.entries.iter().map(|s| 160 + s.path.len()).sum();
        let pieces: usize = self.entries.iter().map(|s| s.pieces.iter().map(|p| 48 + p.key.len()).sum::<usize>()).sum();
        entries + pieces + self.hot.len() * 112
    }
}

/// A data cache entry: a block, or a whole shard together with the slot that serves it.
#[derive(Clone)]
struct Cached {
    rows: Arc<Rows>,
    slot: Option<Weak<HotSlot>>,
}

// One hot-shard hit in HIT_SAMPLE is reported to the data cache (its eviction policy and hit count).
thread_local! {
    static HOT_TICK: Cell<u32> = const { Cell::new(0) };
}

/// Opens a replica root named in a manifest (default: [`Store::open`]; tests wrap stores in faults).
pub type Resolver = Arc<dyn Fn(&str) -> Result<Store> + Send + Sync>;

/// (keyspace uid, shard, index piece, block in it); ([`WHOLE_SHARD`], [`WHOLE_SHARD`]) for a hot shard.
type DataKey = (u64, u32, u32, u32);
/// (keyspace uid, shard, index piece; 0 for a format-2 shard's one index).
type PieceKey = (u64, u32, u32);
const WHOLE_SHARD: u32 = u32::MAX;
static NEXT_UID: AtomicU64 = AtomicU64::new(1);

pub struct Engine {
    store: Store,
    config: EngineConfig,
    resolver: Resolver,
    replicas: std::sync::Mutex<std::collections::HashMap<String, Store>>,
    /// keyspace → the replica roots its last loaded manifest named: where its pointer is read when the
    /// primary fails, besides the configured ones.
    known_replicas: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// keyspace → the pointer served and its version: a pointer read later is taken only if it supersedes
    /// it (never back within a lineage; a keyspace created anew is followed).
    served: std::sync::Mutex<std::collections::HashMap<String, (pointer::Pointer, Arc<Keyspace>)>>,
    /// keyspace → current version (None = no such keyspace), re-read after the TTL.
    pointers: TtlMap<Option<Arc<Keyspace>>>,
    /// (keyspace, version) → manifest; versions are immutable.
    manifests: CountedCache<(String, String), Arc<Keyspace>>,
    /// (keyspace uid, shard) → the pieces a shard's root lists (shards with more than a manifest entry lists).
    roots: CountedCache<(u64, u32), Arc<Vec<PieceRef>>>,
    /// (keyspace uid, shard, piece) → the blocks an index piece lists.
    shards: CountedCache<PieceKey, Arc<ShardMeta>>,
    /// Decoded blocks and whole (hot) shards, under one byte budget.
    data: CountedCache<DataKey, Cached>,
    /// Where hot shards live (on huge pages), sized like the data cache that owns them.
    arena: Arc<Arena>,
    /// Concurrent misses of one pointer, footer or block share one read (a cold MGET, the first requests
    /// after a start).
    keyspace_loads: SingleFlight<String, Option<Arc<Keyspace>>>,
    root_reads: SingleFlight<(u64, u32), Arc<Vec<PieceRef>>>,
    group_reads: SingleFlight<(u64, u32), ()>,
    shard_opens: SingleFlight<PieceKey, Arc<ShardMeta>>,
    block_reads: SingleFlight<DataKey, Arc<Rows>>,
    /// Bounds store reads in flight per process (`max_concurrent_gets`).
    gets_in_flight: tokio::sync::Semaphore,
    gets: AtomicU64,
    bytes_fetched: AtomicU64,
    /// Bytes inserted into the data cache so far: the clock promotion decisions are measured in.
    turnover: AtomicU64,
    /// What `/metrics` reports besides the caches (engine_telemetry.rs).
    telemetry: EngineTelemetry,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub failovers: u64,
    pub hedges: u64,
    pub checksum_failures: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            object_gets: self.object_gets.saturating_sub(o.object_gets),
            bytes_fetched: self.bytes_fetched.saturating_sub(o.bytes_fetched),
            cache_hits: self.cache_hits.saturating_sub(o.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(o.cache_misses),
            failovers: self.failovers.saturating_sub(o.failovers),
            hedges: self.hedges.saturating_sub(o.hedges),
            checksum_failures: self.checksum_failures.saturating_sub(o.checksum_failures),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    pub store: String,
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub caches: Vec<CacheStats>,
    pub hot_arena: ArenaStats,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Self {
        let meta_bytes = config.metadata_cache_bytes;
        let permits = config.max_concurrent_gets.max(1);
        let telemetry = EngineTelemetry::default();
        let store = telemetry.metered(store);
        let hot_shards = telemetry.hot_shards.clone();
        Engine {
            pointers: TtlMap::new("pointer", config.manifest_ttl, 4096),
            manifests: CountedCache::new("manifest", meta_bytes / 8, None, |_, v| weight(v.weight())),
            roots: CountedCache::new("shard_roots", meta_bytes / 4, None, |_, v| {
                weight(64 + v.iter().map(|p| 48 + p.key.len()).sum::<usize>())
            }),
            shards: CountedCache::new("shard_metadata", meta_bytes, None, |_, v| weight(v.weight())),
            data: CountedCache::with_listener(
                "data",
                config.page_cache_bytes,
                None,
                |_, v| weight(v.rows.weight()),
                move |k, v, cause| {
                    if k.3 == WHOLE_SHARD {
                        hot_shards.fetch_sub(1, Relaxed);
                    }
                    // Evicted or invalidated (not replaced): the hot slot lets go of the shard too.
                    if cause == moka::notification::RemovalCause::Replaced {
                        return;
                    }
                    if let Some(slot) = v.slot.and_then(|w| w.upgrade())
                        && slot.load().as_ref().is_some_and(|r| Arc::ptr_eq(r, &v.rows))
                    {
                        slot.store(None);
                    }
                },
            ),
            arena: Arena::new(config.page_cache_bytes as usize),
            keyspace_loads: SingleFlight::default(),
            root_reads: SingleFlight::default(),
            group_reads: SingleFlight::default(),
            shard_opens: SingleFlight::default(),
            block_reads: SingleFlight::default(),
            store,
            config,
            resolver: Arc::new(|url: &str| Store::open(url)),
            replicas: Default::default(),
            known_replicas: Default::default(),
            served: Default::default(),
            gets_in_flight: tokio::sync::Semaphore::new(permits),
            gets: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
            turnover: AtomicU64::new(0),
            telemetry,
        }
    }

    /// Replaces how replica roots named in manifests are opened.
    pub fn with_resolver(mut self, resolver: Resolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Every root holding a copy of `keyspace`'s shards, primary first.
    pub fn roots(&self, keyspace: &Keyspace) -> Result<Vec<Store>> {
        let mut roots = vec![self.store.clone()];
        for url in &keyspace.manifest.replicas {
            roots.push(self.replica(url)?);
        }
        Ok(roots)
    }

    fn replica(&self, url: &str) -> Result<Store> {
        let mut map = self.replicas.lock().expect("replica map");
        if let Some(s) = map.get(url) {
            return Ok(s.clone());
        }
        let s = self.telemetry.metered((self.resolver)(url)?);
        map.insert(url.to_string(), s.clone());
        Ok(s)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The keyspace's current version, from cache when fresh.
    pub async fn keyspace(&self, ks: &str) -> Result<Arc<Keyspace>> {
        validate_keyspace(ks)?;
        let cached = match self.pointers.get(ks) {
            Lookup::Use(c) => c,
            // Slow paths are boxed: their state would otherwise make every request's future large (the
            // router allocates one per request, MGET holds up to 1,000; see lookup_futures_stay_small).
            Lookup::Load(load) => {
                let stale = load.stale.clone();
                let read = self.keyspace_loads.run(ks.to_string(), async {
                    let loaded = self.load_keyspace(ks, stale.as_ref()).await?;
                    self.pointers.insert(load, loaded.clone());
                    Ok(loaded)
                });
                match Box::pin(read).await {
                    Ok(loaded) => loaded,
                    // A refresh that failed answers from the pointer it was refreshing (at most 2 × TTL old);
                    // the next request past the TTL tries again.
                    Err(e) => match stale {
                        Some(stale) => {
                            tracing::warn!(keyspace = ks, error = %e, "pointer refresh failed; using the cached one");
                            stale
                        }
                        None => return Err(e),
                    },
                }
            }
        };
        cached.ok_or_else(|| Error::KeyspaceNotFound(ks.to_string()))
    }

    /// The pointer's version, loaded; or the one already served when the pointer read does not supersede it
    /// (a lagging replica's copy, read while the primary was slow).
    async fn load_keyspace(&self, ks: &str, stale: Option<&Option<Arc<Keyspace>>>) -> Result<Option<Arc<Keyspace>>> {
        let Some((current, root)) = self.read_pointer(ks).await? else {
            // The primary says there is no such keyspace: what was served is gone, and a keyspace created
            // anew under this name starts afresh.
            let gone = self.served.lock().expect("served pointers").remove(ks);
            if let Some((_, old)) = gone {
                self.forget(&old);
            }
            return Ok(None);
        };
        // The primary's pointer is the commit point: always taken (a keyspace restored from a backup, or
        // rebuilt by a host whose clock is behind, included). A replica's copy may lag: taken only if it
        // supersedes what is served.
        let from_primary = root.url == self.store.url;
        let held = self.served.lock().expect("served pointers").get(ks).cloned();
        if let Some((p, k)) = &held
            && !from_primary
            && !current.pointer.supersedes(p)
        {
            tracing::warn!(keyspace = ks, seq = current.pointer.seq, served = p.seq, root = %root.url, "ignoring an older pointer");
            return Ok(Some(stale.cloned().flatten().unwrap_or_else(|| k.clone())));
        }
        // The version already served keeps its identity even if the manifest cache let it go: its footers,
        // blocks and hot shards are cached under its uid.
        let same = held.and_then(|(_, k)| (k.manifest.version == current.pointer.version).then_some(k));
        let k = match same {
            Some(k) => k,
            None => self.load_manifest(ks, &current, &root).await?,
        };
        let superseded = {
            let mut served = self.served.lock().expect("served pointers");
            match served.get(ks) {
                Some((p, _)) if !from_primary && !current.pointer.supersedes(p) => None,
                _ => served.insert(ks.to_string(), (current.pointer.clone(), k.clone())).map(|(_, old)| old),
            }
        };
        if let Some(old) = superseded.filter(|old| old.uid != k.uid) {
            self.forget(&old);
        }
        Ok(Some(k))
    }

    /// Drops what the caches hold for a version this engine no longer serves (a rollback to it reloads it).
    fn forget(&self, old: &Keyspace) {
        self.manifests.invalidate(&(old.manifest.keyspace.clone(), old.manifest.version.clone()));
        for entry in old.loaded_entries() {
            let shard = entry.shard;
            // A root's pieces are only cached while the root is (a manifest's count is not trusted here).
            let pieces = match entry.root {
                Some(_) => self.roots.peek(&(old.uid, shard)).map_or(0, |r| r.len()),
                None => entry.pieces.len(),
            };
            for p in 0..pieces.max(1) as u32 {
                if let Some(meta) = self.shards.peek(&(old.uid, shard, p)) {
                    for b in 0..meta.blocks.len() as u32 {
                        self.data.invalidate(&(old.uid, shard, p, b));
                    }
                }
                self.shards.invalidate(&(old.uid, shard, p));
            }
            self.roots.invalidate(&(old.uid, shard));
            self.data.invalidate(&(old.uid, shard, WHOLE_SHARD, WHOLE_SHARD));
        }
    }

    /// The version `current` names, from the manifest cache or read from `root`.
    async fn load_manifest(&self, ks: &str, current: &pointer::Current, root: &Store) -> Result<Arc<Keyspace>> {
        let id = (ks.to_string(), current.pointer.version.clone());
        if let Some(k) = self.manifests.get(&id) {
            return Ok(k);
        }
        let manifest = self.read_manifest_top(ks, current, root).await?;
        let mut known = self.known_replicas.lock().expect("known replicas");
        if known.get(ks) != Some(&manifest.replicas) {
            known.insert(ks.to_string(), manifest.replicas.clone());
        }
        drop(known);
        let placement = Placement::new(&manifest.placement).map_err(|why| Error::corrupt(&manifest.path(), why))?;
        let (shard_store, replicated): (Arc<dyn ObjectStore>, _) = if manifest.replicas.is_empty() {
            (self.store.inner.clone(), None)
        } else {
            let mut roots = vec![self.store.inner.clone()];
            for url in &manifest.replicas {
                roots.push(self.replica(url)?.inner);
            }
            let r = Arc::new(
                ReplicatedStore::new(roots, self.config.failover.clone()).with_totals(self.telemetry.replicas.clone()),
            );
            (r.clone(), Some(r))
        };
        let uid = NEXT_UID.fetch_add(1, Relaxed);
        let group_shards = manifest.group_shards();
        let mut groups: Vec<std::sync::OnceLock<Group>> = Vec::new();
        if manifest.groups.is_empty() {
            groups.push(std::sync::OnceLock::from(Group::new(manifest.shards.clone())));
        } else {
            groups.resize_with(manifest.groups.len(), std::sync::OnceLock::new);
        }
        let mut manifest = manifest;
        manifest.shards = Vec::new();
        let k = Arc::new(Keyspace { manifest, placement, shard_store, replicated, uid, groups, group_shards });
        // One Keyspace per version, whoever loaded it first: hot shards and footers are cached under its uid,
        // so a request holding another copy would fetch and decode every shard again (measured: twice the
        // memory after start-up, when the first requests all loaded it at once).
        Ok(self.manifests.get_or_insert(id, k))
    }

    /// The manifest top level `current` names, verified against the size and checksum the pointer carries
    /// (a pointer of an older build: by its content), read like shard data: from the root the pointer came
    /// from or another root this engine knows for the keyspace (the primary, `CAIRN_REPLICAS`, the replicas
    /// its last manifest named), failing over on a missing, corrupt or slow copy (per-attempt timeout,
    /// hedging). The pointer names it: missing everywhere is lost data, not an unknown version.
    async fn read_manifest_top(&self, ks: &str, current: &pointer::Current, root: &Store) -> Result<Manifest> {
        let version = current.pointer.version.as_str();
        let path = crate::layout::manifest_path(ks, version);
        let known = self.known_replicas.lock().expect("known replicas").get(ks).cloned().unwrap_or_default();
        let mut roots = vec![root.clone()];
        for url in std::iter::once(&self.store.url).chain(&self.config.replicas).chain(&known) {
            if roots.iter().any(|r| r.url == *url) {
                continue;
            }
            match url == &self.store.url {
                true => roots.push(self.store.clone()),
                false => roots.extend(self.replica(url).ok()),
            }
        }
        let expected = current.pointer.manifest.as_ref();
        let valid = |b: &[u8]| match expected {
            Some(top) => top.matches(b),
            None => Manifest::parse(&path, b).is_ok_and(|m| m.keyspace == ks && m.version == version),
        };
        let missing = || Error::Missing { path: path.clone() };
        let bytes = if roots.len() == 1 {
            let bytes = match root.inner.get(&path).await {
                Ok(got) => got.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => return Err(missing()),
                Err(e) => return Err(e.into()),
            };
            if !valid(&bytes) {
                self.telemetry.checksum_failures.fetch_add(1, Relaxed);
                return Err(Error::corrupt(&path, "not the manifest the pointer names (checksum mismatch)"));
            }
            bytes
        } else {
            let stores = roots.iter().map(|r| r.inner.clone()).collect();
            // No hedging: a new store has no latency history to hedge by, and a version loads once.
            let config = crate::failover::FailoverConfig { hedging: false, ..self.config.failover.clone() };
            let replicated = ReplicatedStore::new(stores, config).with_totals(self.telemetry.replicas.clone());
            replicated.get_verified(&path, GetOptions::default(), &valid).await.map_err(|e| match e {
                e if crate::failover::is_corrupt(&e) => {
                    Error::corrupt(&path, format!("no copy is the manifest the pointer names: {e}"))
                }
                object_store::Error::NotFound { .. } => missing(),
                e => Error::Store(e),
            })?
        };
        self.count(bytes.len() as u64);
        let m = Manifest::parse(&path, &bytes)?;
        if m.keyspace != ks || m.version != version {
            return Err(Error::corrupt(&path, format!("it is the manifest of {}/{}", m.keyspace, m.version)));
        }
        Ok(m)
    }

    /// The keyspace's pointer and the root it was read from (where its manifest is read too): the primary,
    /// or, when the primary fails or does not answer within the attempt timeout, the first replica root
    /// with a copy (configured ones first, then those its last manifest named). A replica's copy may lag the
    /// primary by a publish: stale, never partial. "No such keyspace" comes from the primary only.
    async fn read_pointer(&self, ks: &str) -> Result<Option<(pointer::Current, Store)>> {
        let known = self.known_replicas.lock().expect("known replicas").get(ks).cloned().unwrap_or_default();
        let fallbacks: Vec<&String> = self.config.replicas.iter().chain(&known).collect();
        // With nowhere to fail over to, a slow primary is waited for, as before replicas held pointers.
        let attempt = if fallbacks.is_empty() { Duration::MAX } else { self.config.failover.attempt_timeout };
        let read = |root: Store| async move {
            self.gets.fetch_add(1, Relaxed);
            match tokio::time::timeout(attempt, pointer::read(root.inner.as_ref(), ks)).await {
                Ok(r) => r.map(|c| c.map(|c| (c, root))),
                Err(_) => Err(Error::Store(object_store::Error::Generic {
                    store: "pointer",
                    source: format!("{}: no answer within {attempt:?}", root.url).into(),
                })),
            }
        };
        let primary_error = match read(self.store.clone()).await {
            Ok(found) => return Ok(found),
            Err(e) => e,
        };
        let mut tried = std::collections::HashSet::new();
        for url in fallbacks {
            if !tried.insert(url) {
                continue;
            }
            let Ok(root) = self.replica(url) else { continue };
            if let Ok(Some(found)) = read(root).await {
                tracing::warn!(keyspace = ks, replica = %url, error = %primary_error, "primary root unreadable; using a replica's pointer");
                return Ok(Some(found));
            }
        }
        Err(primary_error)
    }

    /// Forgets cached pointers so the next request re-reads them (tests, admin).
    pub fn refresh(&self) {
        self.pointers.invalidate_all();
    }

    pub async fn get(&self, ks: &str, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        let keyspace = self.keyspace(ks).await?;
        self.get_in(&keyspace, key).await
    }

    /// Looks a key up in an already resolved keyspace version.
    pub async fn lookup(&self, keyspace: &Keyspace, key: &str) -> Result<Option<Bytes>> {
        validate_key(key)?;
        self.get_in(keyspace, key).await
    }

    /// Looks several keys up in one version of the keyspace (a consistent snapshot), [`MGET_CONCURRENCY`]
    /// at a time; refused once the values found pass `mget_max_bytes` (memory per request stays bounded).
    pub async fn mget(&self, ks: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        use futures::StreamExt;
        for k in keys {
            validate_key(k)?;
        }
        let keyspace = self.keyspace(ks).await?;
        let keyspace = &*keyspace;
        // Indices, not references, into the closure: a closure over `&String` makes the stream's future not
        // provably Send (a rustc limitation with higher-ranked lifetimes), and axum's handlers must be.
        let mut answers = futures::stream::iter(0..keys.len())
            .map(|i| self.boxed_get(keyspace, &keys[i]))
            .buffered(crate::config::MGET_CONCURRENCY);
        let (mut out, mut bytes) = (Vec::with_capacity(keys.len()), 0u64);
        while let Some(value) = answers.next().await {
            let value = value?;
            bytes += value.as_ref().map_or(0, |v| v.len() as u64);
            if bytes > self.config.mget_max_bytes {
                return Err(Error::TooLarge { limit: self.config.mget_max_bytes });
            }
            out.push(value);
        }
        Ok(out)
    }

    /// [`Self::get_in`], boxed under one lifetime: an MGET's stream of unboxed lookups is not provably Send
    /// (axum's handlers must be).
    fn boxed_get<'a>(
        &'a self,
        ks: &'a Keyspace,
        key: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<Bytes>>> {
        Box::pin(self.get_in(ks, key))
    }

    async fn get_in(&self, ks: &Keyspace, key: &str) -> Result<Option<Bytes>> {
        let shard = ks.placement.shard_of(key.as_bytes());
        let (g, i) = ks.locate(shard);
        let group = match ks.groups[g].get() {
            Some(group) => group,
            None => Box::pin(self.load_group(ks, g)).await?,
        };
        let entry = &group.entries[i];
        if entry.rows == 0 {
            return Ok(None);
        }
        if let Some(hot) = group.hot[i].load().as_ref() {
            if sampled(&HOT_TICK) {
                self.data.touch(&(ks.uid, shard, WHOLE_SHARD, WHOLE_SHARD), HIT_SAMPLE as u64);
            }
            return Ok(hot.get(key.as_bytes()));
        }
        let root = match entry.root {
            Some(_) => match self.roots.get(&(ks.uid, shard)) {
                Some(r) => Some(r),
                None => Some(Box::pin(self.root(ks, shard, entry)).await?),
            },
            None => None,
        };
        let pieces: &[PieceRef] = root.as_deref().map_or(&entry.pieces, |r| r.as_slice());
        let piece = if pieces.is_empty() {
            0
        } else {
            match piece::locate(pieces, key.as_bytes()) {
                Some(p) => p as u32,
                None => return Ok(None),
            }
        };
        let meta = match self.shards.get(&(ks.uid, shard, piece)) {
            Some(m) => m,
            None => {
                let open = self.shard_opens.run((ks.uid, shard, piece), async {
                    let m = Arc::new(self.open_piece(ks, entry, pieces.get(piece as usize)).await?);
                    self.shards.insert((ks.uid, shard, piece), m.clone());
                    Ok(m)
                });
                Box::pin(open).await?
            }
        };
        let Some(b) = meta.probe(key.as_bytes()) else { return Ok(None) };
        let block = (ks.uid, shard, piece, b as u32);
        let rows = match self.data.get(&block) {
            Some(c) => c.rows,
            None => {
                // Only the caller whose read ran counts it towards promotion (and may promote).
                let read_here = AtomicBool::new(false);
                let read = self.block_reads.run(block, async {
                    read_here.store(true, Relaxed);
                    let r = Arc::new(self.read_block(ks, &meta, b).await?);
                    self.insert_data(block, Cached { rows: r.clone(), slot: None });
                    Ok(r)
                });
                let r = Box::pin(read).await?;
                if read_here.load(Relaxed) {
                    Box::pin(self.maybe_promote(ks, group, shard, pieces, &meta, meta.blocks[b].len)).await;
                }
                r
            }
        };
        Ok(rows.get(key.as_bytes()))
    }

    /// One range GET: the block's key and value pages, checksum verified, decoded.
    async fn read_block(&self, ks: &Keyspace, meta: &ShardMeta, b: usize) -> Result<Rows> {
        let at = meta.blocks[b];
        let valid = |d: &[u8]| at.checksum.is_none_or(|sum| block_checksum(d) == sum);
        let range = at.offset..at.offset + at.len as u64;
        let opts = GetOptions { range: Some(range.into()), ..Default::default() };
        let buf = self.fetch(ks, &meta.path, opts, &valid).await?;
        Rows::decode(buf, [(0, at.chunks, at.rows)], Search::Binary).map_err(|why| Error::corrupt(&meta.path, why))
    }

    /// Once a shard's blocks are being fetched fast enough that reading it whole pays (promotion.rs), reads
    /// it in one GET and keeps it decoded whole, if it fits an eighth of the data cache (so one shard cannot
    /// flush the rest). A failure only leaves the shard served block by block (the lookup at hand already
    /// has its block).
    async fn maybe_promote(
        &self,
        ks: &Keyspace,
        group: &Group,
        shard: u32,
        pieces: &[PieceRef],
        meta: &ShardMeta,
        block_len: u32,
    ) {
        let i = ks.locate(shard).1;
        let range = match pieces.last() {
            // The blocks start after the leading magic; the last piece follows the last block.
            Some(last) if last.offset >= 4 => 4..last.offset + last.len as u64,
            Some(_) => return,
            None => match meta.data_range() {
                Some(r) => r,
                None => return,
            },
        };
        let capacity = self.data.capacity();
        let state = &group.promotion[i];
        let now = self.turnover.load(Relaxed);
        if !state.note_fetch(now, block_len as u64, range.end - range.start, capacity)
            || range.end - range.start > capacity / 8
            || state.promoting.swap(true, Relaxed)
        {
            return;
        }
        let object_len = group.entries[i].bytes;
        let result = self.read_shard(ks, pieces, meta, range, object_len).await;
        state.reset();
        state.promoting.store(false, Relaxed);
        match result {
            Ok(rows) => {
                let rows = Arc::new(rows);
                let slot = &group.hot[i];
                slot.store(Some(rows.clone()));
                self.insert_data(
                    (ks.uid, shard, WHOLE_SHARD, WHOLE_SHARD),
                    Cached { rows, slot: Some(Arc::downgrade(slot)) },
                );
                for p in 0..pieces.len().max(1) as u32 {
                    if let Some(m) = self.shards.peek(&(ks.uid, shard, p)) {
                        for b in 0..m.blocks.len() as u32 {
                            self.data.invalidate(&(ks.uid, shard, p, b));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(shard = %meta.path, error = %e, "could not load the whole shard; serving it block by block")
            }
        }
    }

    fn insert_data(&self, key: DataKey, value: Cached) {
        self.turnover.fetch_add(value.rows.weight() as u64, Relaxed);
        if key.3 == WHOLE_SHARD {
            self.telemetry.hot_shards.fetch_add(1, Relaxed);
        }
        self.data.insert(key, value);
    }

    /// Reads every block of a shard in one GET (format 3: with the index pieces between them, each verified
    /// against the manifest, then each block against its piece; format 2: the blocks `meta` lists).
    async fn read_shard(
        &self,
        ks: &Keyspace,
        pieces: &[PieceRef],
        meta: &ShardMeta,
        range: std::ops::Range<u64>,
        object_len: u64,
    ) -> Result<Rows> {
        let base = range.start;
        let blocks_in = |d: &[u8]| -> std::result::Result<Vec<crate::shard_reader::BlockRef>, String> {
            if pieces.is_empty() {
                return Ok(meta.blocks.clone());
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
                    at.checksum
                        .is_none_or(|sum| d.get(lo..lo + at.len as usize).is_some_and(|b| block_checksum(b) == sum))
                })
            })
        };
        let opts = GetOptions { range: Some(range.into()), ..Default::default() };
        let buf = self.fetch(ks, &meta.path, opts, &valid).await?;
        let blocks = blocks_in(&buf).map_err(|why| Error::corrupt(&meta.path, why))?;
        if blocks.iter().any(|at| at.offset < base) {
            return Err(Error::corrupt(&meta.path, "a block lies before the shard's data"));
        }
        let blocks = blocks.iter().map(|at| ((at.offset - base) as usize, at.chunks, at.rows));
        Rows::decode(buf, blocks, Search::Hashed(Some(&self.arena))).map_err(|why| Error::corrupt(&meta.path, why))
    }

    /// Reads bytes of a shard object that `valid` must accept: from the first intact copy when the keyspace
    /// is replicated, else from the primary (a mismatch is then a corruption error, never an answer).
    async fn fetch(&self, ks: &Keyspace, path: &Path, opts: GetOptions, valid: Validator<'_>) -> Result<Bytes> {
        let _permit = self.gets_in_flight.acquire().await.expect("the semaphore is never closed");
        let missing = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => Error::Missing { path: path.clone() },
            e => Error::Store(e),
        };
        let bytes = match &ks.replicated {
            Some(r) => r.get_verified(path, opts, valid).await.map_err(|e| match e {
                e if crate::failover::is_corrupt(&e) => {
                    Error::corrupt(path, format!("no intact copy could be read: {e}"))
                }
                e => missing(e),
            })?,
            None => {
                let bytes = ks.shard_store.get_opts(path, opts).await.map_err(missing)?.bytes().await?;
                if !valid(&bytes) {
                    self.telemetry.checksum_failures.fetch_add(1, Relaxed);
                    return Err(Error::corrupt(path, "checksum mismatch"));
                }
                bytes
            }
        };
        self.count(bytes.len() as u64);
        Ok(bytes)
    }

    /// One range GET of an index piece, verified against the manifest's checksum (format 2: one suffix GET
    /// of the footer and filters), yields the blocks it lists.
    async fn open_piece(&self, ks: &Keyspace, entry: &ShardEntry, piece: Option<&PieceRef>) -> Result<ShardMeta> {
        let path = Path::from(entry.path.as_str());
        if let Some(p) = piece {
            let opts = GetOptions { range: Some((p.offset..p.offset + p.len as u64).into()), ..Default::default() };
            let valid = |b: &[u8]| block_checksum(b) == p.checksum;
            let data = self.fetch(ks, &path, opts, &valid).await?;
            return ShardMeta::from_piece(path, entry.bytes, &data, p.key.as_bytes());
        }
        let suffix = entry.meta_bytes.min(entry.bytes);
        let opts = GetOptions { range: Some(GetRange::Suffix(suffix)), ..Default::default() };
        let expected = entry.meta_checksum.as_str();
        let valid = |b: &[u8]| checksum_of(b) == expected;
        let data = self.fetch(ks, &path, opts, &valid).await?;
        ShardMeta::from_suffix(path, entry.bytes, data)
    }

    /// Reads group `g` of the keyspace's manifest (verified against the top level) and makes it ready; the
    /// first caller reads it, concurrent ones wait for that read.
    async fn load_group<'k>(&self, ks: &'k Keyspace, g: usize) -> Result<&'k Group> {
        self.group_reads
            .run((ks.uid, g as u32), async {
                if ks.groups[g].get().is_some() {
                    return Ok(());
                }
                let path = ks.manifest.group_path(g);
                let want = &ks.manifest.groups[g];
                let valid = |b: &[u8]| b.len() as u64 == want.bytes && checksum_of(b) == want.checksum;
                // Only the bytes the top level names: its checksum vouches for them, whatever else the object
                // may hold, and a reader never pulls more than that into memory.
                let opts = GetOptions { range: Some((0..want.bytes).into()), ..Default::default() };
                let bytes = self.fetch(ks, &path, opts, &valid).await?;
                let entries = ks.manifest.parse_group(g, &bytes)?;
                let _ = ks.groups[g].set(Group::new(entries));
                Ok(())
            })
            .await?;
        ks.groups[g].get().ok_or_else(|| Error::corrupt(&ks.manifest.group_path(g), "group not loaded"))
    }

    /// The version's manifest with every shard entry (its groups loaded as lookups load them): what health
    /// checks walk. `Keyspace::manifest` holds only the top level.
    pub async fn full_manifest(&self, ks: &Keyspace) -> Result<Manifest> {
        let mut m = ks.manifest.clone();
        for g in 0..ks.groups.len() {
            let group = match ks.groups[g].get() {
                Some(group) => group,
                None => self.load_group(ks, g).await?,
            };
            m.shards.extend(group.entries.iter().cloned());
        }
        m.groups.clear();
        Ok(m)
    }

    /// The pieces a shard's root lists: one range GET, verified against the manifest, then cached.
    async fn root(&self, ks: &Keyspace, shard: u32, entry: &ShardEntry) -> Result<Arc<Vec<PieceRef>>> {
        if let Some(r) = self.roots.get(&(ks.uid, shard)) {
            return Ok(r);
        }
        let root = entry.root.expect("called for shards with a root");
        self.root_reads
            .run((ks.uid, shard), async {
                let path = Path::from(entry.path.as_str());
                let range = root.offset..root.offset + root.len as u64;
                let opts = GetOptions { range: Some(range.into()), ..Default::default() };
                let valid = |b: &[u8]| block_checksum(b) == root.checksum;
                let data = self.fetch(ks, &path, opts, &valid).await?;
                let pieces = piece::decode_root(&data, entry.bytes, &root).map_err(|why| Error::corrupt(&path, why))?;
                let pieces = Arc::new(pieces);
                self.roots.insert((ks.uid, shard), pieces.clone());
                Ok(pieces)
            })
            .await
    }

    fn count(&self, bytes: u64) {
        self.gets.fetch_add(1, Relaxed);
        self.bytes_fetched.fetch_add(bytes, Relaxed);
    }

    /// Monotonic counters for per-request accounting (take one before and one after).
    pub fn counters(&self) -> Counters {
        let (mut cache_hits, mut cache_misses) = (0, 0);
        let all = [
            self.pointers.counts(),
            self.manifests.counts(),
            self.roots.counts(),
            self.shards.counts(),
            self.data.counts(),
        ];
        for (h, m) in all {
            cache_hits += h;
            cache_misses += m;
        }
        let (failovers, hedges, checksum_failures) = self.telemetry.replica_counts();
        Counters {
            object_gets: self.gets.load(Relaxed),
            bytes_fetched: self.bytes_fetched.load(Relaxed),
            cache_hits,
            cache_misses,
            failovers,
            hedges,
            checksum_failures,
        }
    }

    /// What `GET /v1/keyspaces/{ks}` answers (and the Python package's `info`): the published version,
    /// its size and placement, replica failover and cache figures.
    pub async fn info(&self, ks: &str) -> Result<serde_json::Value> {
        let k = self.keyspace(ks).await?;
        let m = &k.manifest;
        Ok(serde_json::json!({
            "keyspace": m.keyspace,
            "version": m.version,
            "created_at": m.created_at,
            "shards": m.placement.shards(),
            "keys": m.rows,
            "bytes": m.bytes,
            "placement": m.placement,
            "replicas": m.replicas,
            "failover": k.replicated.as_ref().map(|r| r.stats()),
            "cache": self.stats(),
        }))
    }

    pub async fn list_keyspaces(&self) -> Result<Vec<String>> {
        pointer::list_keyspaces(self.store.inner.as_ref()).await
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            store: self.store.url.clone(),
            object_gets: self.gets.load(Relaxed),
            bytes_fetched: self.bytes_fetched.load(Relaxed),
            caches: vec![
                self.pointers.stats(),
                self.manifests.stats(),
                self.roots.stats(),
                self.shards.stats(),
                self.data.stats(),
            ],
            hot_arena: self.arena.stats(),
        }
    }

    /// Everything `/metrics` reports about the engine, read now.
    pub fn telemetry(&self) -> Telemetry {
        let served = self.served.lock().expect("served versions");
        let mut keyspaces: Vec<ServedKeyspace> = served
            .iter()
            .map(|(name, (p, k))| ServedKeyspace {
                keyspace: name.clone(),
                version: k.manifest.version.clone(),
                seq: p.seq,
                keys: k.manifest.rows,
                bytes: k.manifest.bytes,
            })
            .collect();
        drop(served);
        keyspaces.sort_by(|a, b| a.keyspace.cmp(&b.keyspace));
        let stats = self.stats();
        self.telemetry.snapshot(stats, keyspaces)
    }
}
