//! The ingest job, start to publish: this file only sequences it (options.rs, read_phase.rs,
//! write_phase.rs, publish.rs do the work).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use cairn_shared::format::manifest::{Manifest, ShardEntry, Source};
use cairn_shared::format::ring::{Placement, PlacementSpec, imbalance};
use cairn_shared::format::shard_writer::ShardFormat;
use cairn_shared::key::validate_keyspace;
use cairn_shared::{format::layout, versions::pointer};

use crate::checkpoint::Checkpoint;
use crate::delta::{DeltaBase, write_filter};
use crate::error::IngestError;
use crate::input::InputFormat;
use crate::lease::{Stop, heartbeat};
use crate::listing::{changes, fingerprint_of, list_sources_with, stamps};
use crate::merge_width::merge_width;
pub use crate::options::{AUTO_SHARDS_MAX, IngestOptions, IngestReport, auto_shards};
use crate::options::{MAX_RUN_BYTES, MIN_RUN_BYTES};
use crate::progress::Progress;
use crate::publish::{discard, manifest_for, publish_version};
use crate::read_phase::{Input, Runs, read_runs};
use crate::reduce::Reduce;
use crate::resume::verify_done;
use crate::roots::build_roots;
use crate::scratch::Scratch;
use crate::shard_object::VersionTarget;
use crate::write_phase::{WriteCtx, write_shards};

pub async fn ingest(opts: IngestOptions, progress: Arc<dyn Progress>) -> Result<IngestReport, IngestError> {
    let started = Instant::now();
    validate_keyspace(&opts.keyspace)?;
    if opts.max_errors == 0 {
        return Err(IngestError::Invalid("max_errors must be at least 1 (bad input is always reported)".into()));
    }
    if opts.memory_budget < 16 << 20 {
        return Err(IngestError::Invalid("the memory budget must be at least 16 MiB".into()));
    }
    if let Some(r) = opts.run_bytes
        && !(MIN_RUN_BYTES..=(opts.memory_budget / 2).min(MAX_RUN_BYTES)).contains(&r)
    {
        return Err(IngestError::Invalid(format!(
            "the run size must be between 64 KiB and half the memory budget, at most 1 GiB ({} bytes), got {r}",
            (opts.memory_budget / 2).min(MAX_RUN_BYTES)
        )));
    }
    let files = list_sources_with(&opts.inputs, opts.format, &opts.source_settings).await?;
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let stamps = {
        let files = files.clone();
        tokio::task::spawn_blocking(move || stamps(&files)).await.expect("fingerprint task")?
    };
    let fp = fingerprint_of(&files, &stamps);
    if opts.columns.deleted.is_some() {
        if !opts.delta {
            return Err(IngestError::Invalid("--deleted-column marks deletions in a delta: add --delta".into()));
        }
        if let Some(f) = files.iter().find(|f| f.format != InputFormat::Parquet) {
            return Err(IngestError::Invalid(format!(
                "{}: --deleted-column applies to Parquet input (a boolean column)",
                f.path.display()
            )));
        }
    }
    if !opts.delta
        && let Some(f) = files.iter().find(|f| f.format == InputFormat::Keys)
    {
        return Err(IngestError::Invalid(format!(
            "{}: a keys file deletes keys, which only a delta can do: add --delta (or use `cairn delete`)",
            f.path.display()
        )));
    }
    let primary = opts.store.inner.clone();
    let current = pointer::read(primary.as_ref(), &opts.keyspace).await?;
    let delta = match opts.delta {
        true => DeltaBase::read(&opts.store, &opts.keyspace, current.as_ref()).await?,
        false => None,
    };
    let roots = build_roots(&opts, current.as_ref(), delta.as_ref()).await?;
    if opts.delta && delta.is_none() {
        progress.note(&format!("keyspace {:?} has no version yet: the delta is published as its base", opts.keyspace));
    }
    if delta.is_some() && opts.ring_vnodes.is_some() {
        return Err(IngestError::Invalid("a delta is placed like the layers under it: drop --ring-vnodes".into()));
    }
    // A root that cannot be made fails here, named, before the first write (the checkpoint's lease).
    for root in &roots {
        root.prepare_for_writes()?;
    }
    let shards = match opts.shards {
        Some(n) => n,
        None => auto_shards(crate::sizing::text_bytes(&files, &opts.columns).await?),
    };
    if shards == 0 || shards > 100_000 {
        return Err(IngestError::Invalid(format!("--shards must be between 1 and 100000, got {shards}")));
    }
    let spec = match (&delta, opts.ring_vnodes) {
        // A delta's shard count fits the delta, capped at the base's.
        (Some(d), _) if opts.shards.is_none() => d.placement(shards.min(d.manifest.placement.base().shards()))?,
        (Some(d), _) => d.placement(shards)?,
        (None, None) => PlacementSpec::jump(shards),
        (None, Some(v)) => PlacementSpec::ring(shards, v),
    };
    let shards = spec.shards();
    let placement = Placement::new(&spec).map_err(IngestError::Invalid)?;
    let shard_format = ShardFormat { key_filter: delta.is_some(), ..opts.shard_format.clone() };
    let f = &shard_format;
    // The id names the job, not the bytes: a rerun over changed inputs finds the interrupted run's
    // checkpoint and starts over, saying what changed, instead of leaving it behind unnoticed.
    // So it holds the SOURCE arguments and the options as given, not what they expand to (the listing, the
    // shard count picked from the sizes): those are in the fingerprint the checkpoint records.
    let id_src = serde_json::json!({
        "keyspace": opts.keyspace,
        "sources": opts.job_inputs.clone().unwrap_or_else(|| opts.inputs.iter().map(|p| p.to_string_lossy().into_owned()).collect()),
        "input_format": opts.format.map(|f| format!("{f:?}")), "columns": format!("{:?}", opts.columns),
        "shards": opts.shards, "ring_vnodes": opts.ring_vnodes,
        "format": [f.block_rows as u64, f.block_bytes as u64, f.bloom_fpp.to_bits(), f.version() as u64, f.piece_bytes as u64],
        "roots": roots.iter().map(|r| r.url.as_str()).collect::<Vec<_>>(),
        "delta": opts.delta, "deleted_column": opts.columns.deleted,
    });
    let ingest_id = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(id_src.to_string().as_bytes()));

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
        // A delta means "these changes over what is current": once another version replaced it, the same
        // command run again (a leftover checkpoint catches any later run of it) applies them again.
        let replaced = opts.delta && current.as_ref().is_some_and(|c| c.pointer.version != m.version);
        if m.source.fingerprint == fp && !replaced {
            owned.release(primary.as_ref()).await?;
            progress.note(&format!("version {} was already published by an earlier run", m.version));
            return Ok(report(&m, m.shards.iter().map(|s| s.rows).collect(), owned.ckpt.done.len(), (0, 0), started));
        }
        progress.note(&match replaced && m.source.fingerprint == fp {
            true => format!(
                "version {} of this delta was published by an earlier run and has been replaced since; publishing \
                 it again over the current version",
                m.version
            ),
            false => format!("version {} was published from other inputs; starting over", m.version),
        });
        owned.start_over(fresh(), primary.as_ref()).await?;
    }
    // Past the "already published" check: a rerun of a delta that made the last allowed layer reports it.
    if let Some(d) = &delta {
        d.check_layers(opts.max_layers)?;
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
    let width = merge_width(opts.threads.max(1), opts.memory_budget);
    let run_bytes = opts.run_bytes();
    let phase1 = {
        let (files, placement, tmp, progress) = (files.clone(), placement.clone(), tmp.clone(), progress.clone());
        let (max_errors, columns, memory) = (opts.max_errors, opts.columns.clone(), opts.memory_budget);
        let delta = delta.is_some();
        let (handle, stop) = (tokio::runtime::Handle::current(), stop.flag.clone());
        tokio::task::spawn_blocking(move || {
            let input = Input { files: &files, columns: &columns, handle: &handle, stop: &stop, memory, delta };
            let Runs { runs, counts } =
                read_runs(&input, &placement, &skip, run_bytes, tmp.path(), progress.as_ref(), max_errors)?;
            let spilled = runs.iter().filter(|r| r.is_file()).count();
            if spilled <= width.fanin {
                return Ok((runs, counts, spilled, 0));
            }
            progress.note(&format!("merging {spilled} sorted runs, {} at a time", width.fanin));
            let reduce = Reduce {
                dir: tmp.path(),
                shards: 0..placement.shards(),
                fanin: width.fanin,
                threads: width.threads,
                stop: &stop,
            };
            let (runs, merges) = reduce.run(runs, spilled).map_err(|e| {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    IngestError::Invalid("the ingest was stopped while merging sorted runs".into())
                } else {
                    IngestError::Io { context: "cannot merge sorted runs".into(), source: e }
                }
            })?;
            Ok((runs, counts, spilled, merges))
        })
        .await
        .expect("reader task")
    };
    let (runs, counts, spilled, merges) = match phase1 {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, IngestError::BadInput(_)) {
                discard(&roots, &owned, &progress, None).await;
            }
            return Err(e);
        }
    };
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
                delta: delta.is_some(),
                keyspace: opts.keyspace.clone(),
                version: ckpt.version.clone(),
                placement: spec.clone(),
                roots: roots.iter().map(|r| r.url.clone()).collect(),
            },
            roots: roots.clone(),
            format: shard_format.clone(),
            scratch: tmp.clone(),
            files: files.iter().map(|f| (f.path.clone(), f.format == InputFormat::Parquet)).collect(),
            ckpt: owned.clone(),
            stop: stop.flag.clone(),
            progress: progress.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let threads = width.threads;
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
    let source = Source::new(fp, files.iter().map(|f| f.path.display().to_string()).collect());
    let target = VersionTarget {
        delta: delta.is_some(),
        keyspace: opts.keyspace.clone(),
        version: ckpt.version.clone(),
        placement: spec,
        roots: roots.iter().map(|r| r.url.clone()).collect(),
    };
    let mut manifest = manifest_for(&target, shard_format.version(), source, entries, &ckpt.started_at);
    if let Some(d) = &delta {
        let filter = write_filter(&roots, &opts.keyspace, &ckpt.version, &manifest.shards).await?;
        let tombstones = manifest.shards.iter().map(|e| e.tombstones).sum();
        d.stack(&mut manifest, tombstones, filter);
    }
    let rerun = "Rerun the same command: it finishes the publish or reports that it happened";
    publish_version(&roots, &owned, &stop.flag, &progress, &manifest, ckpt.base_version.as_deref(), rerun).await?;
    Ok(report(&manifest, counts, resumed, (spilled, merges), started))
}

pub(crate) fn report(
    m: &Manifest,
    counts: Vec<u64>,
    resumed: usize,
    runs: (usize, usize),
    started: Instant,
) -> IngestReport {
    IngestReport {
        keyspace: m.keyspace.clone(),
        version: m.version.clone(),
        rows: m.rows,
        shards: m.placement.shards(),
        bytes: m.bytes,
        imbalance: imbalance(&counts),
        shard_rows: counts,
        resumed_shards: resumed,
        runs_spilled: runs.0,
        run_merges: runs.1,
        fingerprint: m.source.fingerprint.clone(),
        elapsed: started.elapsed(),
        layers: m.layers.len() + 1,
        tombstones: m.tombstones(),
    }
}
