//! The ingest job, start to publish. See the crate docs for the shape; this file only sequences it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_shared::format::manifest::{Manifest, ShardEntry, Source};
use cairn_shared::format::ring::{Placement, PlacementSpec, imbalance};
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::key::validate_keyspace;
use cairn_shared::stores::Store;
use cairn_shared::{format::layout, versions::pointer};
use object_store::ObjectStoreExt;

use crate::checkpoint::{Checkpoint, Owned};
use crate::error::{IngestError, InputError};
use crate::input::{InputFile, InputFormat};
use crate::lease::{Stop, heartbeat};
use crate::listing::{changes, fingerprint_of, list_sources_with, stamps};
use crate::merge::{MergeError, merge_shard};
use crate::progress::Progress;
use crate::publish::{discard, manifest_for, publish_version};
use crate::run::{Chunk, Run};
use crate::scratch::Scratch;
use crate::shard_object::{ShardObject, VersionTarget};
use crate::source::{Columns, Problems, read_records};

/// Largest in-memory chunk of records before it is sorted and spilled.
pub const CHUNK_BYTES: usize = 64 << 20;

/// Input bytes per shard when `--shards` is not given. A cold lookup costs the same at any shard size (one
/// index piece, one block); this size is what a hot shard is read and kept as: small enough that promotion
/// pays under skew and one shard never holds much of the data cache, large enough that a shard's index has
/// at most three pieces (listed in the manifest entry: no root to read) (docs/FORMAT.md).
pub const AUTO_SHARD_BYTES: u64 = 512 << 10;
/// Most shards `--shards` may pick by itself (32 GiB of input; above it shards grow). Past 1,024 shards the
/// manifest lists them 128 to a group object, so what a reader loads at start stays ~100 bytes per 128
/// shards; this bounds the ingest's per-shard work (a checkpoint entry, one object per root).
pub const AUTO_SHARDS_MAX: u64 = 65_536;
/// How much larger than it is stored a compressed text or Parquet input is assumed to be when the shard
/// count is picked (before anything is read: placement needs the count from the first key on).
pub const COMPRESSED_EXPANSION: u64 = 3;

/// The shard count `cairn ingest` picks for this much data (as text: key, space, value, newline).
pub fn auto_shards(data_bytes: u64) -> u32 {
    data_bytes.div_ceil(AUTO_SHARD_BYTES).clamp(1, AUTO_SHARDS_MAX) as u32
}

#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// SOURCE arguments: local files, directories or globs, `s3://bucket/prefix/` URLs (listing.rs).
    pub inputs: Vec<PathBuf>,
    pub keyspace: String,
    /// Primary root: holds pointer, manifests, checkpoints and a copy of every shard.
    pub store: Store,
    /// Further roots that get a copy of every shard (and of the manifest).
    pub replicas: Vec<Store>,
    /// Shard count; None picks one shard per [`AUTO_SHARD_BYTES`] of input, at most [`AUTO_SHARDS_MAX`].
    pub shards: Option<u32>,
    /// Use a virtual-node ring with this many points per shard instead of jump hashing.
    pub ring_vnodes: Option<u32>,
    pub format: Option<InputFormat>,
    /// Key and value columns of Parquet, CSV and JSON Lines inputs.
    pub columns: Columns,
    /// `AWS_*`-style settings for object-store SOURCEs, over the environment (tests, tools).
    pub source_settings: Vec<(String, String)>,
    pub shard_format: ShardFormat,
    /// Shards written in parallel.
    pub threads: usize,
    /// Memory for buffered records; beyond it sorted runs spill to `tmp_dir`.
    pub memory_budget: usize,
    pub tmp_dir: Option<PathBuf>,
    /// Stop reading after this many bad records.
    pub max_errors: usize,
    /// The checkpoint owner's lease: another run takes over a checkpoint whose heartbeat is older than this
    /// (sooner when its owner is provably gone: docs/FORMAT.md, "Checkpoints").
    pub lease: Duration,
    /// A checkpoint without a heartbeat for this long is abandoned: gc deletes it and frees its version.
    pub checkpoint_expiry: Duration,
    /// Publish even when the input holds no key (a version that answers "absent" for every key). Off, such an
    /// input is refused and nothing is published: an empty file or an empty export replacing a live
    /// keyspace is almost always a mistake.
    pub allow_empty: bool,
}

impl IngestOptions {
    pub fn new(input: impl Into<PathBuf>, keyspace: impl Into<String>, store: Store) -> Self {
        IngestOptions {
            inputs: vec![input.into()],
            keyspace: keyspace.into(),
            store,
            replicas: Vec::new(),
            shards: None,
            ring_vnodes: None,
            format: None,
            columns: Columns::default(),
            source_settings: Vec::new(),
            shard_format: ShardFormat::default(),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            memory_budget: 512 << 20,
            tmp_dir: None,
            max_errors: 20,
            lease: crate::checkpoint::DEFAULT_LEASE,
            checkpoint_expiry: crate::checkpoint::DEFAULT_EXPIRY,
            allow_empty: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct IngestReport {
    pub keyspace: String,
    pub version: String,
    pub rows: u64,
    pub shards: u32,
    pub bytes: u64,
    pub shard_rows: Vec<u64>,
    /// (largest - smallest) / smallest shard, in rows.
    pub imbalance: f64,
    /// Shards taken from a checkpoint instead of being rewritten.
    pub resumed_shards: usize,
    pub runs_spilled: usize,
    pub fingerprint: String,
    pub elapsed: Duration,
}

pub async fn ingest(opts: IngestOptions, progress: Arc<dyn Progress>) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    validate_keyspace(&opts.keyspace)?;
    if opts.max_errors == 0 {
        return Err(IngestError::Invalid("max_errors must be at least 1 (bad input is always reported)".into()));
    }
    if opts.memory_budget < 16 << 20 {
        return Err(IngestError::Invalid("the memory budget must be at least 16 MiB".into()));
    }
    let files = list_sources_with(&opts.inputs, opts.format, &opts.source_settings).await?;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let stamps = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || stamps(&files)).await.expect("fingerprint task")?
    };
    let fp = fingerprint_of(&files, &stamps);
    let data_bytes: u64 =
        files.iter().map(|f| if f.is_compressed() { f.size * COMPRESSED_EXPANSION } else { f.size }).sum();
    let shards = opts.shards.unwrap_or_else(|| auto_shards(data_bytes));
    if shards == 0 || shards > 100_000 {
        return Err(IngestError::Invalid(format!("--shards must be between 1 and 100000, got {shards}")));
    }
    let spec = match opts.ring_vnodes {
        None => PlacementSpec::jump(shards),
        Some(v) => PlacementSpec::ring(shards, v),
    };
    let placement = Placement::new(&spec).map_err(IngestError::Invalid)?;
    let roots: Vec<Store> = std::iter::once(opts.store.clone()).chain(opts.replicas.iter().cloned()).collect();
    let primary = roots[0].inner.clone();
    let f = &opts.shard_format;
    // The id names the job, not the bytes: a rerun over changed inputs finds the interrupted run's
    // checkpoint and starts over, saying what changed, instead of leaving it behind unnoticed.
    // So it holds the SOURCE arguments and the options as given, not what they expand to (the listing, the
    // shard count picked from the sizes): those are in the fingerprint the checkpoint records.
    let id_src = serde_json::json!({
        "keyspace": opts.keyspace, "sources": opts.inputs.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        "input_format": opts.format.map(|f| format!("{f:?}")), "columns": format!("{:?}", opts.columns),
        "shards": opts.shards, "ring_vnodes": opts.ring_vnodes,
        "format": [f.block_rows as u64, f.block_bytes as u64, f.bloom_fpp.to_bits(), f.version() as u64, f.piece_bytes as u64],
        "roots": roots.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
    });
    let ingest_id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(id_src.to_string().as_bytes()));

    let current = pointer::read(primary.as_ref(), &opts.keyspace).await?;
    let fresh = || Checkpoint {
        ingest_id: ingest_id.clone(),
        keyspace: opts.keyspace.clone(),
        version: layout::new_version(),
        base_version: current.as_ref().map(|c| c.pointer.version.clone()),
        started_at: layout::now_rfc3339(),
        writer: None,
        owner: None,
        expires_at: None,
        done: Default::default(),
        fingerprint: Some(fp.clone()),
        placement: Some(spec.clone()),
        sources: if stamps.len() <= crate::checkpoint::STAMPS_KEPT { stamps.clone() } else { Vec::new() },
    };
    let (mut owned, _live) =
        Checkpoint::acquire(primary.as_ref(), &opts.keyspace, &ingest_id, fresh, opts.lease, opts.checkpoint_expiry)
            .await?;
    // First: a checkpoint of other inputs (interrupted, or left by a run that published and could not remove
    // it) says nothing about this run, neither what to resume nor whether this data was published.
    if owned.ckpt.placement.as_ref().is_some_and(|p| *p != spec) {
        // Same inputs, another shard layout (a binary that picks shard counts differently): its shards place
        // keys by another rule.
        progress.note(&format!(
            "the interrupted run of version {} placed keys on other shards; not resuming it, starting over",
            owned.ckpt.version
        ));
        owned.start_over(fresh(), primary.as_ref()).await?;
    } else if owned.ckpt.fingerprint.as_ref().is_some_and(|f| *f != fp) {
        let what = changes(&owned.ckpt.sources, &stamps);
        let shown: Vec<&str> = what.iter().take(5).map(String::as_str).collect();
        progress.note(&format!(
            "the inputs changed since the interrupted run of version {} ({}{}); not resuming it, starting over",
            owned.ckpt.version,
            if shown.is_empty() { "their fingerprint differs".to_string() } else { shown.join("; ") },
            if what.len() > shown.len() { format!("; and {} more", what.len() - shown.len()) } else { String::new() }
        ));
        owned.start_over(fresh(), primary.as_ref()).await?;
    }
    if current.as_ref().is_some_and(|c| c.pointer.was_current(&owned.ckpt.version)) {
        // Crashed after publishing, before removing the checkpoint: the job is done, if the published version
        // holds these inputs.
        let m = Manifest::read(primary.as_ref(), &opts.keyspace, &owned.ckpt.version).await?;
        if m.source.fingerprint == fp {
            owned.release(primary.as_ref()).await?;
            progress.note(&format!("version {} was already published by an earlier run", m.version));
            return Ok(report(&m, m.shards.iter().map(|s| s.rows).collect(), owned.ckpt.done.len(), 0, started));
        }
        progress.note(&format!("version {} was published from other inputs; starting over", m.version));
        owned.start_over(fresh(), primary.as_ref()).await?;
    }
    let mut owned = verify_done(&roots, owned).await?;
    let now_current = current.as_ref().map(|c| c.pointer.version.clone());
    let collecting = current.as_ref().is_some_and(|c| c.pointer.collecting.contains(&owned.ckpt.version));
    if collecting {
        progress.note(&format!(
            "version {} of an interrupted run is being deleted by gc; starting over",
            owned.ckpt.version
        ));
        owned.start_over(fresh(), primary.as_ref()).await?;
    } else if owned.ckpt.base_version != now_current {
        // The keyspace moved on since the interrupted run: its version could never be published. Start a new
        // one; the old one's objects are unreferenced now and gc collects them.
        progress.note(&format!(
            "version {} of an interrupted run is based on a version no longer current; starting over",
            owned.ckpt.version
        ));
        owned.start_over(fresh(), primary.as_ref()).await?;
    }
    let mut ckpt = owned.ckpt.clone();
    let lease = owned.lease();
    let owned = Arc::new(tokio::sync::Mutex::new(owned));
    // Dropping this future (a crash, a cancelled caller) stops the writer threads and the heartbeat.
    let stop = Stop::default();
    let _heartbeat = heartbeat(lease, primary.clone(), stop.flag.clone());
    let resumed = ckpt.done.len();
    if resumed > 0 {
        progress.note(&format!("resuming version {}: {resumed} of {shards} shards already written", ckpt.version));
    }

    // Phase 1: read, validate, place and sort into runs. The scratch space goes when the last thread using
    // it lets go (after this future, if it is dropped while they run).
    let base = opts.tmp_dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = Arc::new(
        Scratch::create_async(base.clone(), "cairn-ingest-")
            .await
            .map_err(IngestError::io(format!("cannot create scratch space in {}", base.display())))?,
    );
    let skip: HashSet<u32> = ckpt.done.keys().copied().collect();
    progress.phase("reading", total_bytes);
    let phase1 = {
        let (files, placement, tmp, progress) = (files.clone(), placement.clone(), tmp.clone(), progress.clone());
        let (budget, max_errors, columns) = (opts.memory_budget, opts.max_errors, opts.columns.clone());
        let (handle, stop) = (tokio::runtime::Handle::current(), stop.flag.clone());
        tokio::task::spawn_blocking(move || {
            let input = Input { files: &files, columns: &columns, handle: &handle, stop: &stop };
            read_runs(&input, &placement, &skip, budget, tmp.path(), progress.as_ref(), max_errors)
        })
        .await
        .expect("reader task")
    };
    let (runs, counts) = match phase1 {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, IngestError::BadInput(_)) {
                discard(&roots, &owned, &progress, None).await;
            }
            return Err(e);
        }
    };
    let spilled = runs.iter().filter(|r| matches!(r, Run::File { .. })).count();
    let keys: u64 = counts.iter().sum();
    if keys == 0 && !opts.allow_empty {
        // Nothing was written for it (no shard is written before every record is read): only the checkpoint
        // goes.
        if let Err(e) = owned.lock().await.release(primary.as_ref()).await {
            progress.note(&format!("could not remove the checkpoint (gc expires it): {e}"));
        }
        let named: Vec<String> = files.iter().take(3).map(|f| f.path.display().to_string()).collect();
        return Err(IngestError::Invalid(format!(
            "the input holds no keys ({}{}): nothing was published. Publishing it would make keyspace {:?} answer \
             \"not found\" for every key; if that is what you want, pass --allow-empty",
            named.join(", "),
            if files.len() > named.len() { format!(" and {} more", files.len() - named.len()) } else { String::new() },
            opts.keyspace
        )));
    }
    let (lo, hi) = (counts.iter().min().copied().unwrap_or(0), counts.iter().max().copied().unwrap_or(0));
    progress.note(&format!(
        "{keys} keys over {shards} shards: smallest {lo}, largest {hi}, imbalance {:.2}%",
        imbalance(&counts) * 100.0
    ));

    // Phase 2: merge and write the remaining shards in parallel, checkpointing each.
    let todo: Vec<u32> = (0..shards).filter(|s| !ckpt.done.contains_key(s)).collect();
    progress.phase("writing shards", shards as u64);
    progress.advance(resumed as u64);
    let phase2 = {
        let ctx = WriteCtx {
            target: VersionTarget {
                keyspace: opts.keyspace.clone(),
                version: ckpt.version.clone(),
                placement: spec.clone(),
                roots: roots.iter().map(|r| r.url.clone()).collect(),
            },
            roots: roots.clone(),
            format: opts.shard_format.clone(),
            scratch: tmp.clone(),
            files: files.iter().map(|f| (f.path.clone(), f.format == InputFormat::Parquet)).collect(),
            ckpt: owned.clone(),
            stop: stop.flag.clone(),
            progress: progress.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let threads = opts.threads.max(1);
        tokio::task::spawn_blocking(move || write_shards(&ctx, &runs, &todo, threads)).await.expect("writer task")
    };
    ckpt = owned.lock().await.ckpt.clone();
    if let Err(e) = phase2 {
        if matches!(e, IngestError::BadInput(_)) {
            discard(&roots, &owned, &progress, None).await;
        }
        return Err(e);
    }
    drop(tmp);

    let entries: Vec<ShardEntry> = ckpt.done.values().cloned().collect();
    let source = Source { fingerprint: fp, files: files.iter().map(|f| f.path.display().to_string()).collect() };
    let target = VersionTarget {
        keyspace: opts.keyspace.clone(),
        version: ckpt.version.clone(),
        placement: spec,
        roots: roots.iter().map(|r| r.url.clone()).collect(),
    };
    let manifest = manifest_for(&target, opts.shard_format.version(), source, entries, &ckpt.started_at);
    let rerun = "Rerun the same command: it finishes the publish or reports that it happened";
    publish_version(&roots, &owned, &stop.flag, &progress, &manifest, ckpt.base_version.as_deref(), rerun).await?;
    Ok(report(&manifest, counts, resumed, spilled, started))
}

fn report(m: &Manifest, counts: Vec<u64>, resumed: usize, spilled: usize, started: Instant) -> IngestReport {
    IngestReport {
        keyspace: m.keyspace.clone(),
        version: m.version.clone(),
        rows: m.rows,
        shards: m.placement.shards(),
        bytes: m.bytes,
        imbalance: imbalance(&counts),
        shard_rows: counts,
        resumed_shards: resumed,
        runs_spilled: spilled,
        fingerprint: m.source.fingerprint.clone(),
        elapsed: started.elapsed(),
    }
}

/// Requests in flight when a resume checks its finished shards.
const CHECK_CONCURRENCY: usize = 32;

/// Keeps only checkpointed shards whose objects are still complete under every root (a HEAD each, together).
async fn verify_done(roots: &[Store], mut owned: Owned) -> Result<Owned, IngestError> {
    use futures::{StreamExt, TryStreamExt};
    let checks: Vec<(u32, object_store::path::Path, u64, Store)> = owned
        .ckpt
        .done
        .iter()
        .flat_map(|(s, e)| roots.iter().map(move |r| (*s, e.path.as_str().into(), e.bytes, r.clone())))
        .collect();
    let lost: Vec<Option<u32>> = futures::stream::iter(checks)
        .map(|(s, path, bytes, root)| async move {
            match root.inner.head(&path).await {
                Ok(meta) if meta.size == bytes => Ok(None),
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(Some(s)),
                Err(e) => Err(IngestError::from(e)),
            }
        })
        .buffer_unordered(CHECK_CONCURRENCY)
        .try_collect()
        .await?;
    for s in lost.into_iter().flatten() {
        owned.ckpt.done.remove(&s);
    }
    Ok(owned)
}

/// What phase 1 reads.
struct Input<'a> {
    files: &'a [InputFile],
    columns: &'a Columns,
    handle: &'a tokio::runtime::Handle,
    /// Set when the ingest is stopped (its future dropped, a signal): reading ends at the next record.
    stop: &'a AtomicBool,
}

fn read_runs(
    input: &Input<'_>,
    placement: &Placement,
    skip: &HashSet<u32>,
    budget: usize,
    dir: &Path,
    progress: &dyn Progress,
    max_errors: usize,
) -> Result<(Vec<Run>, Vec<u64>), IngestError> {
    let shards = placement.shards();
    let mut counts = vec![0u64; shards as usize];
    let mut problems = Problems::new(max_errors);
    // One chunk fills while the previous one is sorted and spilled on the other core; chunks of at most
    // 64 MiB keep that pipeline going even when the whole input would fit in memory (measured faster).
    let chunk_budget = (budget / 2).min(CHUNK_BYTES);
    let files = input.files;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(0);
    std::thread::scope(|scope| {
        let spiller = scope.spawn(move || -> std::io::Result<Vec<Run>> {
            rx.into_iter().enumerate().map(|(i, chunk)| chunk.into_run(shards).spill(dir, i)).collect()
        });
        let mut chunk = Chunk::with_capacity((total as usize + 1024).min(chunk_budget));
        let mut send_failed = false;
        let mut stopped = false;
        for (fi, file) in files.iter().enumerate() {
            let mut unreported = 0u64;
            let mut emit = |k: &[u8], v: &[u8], line: u64| {
                let s = placement.shard_of(k);
                counts[s as usize] += 1;
                unreported += 1;
                if unreported == 1 << 16 {
                    progress.keys(std::mem::take(&mut unreported));
                    stopped |= input.stop.load(Ordering::Relaxed);
                }
                if stopped {
                    return;
                }
                if skip.contains(&s) {
                    return;
                }
                chunk.push(s, k, v, fi as u32, line);
                if chunk.footprint() >= chunk_budget {
                    let full = std::mem::replace(&mut chunk, Chunk::with_capacity(chunk_budget));
                    send_failed |= tx.send(full).is_err();
                }
            };
            // A reader library's panic on a hostile file is that file's problem, not the end of the process.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                read_records(file, input.columns, input.handle, &mut problems, &mut emit, &mut |b| progress.advance(b))
            }));
            match read {
                Ok(r) => r?,
                Err(panic) => {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    problems.add(&file.path, 0, format!("unreadable: the reader failed ({why})"));
                }
            }
            progress.keys(unreported);
            if stopped || input.stop.load(Ordering::Relaxed) {
                stopped = true;
                break;
            }
            file.check_unchanged()?;
            if problems.full() || send_failed {
                break;
            }
        }
        drop(tx);
        let mut runs = spiller.join().expect("spill thread").map_err(IngestError::io("cannot write a sorted run"))?;
        if stopped {
            return Err(IngestError::Invalid("the ingest was stopped while reading its input".into()));
        }
        if !problems.list.is_empty() {
            return Err(IngestError::BadInput(problems.list));
        }
        if !chunk.is_empty() {
            runs.push(chunk.into_run(shards));
        }
        Ok((runs, counts))
    })
}

struct WriteCtx {
    target: VersionTarget,
    roots: Vec<Store>,
    format: ShardFormat,
    scratch: Arc<Scratch>,
    /// Each input's name, and whether its positions are Parquet rows.
    files: Vec<(PathBuf, bool)>,
    ckpt: Arc<tokio::sync::Mutex<Owned>>,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
    handle: tokio::runtime::Handle,
}

fn write_shards(ctx: &WriteCtx, runs: &[Run], todo: &[u32], threads: usize) -> Result<(), IngestError> {
    let next = AtomicUsize::new(0);
    // The checkpoint is rewritten after every 1% of the shards (not each: that is quadratic in bytes with
    // thousands of shards), and whenever writing stops; a crash redoes at most that 1%.
    let save_every = (todo.len() / 100).max(1);
    let unsaved = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<IngestError>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(todo.len()) {
            scope.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    if ctx.stop.load(Ordering::Relaxed) {
                        first_error.lock().expect("error slot").get_or_insert(IngestError::Invalid(
                            "the ingest was stopped (its caller went away or its checkpoint was taken over)".into(),
                        ));
                        failed.store(true, Ordering::Relaxed);
                        break;
                    }
                    let Some(&shard) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let result = write_shard(ctx, runs, shard).and_then(|entry| {
                        ctx.handle.block_on(async {
                            let mut c = ctx.ckpt.lock().await;
                            c.ckpt.done.insert(shard, entry);
                            if unsaved.fetch_add(1, Ordering::Relaxed) + 1 < save_every {
                                return Ok(());
                            }
                            unsaved.store(0, Ordering::Relaxed);
                            c.save(ctx.roots[0].inner.as_ref()).await
                        })
                    });
                    match result {
                        Ok(()) => ctx.progress.advance(1),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.lock().expect("error slot").get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    let error = first_error.into_inner().expect("error slot");
    if unsaved.load(Ordering::Relaxed) > 0 && !ctx.stop.load(Ordering::Relaxed) {
        let saved = ctx.handle.block_on(async { ctx.ckpt.lock().await.save(ctx.roots[0].inner.as_ref()).await });
        if error.is_none() {
            saved?;
        }
    }
    match error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_shard(ctx: &WriteCtx, runs: &[Run], shard: u32) -> Result<ShardEntry, IngestError> {
    let mut object = ShardObject::create(&ctx.target, &ctx.format, shard, ctx.scratch.path())?;
    let merged = merge_shard(runs, shard, |rec| {
        let key = std::str::from_utf8(rec.key).map_err(|_| cairn_shared::Error::InvalidKey("not UTF-8".into()))?;
        object.append(key, rec.value)
    });
    match merged {
        Ok(_) => {}
        Err(MergeError::Io(e)) => {
            return Err(IngestError::Io { context: "cannot read a sorted run".into(), source: e });
        }
        Err(MergeError::Sink(e)) => return Err(e.into()),
        Err(MergeError::Duplicate(d)) => {
            let at = |(f, l): (u32, u64)| {
                let (name, row) = &ctx.files[f as usize];
                format!("{}:{}{l}", name.display(), if *row { "row " } else { "" })
            };
            let (file, row) = ctx.files[d.second.0 as usize].clone();
            return Err(IngestError::BadInput(vec![InputError {
                file,
                line: d.second.1,
                row,
                message: format!("duplicate key {:?} (first seen at {})", String::from_utf8_lossy(&d.key), at(d.first)),
            }]));
        }
    }
    ctx.handle.block_on(object.finish(&ctx.roots))
}
