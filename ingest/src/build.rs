//! A version built by writers elsewhere (Spark executors, through the Python package): the driver begins
//! it (a checkpoint that owns a new version, so gc keeps its objects while the job runs, renewed by a
//! heartbeat), hands its [`VersionTarget`] to the writers, and publishes the entries they return. Shard
//! objects come from [`ShardObject`] and the publish from [`publish_version`], as in `cairn ingest`, so a
//! reader cannot tell the two apart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_shared::format::manifest::{ShardEntry, Source};
use cairn_shared::format::ring::{Placement, PlacementSpec, imbalance};
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::key::validate_keyspace;
use cairn_shared::stores::Store;
use cairn_shared::{format::layout, versions::pointer};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;

use crate::checkpoint::{Checkpoint, Owned};
use crate::error::IngestError;
use crate::lease::{AbortOnDrop, Stop, heartbeat};
use crate::owner::LiveRun;
use crate::pipeline::IngestReport;
use crate::progress::{NoProgress, Progress};
use crate::publish::{discard, manifest_for, publish_version};
use crate::shard_object::{ShardObject, VersionTarget};

/// Requests in flight when the driver checks or writes shard objects.
const CONCURRENCY: usize = 32;

/// How [`Build::publish_with`] publishes.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Publish a version with no key (it answers "not found" for every key).
    pub allow_empty: bool,
    /// Shards the caller knows hold no rows (a Spark job that succeeded reported every shard that has
    /// some): written empty by the publish.
    pub empty_shards: Vec<u32>,
}

/// What kind of version [`Build::begin_with`] starts.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// A delta layer over the current version (a full version when the keyspace has none): the placement
    /// nests in the base's, at most as many shards as it has; writers tag values (layers.rs).
    pub delta: bool,
    /// With `delta`: most layers the published version may have.
    pub max_layers: usize,
    /// Begin only if the keyspace's current version is this one (a compaction of it), and publish only
    /// over it.
    pub over: Option<String>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions { delta: false, max_layers: cairn_shared::format::layers::DEFAULT_MAX_LAYERS, over: None }
    }
}

pub struct Build {
    target: VersionTarget,
    /// A delta build: the version it stacks on.
    delta: Option<crate::delta::DeltaBase>,
    roots: Vec<Store>,
    owned: Arc<tokio::sync::Mutex<Owned>>,
    base: Option<String>,
    stop: Stop,
    _heartbeat: AbortOnDrop,
    _live: LiveRun,
    started: Instant,
    /// Set once a publish reached the manifest writes: from then on that publish decides what to delete.
    publishing: std::sync::atomic::AtomicBool,
}

impl Build {
    /// Starts a new version of `keyspace` placed by `spec`, written to `roots` (primary first).
    pub async fn begin(
        keyspace: &str,
        roots: Vec<Store>,
        spec: PlacementSpec,
        lease: Duration,
    ) -> Result<Build, IngestError> {
        Self::begin_with(keyspace, roots, spec, lease, &BuildOptions::default()).await
    }

    /// [`Build::begin`] of a delta, or of a version that must replace one given version.
    pub async fn begin_with(
        keyspace: &str,
        roots: Vec<Store>,
        spec: PlacementSpec,
        lease: Duration,
        opts: &BuildOptions,
    ) -> Result<Build, IngestError> {
        validate_keyspace(keyspace)?;
        Placement::new(&spec).map_err(IngestError::Invalid)?;
        let primary = roots.first().ok_or_else(|| IngestError::Invalid("a build needs a store".into()))?.inner.clone();
        let current = pointer::read(primary.as_ref(), keyspace).await?;
        let now = current.as_ref().map(|c| c.pointer.version.clone());
        if opts.over.is_some() && opts.over != now {
            return Err(cairn_shared::Error::Conflict { keyspace: keyspace.to_string(), expected: now }.into());
        }
        let delta = match opts.delta {
            true => crate::delta::DeltaBase::read(&roots[0], keyspace, current.as_ref()).await?,
            false => None,
        };
        let roots = match &delta {
            Some(d) => {
                d.check_layers(opts.max_layers)?;
                d.roots(&roots[0], &roots[1..])?
            }
            None => roots,
        };
        crate::roots::check_roots(&roots, keyspace, current.as_ref(), delta.as_ref().map(|d| &d.manifest)).await?;
        let spec = match &delta {
            Some(d) => d.placement(spec.shards().min(d.manifest.placement.base().shards()))?,
            None => spec,
        };
        for root in &roots {
            root.prepare_for_writes()?;
        }
        let version = layout::new_version();
        // Each build is its own job: two builds of one keyspace race at the pointer switch, one wins.
        let ingest_id =
            format!("{:016x}", xxhash_rust::xxh3::xxh3_64(format!("build/{keyspace}/{version}").as_bytes()));
        let fresh = || Checkpoint {
            ingest_id: ingest_id.clone(),
            keyspace: keyspace.to_string(),
            version: version.clone(),
            base_version: current.as_ref().map(|c| c.pointer.version.clone()),
            started_at: layout::now_rfc3339(),
            writer: None,
            owner: None,
            expires_at: None,
            done: BTreeMap::new(),
            fingerprint: None,
            placement: Some(spec.clone()),
            sources: Vec::new(),
        };
        let expiry = crate::checkpoint::DEFAULT_EXPIRY;
        let (owned, live) = Checkpoint::acquire(primary.as_ref(), keyspace, &ingest_id, fresh, lease, expiry).await?;
        let base = owned.ckpt.base_version.clone();
        let lease = owned.lease();
        let owned = Arc::new(tokio::sync::Mutex::new(owned));
        let stop = Stop::default();
        let heartbeat = heartbeat(lease, primary, stop.flag.clone());
        let target = VersionTarget {
            delta: delta.is_some(),
            keyspace: keyspace.to_string(),
            version,
            placement: spec,
            roots: roots.iter().map(|r| r.url.clone()).collect(),
        };
        Ok(Build {
            target,
            delta,
            roots,
            owned,
            base,
            stop,
            _heartbeat: heartbeat,
            _live: live,
            started: Instant::now(),
            publishing: Default::default(),
        })
    }

    pub fn target(&self) -> &VersionTarget {
        &self.target
    }

    /// Whether a [`Build::publish`] got as far as writing the manifest (from then on it decides what is
    /// deleted, and [`Build::abort`] does nothing).
    pub fn is_publishing(&self) -> bool {
        self.publishing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Publishes the version from the writers' entries (at most one per shard), after checking that every
    /// entry's object is complete under every root. Every shard needs an entry: a shard without one has a
    /// writer that has not finished or whose report was lost, and publishing it empty would lose its rows.
    /// `files` are the inputs, as recorded in the manifest.
    pub async fn publish(&self, entries: Vec<ShardEntry>, files: Vec<String>) -> Result<IngestReport, IngestError> {
        self.publish_with(entries, files, &PublishOptions::default()).await
    }

    /// [`Build::publish`], with shards the caller knows hold no rows written empty here, and an empty
    /// version allowed or not.
    pub async fn publish_with(
        &self,
        entries: Vec<ShardEntry>,
        files: Vec<String>,
        opts: &PublishOptions,
    ) -> Result<IngestReport, IngestError> {
        let t = &self.target;
        let shards = t.placement.shards();
        let mut by_shard: BTreeMap<u32, ShardEntry> = BTreeMap::new();
        for e in entries {
            if e.shard >= shards {
                return Err(IngestError::Invalid(format!(
                    "an entry names shard {}; the placement has {shards}",
                    e.shard
                )));
            }
            let expected = layout::shard_path(&t.keyspace, e.shard, &t.version);
            if e.path != expected.as_ref() {
                return Err(IngestError::Invalid(format!(
                    "the entry of shard {} names {}, not this version's {expected}",
                    e.shard, e.path
                )));
            }
            if let Some(seen) = by_shard.get(&e.shard)
                && *seen != e
            {
                return Err(IngestError::Invalid(format!(
                    "shard {} was written twice with different rows ({} and {}): the job's input is not \
                     deterministic; nothing was published",
                    e.shard, seen.checksum, e.checksum
                )));
            }
            by_shard.insert(e.shard, e);
        }
        let empty: std::collections::BTreeSet<u32> = opts.empty_shards.iter().copied().collect();
        if let Some(&s) = empty.iter().find(|s| **s >= shards || by_shard.contains_key(s)) {
            return Err(IngestError::Invalid(format!(
                "shard {s} is given as empty but {}; nothing was published",
                if s >= shards { "the placement has fewer shards" } else { "a writer reported an entry for it" }
            )));
        }
        let missing: Vec<u32> = (0..shards).filter(|s| !by_shard.contains_key(s) && !empty.contains(s)).collect();
        if let Some(first) = missing.first() {
            let shown: Vec<String> = missing.iter().take(8).map(u32::to_string).collect();
            return Err(IngestError::Invalid(format!(
                "shard {first} has no entry ({} of {shards} shards have none: {}{}): its writer has not finished \
                 or its report was lost, and publishing it empty would lose its rows; nothing was published. \
                 Publish once every writer has reported, or name the shards that hold no rows as empty",
                missing.len(),
                shown.join(", "),
                if missing.len() > shown.len() { ", ..." } else { "" }
            )));
        }
        let rows: u64 = by_shard.values().map(|e| e.rows).sum();
        if rows == 0 && !opts.allow_empty {
            return Err(IngestError::Invalid(format!(
                "the build holds no keys: nothing was published. Publishing it would make keyspace {:?} answer \
                 \"not found\" for every key; if that is what you want, allow an empty version \
                 (allow_empty=True in Python, --allow-empty for cairn ingest)",
                t.keyspace
            )));
        }
        let written = self.write_empty(&empty.into_iter().collect::<Vec<_>>()).await?;
        by_shard.extend(written.into_iter().map(|e| (e.shard, e)));
        self.check_objects(&by_shard).await?;

        let entries: Vec<ShardEntry> = by_shard.values().cloned().collect();
        let counts: Vec<u64> = entries.iter().map(|e| e.rows).collect();
        // The content's fingerprint: what the shards hold, whatever wrote them.
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for e in &entries {
            h.update(format!("{}:{}\n", e.shard, e.checksum).as_bytes());
        }
        let source = Source::new(cairn_shared::format::manifest::checksum_label(h.digest()), files);
        let created_at = {
            let mut owned = self.owned.lock().await;
            owned.ckpt.done = by_shard;
            owned.ckpt.started_at.clone()
        };
        let mut manifest = manifest_for(t, ShardFormat::default().version(), source, entries, &created_at);
        if let Some(d) = &self.delta {
            let filter = crate::delta::write_filter(&self.roots, &t.keyspace, &t.version, &manifest.shards).await?;
            let tombstones = manifest.shards.iter().map(|e| e.tombstones).sum();
            d.stack(&mut manifest, tombstones, filter);
        }
        let progress: Arc<dyn Progress> = Arc::new(NoProgress);
        self.publishing.store(true, std::sync::atomic::Ordering::SeqCst);
        let rerun = "Run the job again (it builds a new version); this one stays until gc collects it";
        publish_version(&self.roots, &self.owned, &self.stop.flag, &progress, &manifest, self.base.as_deref(), rerun)
            .await?;
        Ok(IngestReport {
            keyspace: manifest.keyspace.clone(),
            version: manifest.version.clone(),
            rows: manifest.rows,
            shards,
            bytes: manifest.bytes,
            imbalance: imbalance(&counts),
            shard_rows: counts,
            resumed_shards: 0,
            runs_spilled: 0,
            run_merges: 0,
            fingerprint: manifest.source.fingerprint.clone(),
            elapsed: self.started.elapsed(),
            layers: manifest.layers.len() + 1,
            tombstones: manifest.tombstones(),
        })
    }

    /// Writes the shards the caller vouches hold no rows, each conditionally: a shard that has an object
    /// already was written by a writer after all (its rows would be lost), which fails the publish.
    async fn write_empty(&self, shards: &[u32]) -> Result<Vec<ShardEntry>, IngestError> {
        let scratch = Arc::new(
            crate::scratch::Scratch::create_async(std::env::temp_dir(), "cairn-partition-")
                .await
                .map_err(IngestError::io("cannot create a temporary directory"))?,
        );
        let (target, roots) = (&self.target, &self.roots);
        futures::stream::iter(shards.iter().copied())
            .map(|s| {
                let scratch = scratch.clone();
                async move {
                    ShardObject::create(target, &ShardFormat::default(), s, scratch.path())?
                        .finish_exclusive(roots)
                        .await
                        .map_err(|e| match e {
                            IngestError::Invalid(_) => IngestError::Invalid(format!(
                                "shard {s} was given as empty but has an object ({}): a writer wrote it; nothing \
                                 was published",
                                layout::shard_path(&target.keyspace, s, &target.version)
                            )),
                            e => e,
                        })
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// Every entry's object exists with its size under every root: a writer whose upload failed after it
    /// reported (or a root that lost the object since) fails the publish, not a later read.
    async fn check_objects(&self, entries: &BTreeMap<u32, ShardEntry>) -> Result<(), IngestError> {
        // Owned items: a stream of futures borrowing its items is not Send for every lifetime.
        let checks: Vec<(u32, String, u64, Store)> = entries
            .values()
            .flat_map(|e| self.roots.iter().map(move |r| (e.shard, e.path.clone(), e.bytes, r.clone())))
            .collect();
        futures::stream::iter(checks)
            .map(|(shard, path, bytes, root)| async move {
                let missing = |why: String| {
                    IngestError::Invalid(format!(
                        "shard {shard}: {path} under {} {why}; nothing was published",
                        root.url
                    ))
                };
                match root.inner.head(&path.as_str().into()).await {
                    Ok(meta) if meta.size == bytes => Ok(()),
                    Ok(meta) => Err(missing(format!("has {} bytes, its entry says {bytes}", meta.size))),
                    Err(object_store::Error::NotFound { .. }) => Err(missing("is missing".into())),
                    Err(err) => Err(err.into()),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }

    /// Gives the version up (a no-op once [`Build::publish`] has begun publishing): deletes what it may have written (every shard path, under every root) and its
    /// checkpoint; what it cannot prove safe to delete it leaves to gc, and says so in the log.
    pub async fn abort(&self) {
        if self.publishing.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        struct Log;
        impl Progress for Log {
            fn phase(&self, _: &str, _: u64) {}
            fn advance(&self, _: u64) {}
            fn note(&self, message: &str) {
                tracing::warn!("{message}");
            }
        }
        let progress: Arc<dyn Progress> = Arc::new(Log);
        discard(&self.roots, &self.owned, &progress, Some(self.target.placement.shards())).await;
        self.stop.flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
