//! The query engine: key → keyspace pointer (cached for a TTL) → manifest (cached per version) → shard via
//! placement → shard metadata (one suffix GET, cached) → bloom filter / page range → the one key page
//! (range GET, decoded page cached) → binary search → the value page. Both `cairn serve` and the Lambda
//! call this; it owns no sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use serde::Serialize;

use crate::cache::{CacheStats, CountedCache, weight};
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::failover::{ReplicatedStore, Validator};
use crate::key::{validate_key, validate_keyspace};
use crate::manifest::ShardEntry;
use crate::manifest::{Manifest, checksum_of};
use crate::page::{self, Page};
use crate::pointer;
use crate::ring::Placement;
use crate::shard_reader::{PageRef, Probe, ShardMeta};
use crate::store::Store;

/// A published version, ready for lookups.
#[derive(Debug)]
pub struct Keyspace {
    pub manifest: Manifest,
    pub placement: Placement,
    /// Where shard objects are read: the primary, or every copy behind failover and hedging.
    pub shard_store: Arc<dyn ObjectStore>,
    pub replicated: Option<Arc<ReplicatedStore>>,
}

/// Opens a replica root named in a manifest (default: [`Store::open`]; tests wrap stores in faults).
pub type Resolver = Arc<dyn Fn(&str) -> Result<Store> + Send + Sync>;

/// (shard uid, column, row group, page)
type PageKey = (u64, u8, u32, u32);

pub struct Engine {
    store: Store,
    config: EngineConfig,
    resolver: Resolver,
    replicas: std::sync::Mutex<std::collections::HashMap<String, Store>>,
    /// keyspace → current version (None = no such keyspace), re-read after the TTL.
    pointers: CountedCache<String, Option<Arc<Keyspace>>>,
    /// (keyspace, version) → manifest; versions are immutable.
    manifests: CountedCache<(String, String), Arc<Keyspace>>,
    shards: CountedCache<String, Arc<ShardMeta>>,
    pages: CountedCache<PageKey, Arc<Page>>,
    gets: AtomicU64,
    bytes_fetched: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            object_gets: self.object_gets.saturating_sub(o.object_gets),
            bytes_fetched: self.bytes_fetched.saturating_sub(o.bytes_fetched),
            cache_hits: self.cache_hits.saturating_sub(o.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(o.cache_misses),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EngineStats {
    pub store: String,
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub caches: Vec<CacheStats>,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Self {
        let meta_bytes = config.metadata_cache_bytes;
        Engine {
            pointers: CountedCache::new("pointer", 1 << 20, Some(config.manifest_ttl), |k, _| weight(k.len() + 64)),
            manifests: CountedCache::new("manifest", meta_bytes / 8, None, |_, v| {
                weight(1024 + v.manifest.shards.len() * 160)
            }),
            shards: CountedCache::new("shard_metadata", meta_bytes, None, |k, v| weight(k.len() + v.weight())),
            pages: CountedCache::new("page", config.page_cache_bytes, None, |_, v| weight(v.weight())),
            store,
            config,
            resolver: Arc::new(|url: &str| Store::open(url)),
            replicas: Default::default(),
            gets: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
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
        let s = (self.resolver)(url)?;
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
            Some(c) => c,
            None => {
                let loaded = self.load_keyspace(ks).await?;
                self.pointers.insert(ks.to_string(), loaded.clone());
                loaded
            }
        };
        cached.ok_or_else(|| Error::KeyspaceNotFound(ks.to_string()))
    }

    async fn load_keyspace(&self, ks: &str) -> Result<Option<Arc<Keyspace>>> {
        self.gets.fetch_add(1, Relaxed);
        let Some(current) = pointer::read(self.store.inner.as_ref(), ks).await? else { return Ok(None) };
        let id = (ks.to_string(), current.pointer.version.clone());
        if let Some(k) = self.manifests.get(&id) {
            return Ok(Some(k));
        }
        self.gets.fetch_add(1, Relaxed);
        let manifest = Manifest::read(self.store.inner.as_ref(), ks, &current.pointer.version).await?;
        let placement = Placement::new(&manifest.placement).map_err(|why| Error::corrupt(&manifest.path(), why))?;
        let (shard_store, replicated): (Arc<dyn ObjectStore>, _) = if manifest.replicas.is_empty() {
            (self.store.inner.clone(), None)
        } else {
            let mut roots = vec![self.store.inner.clone()];
            for url in &manifest.replicas {
                roots.push(self.replica(url)?.inner);
            }
            let r = Arc::new(ReplicatedStore::new(roots, self.config.failover.clone()));
            (r.clone(), Some(r))
        };
        let k = Arc::new(Keyspace { manifest, placement, shard_store, replicated });
        self.manifests.insert(id, k.clone());
        Ok(Some(k))
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

    /// Looks several keys up in one version of the keyspace (a consistent snapshot), concurrently.
    pub async fn mget(&self, ks: &str, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        for k in keys {
            validate_key(k)?;
        }
        let keyspace = self.keyspace(ks).await?;
        futures::future::try_join_all(keys.iter().map(|k| self.get_in(&keyspace, k))).await
    }

    async fn get_in(&self, keyspace: &Keyspace, key: &str) -> Result<Option<Bytes>> {
        let shard = keyspace.placement.shard_of(key.as_bytes()) as usize;
        let entry = &keyspace.manifest.shards[shard];
        if entry.rows == 0 {
            return Ok(None);
        }
        let meta = match self.shards.get(&entry.path) {
            Some(m) => m,
            None => {
                let m = Arc::new(self.open_shard(keyspace, entry).await?);
                self.shards.insert(entry.path.clone(), m.clone());
                m
            }
        };
        let Probe::KeyPage { row_group, page } = meta.probe(key.as_bytes()) else { return Ok(None) };
        let rg = &meta.row_groups[row_group];
        let keys = self.page(keyspace, &meta, 0, row_group, page, rg.key_pages[page]).await?;
        let Some(i) = keys.binary_search(key.as_bytes()) else { return Ok(None) };
        let row = rg.key_pages[page].first_row + i as u64;
        let (vp, vi) = meta
            .value_page_for(row_group, row)
            .ok_or_else(|| Error::corrupt(&meta.path, format!("no value page for row {row}")))?;
        let values = self.page(keyspace, &meta, 1, row_group, vp, rg.value_pages[vp]).await?;
        if vi >= values.len() {
            return Err(Error::corrupt(
                &meta.path,
                format!("value page {vp} has {} rows, need row {vi}", values.len()),
            ));
        }
        Ok(Some(values.value_bytes(vi)))
    }

    /// Reads bytes of a shard object that `valid` must accept: from the first intact copy when the keyspace
    /// is replicated, else from the primary (a mismatch is then a corruption error, never an answer).
    async fn fetch(&self, ks: &Keyspace, path: &Path, opts: GetOptions, valid: Validator<'_>) -> Result<Bytes> {
        let bytes = match &ks.replicated {
            Some(r) => r.get_verified(path, opts, valid).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => Error::Store(e),
                e => Error::corrupt(path, format!("no intact copy could be read: {e}")),
            })?,
            None => {
                let bytes = ks.shard_store.get_opts(path, opts).await?.bytes().await?;
                if !valid(&bytes) {
                    return Err(Error::corrupt(path, "checksum mismatch"));
                }
                bytes
            }
        };
        self.count(bytes.len() as u64);
        Ok(bytes)
    }

    /// One suffix GET, verified against the manifest's checksum, yields the shard's index.
    async fn open_shard(&self, ks: &Keyspace, entry: &ShardEntry) -> Result<ShardMeta> {
        let path = Path::from(entry.path.as_str());
        let suffix = entry.meta_bytes.min(entry.bytes);
        let opts = GetOptions { range: Some(GetRange::Suffix(suffix)), ..Default::default() };
        let expected = entry.meta_checksum.as_str();
        let valid = |b: &[u8]| checksum_of(b) == expected;
        let data = self.fetch(ks, &path, opts, &valid).await?;
        ShardMeta::from_suffix(path, entry.bytes, data)
    }

    async fn page(
        &self,
        ks: &Keyspace,
        meta: &ShardMeta,
        col: u8,
        rg: usize,
        page: usize,
        at: PageRef,
    ) -> Result<Arc<Page>> {
        let id = (meta.uid, col, rg as u32, page as u32);
        if let Some(p) = self.pages.get(&id) {
            return Ok(p);
        }
        let group = &meta.row_groups[rg];
        let expected = if col == 0 { group.key_sums.get(page) } else { group.value_sums.get(page) }.copied();
        let valid = |b: &[u8]| expected.is_none_or(|sum| page::page_checksum(b) == sum);
        let opts = GetOptions { range: Some((at.offset..at.offset + at.len as u64).into()), ..Default::default() };
        let buf = self.fetch(ks, &meta.path, opts, &valid).await?;
        let decoded = page::decode(buf)
            .map_err(|why| Error::corrupt(&meta.path, format!("row group {rg} page {page}: {why}")))?;
        let p = Arc::new(decoded);
        self.pages.insert(id, p.clone());
        Ok(p)
    }

    fn count(&self, bytes: u64) {
        self.gets.fetch_add(1, Relaxed);
        self.bytes_fetched.fetch_add(bytes, Relaxed);
    }

    /// Monotonic counters for per-request accounting (take one before and one after).
    pub fn counters(&self) -> Counters {
        let (mut cache_hits, mut cache_misses) = (0, 0);
        for (h, m) in [self.pointers.counts(), self.manifests.counts(), self.shards.counts(), self.pages.counts()] {
            cache_hits += h;
            cache_misses += m;
        }
        Counters {
            object_gets: self.gets.load(Relaxed),
            bytes_fetched: self.bytes_fetched.load(Relaxed),
            cache_hits,
            cache_misses,
        }
    }

    pub async fn list_keyspaces(&self) -> Result<Vec<String>> {
        pointer::list_keyspaces(self.store.inner.as_ref()).await
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            store: self.store.url.clone(),
            object_gets: self.gets.load(Relaxed),
            bytes_fetched: self.bytes_fetched.load(Relaxed),
            caches: vec![self.pointers.stats(), self.manifests.stats(), self.shards.stats(), self.pages.stats()],
        }
    }
}
