//! `cairn compact`: merges every layer of a keyspace's current version into one base layer and publishes it
//! as a new version (same answers; tombstones dropped). Each base shard is merged from its own object and,
//! per delta layer, the one shard that covers it (a delta's placement nests in the base's: ring.rs), so
//! memory holds one base shard and one shard per layer at a time, whatever the keyspace's size. Resumable
//! like an ingest: finished shards are recorded in a checkpoint, and the publish is the same conditional
//! pointer switch (it loses, and deletes what it wrote, if the keyspace moved on meanwhile).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arrow_array::cast::AsArray;
use bytes::Bytes;
use cairn_shared::format::checksum::{checksum_label, checksum_of};
use cairn_shared::format::layers::{Tagged, untag};
use cairn_shared::format::layout;
use cairn_shared::format::manifest::{FORMAT_VERSION, Manifest, ShardEntry, Source};
use cairn_shared::format::ring::Placement;
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::key::validate_keyspace;
use cairn_shared::stores::Store;
use cairn_shared::versions::pointer;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::checkpoint::{Checkpoint, Owned};
use crate::error::IngestError;
use crate::lease::{Stop, heartbeat};
use crate::options::IngestReport;
use crate::progress::Progress;
use crate::publish::{manifest_for, publish_version};
use crate::scratch::Scratch;
use crate::shard_object::{ShardObject, VersionTarget};

#[derive(Debug, Clone)]
pub struct CompactOptions {
    pub keyspace: String,
    /// The primary root (replica roots are those the current version names).
    pub store: Store,
    /// Shards merged in parallel.
    pub threads: usize,
    pub tmp_dir: Option<std::path::PathBuf>,
    pub lease: Duration,
    pub checkpoint_expiry: Duration,
}

impl CompactOptions {
    pub fn new(keyspace: impl Into<String>, store: Store) -> Self {
        CompactOptions {
            keyspace: keyspace.into(),
            store,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tmp_dir: None,
            lease: crate::checkpoint::DEFAULT_LEASE,
            checkpoint_expiry: crate::checkpoint::DEFAULT_EXPIRY,
        }
    }
}

/// The layers being merged, newest first (every shard entry loaded); the last is the base.
struct Layers {
    list: Vec<(Manifest, Placement)>,
}

impl Layers {
    async fn read(primary: &Store, top: Manifest) -> Result<Layers, IngestError> {
        let ks = top.keyspace.clone();
        let mut list = vec![top];
        for older in list[0].layers.clone() {
            let (m, at) = Manifest::read_with_ref(primary.inner.as_ref(), &ks, &older.version).await?;
            if at != older.manifest {
                return Err(IngestError::Invalid(format!(
                    "layer {} is not the manifest version {} lists (checksum mismatch); run `cairn health -k {ks}`",
                    older.version, list[0].version
                )));
            }
            list.push(m);
        }
        let list = list
            .into_iter()
            .map(|m| Placement::new(&m.placement).map(|p| (m, p)).map_err(IngestError::Invalid))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Layers { list })
    }

    fn base(&self) -> &(Manifest, Placement) {
        &self.list[self.list.len() - 1]
    }
}

pub async fn compact(opts: CompactOptions, progress: Arc<dyn Progress>) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    let ks = opts.keyspace.as_str();
    validate_keyspace(ks)?;
    let primary = opts.store.inner.clone();
    let Some(current) = pointer::read(primary.as_ref(), ks).await? else {
        return Err(cairn_shared::Error::KeyspaceNotFound(ks.to_string()).into());
    };
    let from = current.pointer.version.clone();
    let top = Manifest::read(primary.as_ref(), ks, &from).await?;
    if !top.is_layered() {
        progress.note(&format!("version {from} is one layer already: nothing to compact"));
        return Ok(report(&top, 0, started));
    }
    let layers = Arc::new(Layers::read(&opts.store, top).await?);
    let (base, base_placement) = layers.base();
    let (spec, base_placement) = (base.placement.clone(), base_placement.clone());
    let shards = spec.shards();
    let mut roots = vec![opts.store.clone()];
    for url in layers.list[0].0.replicas_besides(&opts.store.url) {
        roots.push(Store::open(url)?);
    }
    crate::roots::check_roots(&roots, ks, None, Some(&layers.list[0].0)).await?;
    for root in &roots {
        root.prepare_for_writes()?;
    }

    let ingest_id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("compact/{ks}/{from}").as_bytes()));
    let fp = checksum_label(xxhash_rust::xxh3::xxh3_64(format!("compaction of {ks}/{from}").as_bytes()));
    let fresh = || Checkpoint {
        ingest_id: ingest_id.clone(),
        keyspace: ks.to_string(),
        version: layout::new_version(),
        base_version: Some(from.clone()),
        started_at: layout::now_rfc3339(),
        writer: None,
        owner: None,
        expires_at: None,
        done: Default::default(),
        fingerprint: Some(fp.clone()),
        placement: Some(spec.clone()),
        sources: Vec::new(),
    };
    let (owned, _live) =
        Checkpoint::acquire(primary.as_ref(), ks, &ingest_id, fresh, opts.lease, opts.checkpoint_expiry).await?;
    if current.pointer.was_current(&owned.ckpt.version) {
        let m = Manifest::read(primary.as_ref(), ks, &owned.ckpt.version).await?;
        owned.release(primary.as_ref()).await?;
        progress.note(&format!("version {} was already published by an earlier run", m.version));
        return Ok(report(&m, owned.ckpt.done.len(), started));
    }
    let mut owned = crate::resume::verify_done(&roots, owned).await?;
    if current.pointer.collecting.contains(&owned.ckpt.version) || owned.ckpt.placement.as_ref() != Some(&spec) {
        owned.start_over(fresh(), primary.as_ref()).await?;
    }
    let ckpt = owned.ckpt.clone();
    let resumed = ckpt.done.len();
    if resumed > 0 {
        progress.note(&format!("resuming version {}: {resumed} of {shards} shards already written", ckpt.version));
    }
    let lease = owned.lease();
    let owned = Arc::new(tokio::sync::Mutex::new(owned));
    let stop = Stop::default();
    let _heartbeat = heartbeat(lease, primary.clone(), stop.flag.clone());
    let base_dir = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = Arc::new(
        Scratch::create_async(base_dir.clone(), "cairn-compact-")
            .await
            .map_err(IngestError::io(format!("cannot create scratch space in {}", base_dir.display())))?,
    );
    let target = VersionTarget {
        delta: false,
        keyspace: ks.to_string(),
        version: ckpt.version.clone(),
        placement: spec.clone(),
        roots: roots.iter().map(|r| r.url.clone()).collect(),
    };
    let todo: Vec<u32> = (0..shards).filter(|s| !ckpt.done.contains_key(s)).collect();
    progress.phase("compacting shards", shards as u64);
    progress.advance(resumed as u64);
    let ctx = Ctx {
        layers: layers.clone(),
        base_placement,
        target: target.clone(),
        roots: roots.clone(),
        scratch: scratch.clone(),
        ckpt: owned.clone(),
        stop: stop.flag.clone(),
        progress: progress.clone(),
    };
    let threads = opts.threads.max(1);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || ctx.run(&todo, threads, &handle)).await.expect("compaction task")?;
    drop(scratch);
    let entries: Vec<ShardEntry> = owned.lock().await.ckpt.done.values().cloned().collect();
    let source = Source::new(fp, vec![format!("{}{from}", cairn_shared::format::manifest::COMPACTION_SOURCE)]);
    let manifest = manifest_for(&target, FORMAT_VERSION, source, entries, &ckpt.started_at);
    let rerun = "Rerun the same command: it finishes the publish or reports that it happened";
    publish_version(&roots, &owned, &stop.flag, &progress, &manifest, Some(&from), rerun).await?;
    Ok(report(&manifest, resumed, started))
}

fn report(m: &Manifest, resumed: usize, started: Instant) -> IngestReport {
    crate::pipeline::report(m, m.shards.iter().map(|s| s.rows).collect(), resumed, (0, 0), started)
}

/// What the merging threads share.
struct Ctx {
    layers: Arc<Layers>,
    base_placement: Placement,
    target: VersionTarget,
    roots: Vec<Store>,
    scratch: Arc<Scratch>,
    ckpt: Arc<tokio::sync::Mutex<Owned>>,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
}

/// Consecutive base shards per batch: a delta layer's shard covers a range of base shards, read once per
/// batch.
const BATCH: usize = 64;

/// One delta shard's rows, decoded: (key, value or tombstone).
type DeltaRows = Arc<Vec<(String, Option<Bytes>)>>;

impl Ctx {
    fn run(&self, todo: &[u32], threads: usize, handle: &tokio::runtime::Handle) -> Result<(), IngestError> {
        let batches: Vec<&[u32]> = todo.chunks(BATCH).collect();
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let first_error = std::sync::Mutex::new(None);
        let save_every = (todo.len() / 100).max(1);
        let unsaved = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(batches.len()) {
                scope.spawn(|| {
                    // Per delta layer, the shard last read (consecutive base shards share it).
                    let mut cache: Vec<Option<(u32, DeltaRows)>> = vec![None; self.layers.list.len() - 1];
                    while !failed.load(Ordering::Relaxed) {
                        let Some(batch) = batches.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                        for &s in *batch {
                            if self.stop.load(Ordering::Relaxed) || failed.load(Ordering::Relaxed) {
                                failed.store(true, Ordering::Relaxed);
                                break;
                            }
                            let done = handle.block_on(async {
                                let entry = self.shard(s, &mut cache).await?;
                                let mut c = self.ckpt.lock().await;
                                c.ckpt.done.insert(s, entry);
                                if unsaved.fetch_add(1, Ordering::Relaxed) + 1 >= save_every {
                                    unsaved.store(0, Ordering::Relaxed);
                                    c.save(self.roots[0].inner.as_ref()).await?;
                                }
                                Ok::<_, IngestError>(())
                            });
                            match done {
                                Ok(()) => self.progress.advance(1),
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    first_error.lock().expect("error slot").get_or_insert(e);
                                }
                            }
                        }
                    }
                });
            }
        });
        if unsaved.load(Ordering::Relaxed) > 0 {
            handle.block_on(async { self.ckpt.lock().await.save(self.roots[0].inner.as_ref()).await })?;
        }
        if let Some(e) = first_error.into_inner().expect("error slot") {
            return Err(e);
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(IngestError::Invalid("the compaction was stopped (its checkpoint was taken over)".into()));
        }
        Ok(())
    }

    /// Base shard `s` merged with what every delta layer holds for it, written under every root.
    async fn shard(&self, s: u32, cache: &mut [Option<(u32, DeltaRows)>]) -> Result<ShardEntry, IngestError> {
        // Newest layer first: the first to name a key decides it.
        let mut changes: BTreeMap<String, Option<Bytes>> = BTreeMap::new();
        let deltas = &self.layers.list[..self.layers.list.len() - 1];
        for (l, (m, placement)) in deltas.iter().enumerate() {
            let j = placement.nest(s);
            let rows = match &cache[l] {
                Some((at, rows)) if *at == j => rows.clone(),
                _ => {
                    let rows: DeltaRows = Arc::new(self.read_delta(&m.shards[j as usize]).await?);
                    cache[l] = Some((j, rows.clone()));
                    rows
                }
            };
            for (k, v) in rows.iter().filter(|(k, _)| self.base_placement.shard_of(k.as_bytes()) == s) {
                changes.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let (base, _) = self.layers.base();
        let entry = &base.shards[s as usize];
        let mut object = ShardObject::create(&self.target, &ShardFormat::default(), s, self.scratch.path())?;
        let mut pending = changes.into_iter().peekable();
        let put = |object: &mut ShardObject, k: &str, v: &Option<Bytes>| match v {
            Some(v) => object.append(k, v),
            None => Ok(()),
        };
        if entry.rows > 0 {
            for batch in self.read_batches(entry).await? {
                let (keys, values) = (batch.column(0).as_string::<i32>(), batch.column(1).as_binary::<i32>());
                for i in 0..batch.num_rows() {
                    let key = keys.value(i);
                    while let Some((k, v)) = pending.next_if(|(k, _)| k.as_str() < key) {
                        put(&mut object, &k, &v)?;
                    }
                    match pending.next_if(|(k, _)| k == key) {
                        Some((k, v)) => put(&mut object, &k, &v)?,
                        None => object.append(key, values.value(i))?,
                    }
                }
            }
        }
        for (k, v) in pending {
            put(&mut object, &k, &v)?;
        }
        object.finish(&self.roots).await
    }

    /// A delta shard's rows, untagged.
    async fn read_delta(&self, entry: &ShardEntry) -> Result<Vec<(String, Option<Bytes>)>, IngestError> {
        if entry.rows == 0 {
            return Ok(Vec::new());
        }
        let mut rows = Vec::with_capacity(entry.rows as usize);
        for batch in self.read_batches(entry).await? {
            let (keys, values) = (batch.column(0).as_string::<i32>(), batch.column(1).as_binary::<i32>());
            for i in 0..batch.num_rows() {
                let value = match untag(Bytes::copy_from_slice(values.value(i))) {
                    Ok(Tagged::Value(v)) => Some(v),
                    Ok(Tagged::Deleted) => None,
                    Err(why) => return Err(IngestError::Invalid(format!("{}: {why}", entry.path))),
                };
                rows.push((keys.value(i).to_string(), value));
            }
        }
        Ok(rows)
    }

    /// A shard object's rows, decoded (its `key` and `value` columns).
    async fn read_batches(&self, entry: &ShardEntry) -> Result<Vec<arrow_array::RecordBatch>, IngestError> {
        let bytes = self.read_object(entry).await?;
        let bad = |e: &dyn std::fmt::Display| IngestError::Invalid(format!("{}: cannot decode: {e}", entry.path));
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(8192).build())
            .map_err(|e| bad(&e))?;
        let batches: Vec<arrow_array::RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| bad(&e))?;
        if batches.iter().any(|b| {
            b.num_columns() != 2
                || b.column(0).as_string_opt::<i32>().is_none()
                || b.column(1).as_binary_opt::<i32>().is_none()
        }) {
            return Err(bad(&"not a cairn shard (key: Utf8, value: Binary)"));
        }
        Ok(batches)
    }

    /// A whole shard object from the primary, checked against its manifest checksum.
    async fn read_object(&self, entry: &ShardEntry) -> Result<Bytes, IngestError> {
        let path = object_store::path::Path::from(entry.path.as_str());
        let bytes = self.roots[0].inner.get(&path).await?.bytes().await?;
        if checksum_of(&bytes) != entry.checksum {
            return Err(IngestError::Invalid(format!(
                "{}: its checksum does not match the manifest (run `cairn repair -k {}`)",
                entry.path, self.target.keyspace
            )));
        }
        Ok(bytes)
    }
}
