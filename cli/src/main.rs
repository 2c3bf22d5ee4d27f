//! The `cairn` binary: server, ingest job, admin commands and a redis-cli-like client.

mod admin;
mod args;
mod client;
mod info_report;
mod interrupt;
mod layers;
mod output;
mod progress;
mod published;
mod repl;
mod serve_file;
mod sigv4;

use std::process::ExitCode;
use std::sync::Arc;

use cairn_ingest::IngestOptions;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::versions::{manifest_copies, pointer};
use cairn_shared::{Engine, format::manifest};
use clap::Parser;

use args::{Cli, Command, IngestArgs};
use client::Client;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cairn_shared::config::LogConfig::from_env() {
        Ok(log) => cairn_functions::telemetry::init(&log, false),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(Command::Serve { workers: Some(n), .. }) = &cli.command {
        rt.worker_threads(*n as usize);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    let code = match rt.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    // The threads of a job stopped by a signal end at their next record or shard; they are waited for
    // (their scratch space goes with them), but not for ever.
    rt.shutdown_timeout(std::time::Duration::from_secs(60));
    code
}

type Res = Result<u8, Box<dyn std::error::Error>>;

async fn run(cli: Cli) -> Res {
    let client = || Client::new(&cli.url, cli.timeout, &cli.sigv4);
    match cli.command {
        None => Ok(repl::run(&client().await?, &cli.url, cli.keyspace.clone()).await as u8),
        Some(Command::Delete { keys, keys_from, keyspace, store, layers }) => {
            let store = Store::open(&store.store)?;
            match interrupt::interruptible(layers::delete(store, &keyspace, &keys, keys_from, &layers)).await {
                Ok(done) => admin::print_report(&done?),
                Err(stop) => return Ok(interrupted(stop)),
            }
            Ok(0)
        }
        Some(Command::Compact { keyspace, store, threads }) => {
            let mut opts = cairn_ingest::CompactOptions::new(&keyspace, Store::open(&store.store)?);
            if let Some(t) = threads {
                opts.threads = t;
            }
            match interrupt::interruptible(cairn_ingest::compact(opts, Arc::new(progress::Bars::new()))).await {
                Ok(done) => admin::print_report(&done?),
                Err(stop) => return Ok(interrupted(stop)),
            }
            Ok(0)
        }
        Some(Command::Get { key }) => {
            let v = client().await?.get(&cli.keyspace, &key).await?;
            output::print_value(v.as_deref());
            Ok(if v.is_some() { 0 } else { 1 })
        }
        Some(Command::Mget { keys }) => {
            output::print_values(&client().await?.mget(&cli.keyspace, &keys).await?);
            Ok(0)
        }
        Some(Command::Exists { keys }) => {
            let n = client().await?.mget(&cli.keyspace, &keys).await?.iter().filter(|v| v.is_some()).count();
            println!("{n}");
            Ok(0)
        }
        Some(Command::Info { json }) => {
            let info = client().await?.info(&cli.keyspace).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                print!("{}", info_report::render(&info));
            }
            Ok(0)
        }
        Some(Command::Ingest(args)) => {
            let store = Store::open(&args.store.store)?;
            ingest(args, store).await
        }
        Some(Command::Serve { file, store, port, host, allow_empty, .. }) => {
            let store = Store::open(&store.store)?;
            // Listened for from here on: a signal while FILE is ingested, or before the server runs, stops it.
            let stop = cairn_functions::server::shutdown_signal();
            let file_given = file.is_some();
            if let Some(file) = file {
                match interrupt::interruptible(serve_file::ensure_ingested(&file, &store, allow_empty)).await {
                    Ok(done) => done?,
                    Err(stop) => return Ok(interrupted(stop)),
                }
            } else {
                // Said for the operator's sake: a store that cannot be listed now does not stop the server
                // (its readers fail over to replicas, or answer once the store is back). A signal meanwhile
                // stops it, as during FILE's ingest.
                let listed = match interrupt::interruptible(pointer::list_keyspaces(store.inner.as_ref())).await {
                    Ok(listed) => listed,
                    Err(stop) => {
                        eprintln!("interrupted by {} while listing {}: not serving", stop.name, store.url);
                        return Ok(stop.status);
                    }
                };
                match listed {
                    Ok(ks) if ks.is_empty() => {
                        eprintln!("note: {} holds no keyspaces yet; `cairn ingest` one or pass a FILE", store.url)
                    }
                    Ok(ks) => eprintln!("keyspaces in {}: {}", store.url, ks.join(", ")),
                    Err(e) => eprintln!("warning: could not list the keyspaces in {}: {e}; serving anyway", store.url),
                }
            }
            let engine = Arc::new(Engine::new(store, EngineConfig::from_env()?));
            let mut limits = cairn_shared::config::ServeConfig::from_env()?;
            // FILE's keyspace is ready before the server answers ready.
            if file_given && !limits.warm_keyspaces.iter().any(|k| k == "default") {
                limits.warm_keyspaces.push("default".into());
            }
            let (addr, serving) =
                cairn_functions::server::bind_until(engine, (host, port).into(), limits, stop).await?;
            eprintln!("serving on http://{addr}  (try: curl http://{addr}/v1/keyspaces/default)");
            serving.await?;
            Ok(0)
        }
        Some(Command::Versions { store, keyspace }) => {
            let store = Store::open(&store.store)?;
            let current = pointer::read(store.inner.as_ref(), &keyspace).await?.map(|c| c.pointer.version);
            let versions = manifest::list_versions(store.inner.as_ref(), &keyspace).await?;
            if versions.is_empty() {
                return Err(format!("keyspace {keyspace:?} has no versions in {}", store.url).into());
            }
            for v in versions {
                let mark = if Some(&v) == current.as_ref() { "*" } else { " " };
                println!("{mark} {v}{}", layers::describe(&store, &keyspace, &v).await);
            }
            Ok(0)
        }
        Some(Command::Health { store, replicas, keyspace, deep, json }) => {
            let store = Store::open(&store.store)?;
            // A top level no root holds (as the pointer names it), or groups no root holds intact: lookups
            // fail, so the keyspace is RED (as `GET /v1/health?shards=true` says), not a failed check.
            let red = |e: &cairn_shared::Error, hint: &str| -> Res {
                if json {
                    let red =
                        serde_json::json!({ "keyspace": keyspace, "status": "RED", "error": format!("{e}{hint}") });
                    println!("{}", serde_json::to_string_pretty(&red)?);
                } else {
                    println!("{keyspace}: RED: {e}{hint}");
                }
                Ok(4)
            };
            let published = match published::published_roots(&store, &keyspace, &replicas.replicas).await {
                Ok(p) => p,
                Err(e) if e.kind() == cairn_shared::ErrorKind::DataLoss => {
                    return red(
                        &e,
                        " (asked: the primary, the roots --replicas names and those earlier versions name)",
                    );
                }
                Err(e) => return Err(e.into()),
            };
            let (roots, current) = (published.roots, published.pointer);
            let vouched = current.manifest.as_ref();
            let manifest = match manifest_copies::read_whole(&roots, &keyspace, &current.version, vouched).await {
                Ok(m) => m,
                Err(e) if matches!(e.kind(), cairn_shared::ErrorKind::DataLoss | cairn_shared::ErrorKind::Corrupt) => {
                    return red(&e, "");
                }
                Err(e) => return Err(e.into()),
            };
            let report = cairn_shared::versions::health::check_version(&roots, &manifest, deep).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                admin::print_health(&report);
            }
            Ok(match report.status {
                cairn_shared::versions::health::Status::Green => 0,
                cairn_shared::versions::health::Status::Yellow => 3,
                cairn_shared::versions::health::Status::Red => 4,
            })
        }
        Some(Command::Repair { store, replicas, keyspace }) => {
            let store = Store::open(&store.store)?;
            let (manifest, published) = published::keyspace_roots(&store, &keyspace, &replicas.replicas).await?;
            let roots = published.roots;
            let mut repaired = cairn_shared::versions::repair::repair(&roots, &manifest).await?;
            // Every layer the version stacks on, too; one whose manifest no root holds is past repair, and
            // the others are still mended.
            for layer in &manifest.layers {
                let older = match manifest_copies::older_layer(&roots, &keyspace, layer).await {
                    Ok(m) => m,
                    // A store that failed may answer the next run: not a verdict on the data.
                    Err((_, e)) if e.kind() == cairn_shared::ErrorKind::Unavailable => return Err(e.into()),
                    Err((_, e)) => {
                        println!("layer {}: {e}", layer.version);
                        repaired.manifest_unrecoverable = true;
                        continue;
                    }
                };
                let r = cairn_shared::versions::repair::repair_layer(&roots, &older, &layer.manifest).await?;
                repaired.copied += r.copied;
                repaired.metadata_copied += r.metadata_copied;
                repaired.unrecoverable.extend(r.unrecoverable);
                repaired.manifest_unrecoverable |= r.manifest_unrecoverable;
            }
            let after = cairn_shared::versions::health::check_version(&roots, &manifest, true).await;
            println!(
                "copied {} shard copies and {} manifest/pointer copies; {keyspace} is now {:?}",
                repaired.copied, repaired.metadata_copied, after.status
            );
            if !repaired.unrecoverable.is_empty() {
                println!("shards with no good copy left (re-ingest or roll back): {:?}", repaired.unrecoverable);
            }
            if repaired.manifest_unrecoverable {
                println!(
                    "no root holds an intact copy of the manifest or of an object it lists (a group, the input \
                     listing, a delta's key filter): re-ingest or roll back"
                );
            }
            Ok(if after.status == cairn_shared::versions::health::Status::Green { 0 } else { 1 })
        }
        Some(Command::Gc { store, replicas, keyspace, keep, min_age, dry_run }) => {
            let store = Store::open(&store.store)?;
            let opts = cairn_shared::versions::gc::GcOptions { keep, min_age, dry_run };
            if pointer::read(store.inner.as_ref(), &keyspace).await?.is_none() {
                // No version yet (its first ingest was killed, say): only what its killed writes left goes.
                let mut roots = vec![store];
                for r in &replicas.replicas {
                    roots.push(Store::open(r)?);
                }
                for r in &roots[1..] {
                    if pointer::read(r.inner.as_ref(), &keyspace).await?.is_some() {
                        return Err(format!(
                            "{keyspace} has no pointer in the primary ({}) but has one in {}: nothing was \
                             deleted (is the primary the right store?)",
                            roots[0].url, r.url
                        )
                        .into());
                    }
                }
                let r = cairn_shared::versions::gc::collect_unpublished(&roots, &keyspace, &opts).await;
                if r.staging_files_deleted == 0 {
                    return Err(cairn_shared::Error::KeyspaceNotFound(keyspace).into());
                }
                let verb = if dry_run { "would delete" } else { "deleted" };
                println!(
                    "{keyspace}: no version yet; {verb} {} staging files ({} bytes) that killed writes left",
                    r.staging_files_deleted, r.staging_bytes_deleted
                );
                return Ok(0);
            }
            let (_, published) = published::keyspace_roots(&store, &keyspace, &replicas.replicas).await?;
            // gc reads the current version's layers from the roots' copies of its top level: not while the
            // primary's is missing or damaged.
            if !published.primary_intact {
                return Err(format!(
                    "the primary's copy of {keyspace}'s current manifest top level is missing or damaged: run \
                     `cairn repair` before `cairn gc`"
                )
                .into());
            }
            let roots = published.roots;
            let r = cairn_shared::versions::gc::collect(&roots, &keyspace, &opts).await?;
            let verb = if dry_run { "would delete" } else { "deleted" };
            println!(
                "{keyspace}: {verb} {} versions ({} objects, {} bytes) under {} roots; kept {} versions{}",
                r.deleted_versions.len(),
                r.objects_deleted,
                r.bytes_deleted,
                roots.len(),
                r.kept_versions.len(),
                if r.young_objects_kept > 0 {
                    format!(", and {} objects of versions replaced less than --min-age ago", r.young_objects_kept)
                } else {
                    String::new()
                }
            );
            for v in &r.deleted_versions {
                println!("  - {v}");
            }
            for id in &r.expired_checkpoints {
                println!("  expired checkpoint of an abandoned ingest: {id}");
            }
            if r.staged_runs_deleted > 0 {
                let verb = if r.dry_run { "would delete" } else { "deleted" };
                println!("  {verb} {} runs staged by bulk loads of published versions", r.staged_runs_deleted);
            }
            if r.staging_files_deleted > 0 {
                let (n, bytes) = (r.staging_files_deleted, r.staging_bytes_deleted);
                println!("  {verb} {n} staging files ({bytes} bytes) that killed writes left in local roots");
            }
            for f in &r.failed {
                eprintln!("  could not delete (still marked; the next run retries): {f}");
            }
            Ok(if r.failed.is_empty() { 0 } else { 1 })
        }
        Some(Command::Rollback { store, keyspace, to }) => {
            let store = Store::open(&store.store)?;
            let (from, to) = admin::rollback(&store, &keyspace, to.as_deref()).await?;
            if from == to {
                println!("{keyspace}: {to} is already the current version; nothing changed");
            } else {
                println!("{keyspace}: {from} -> {to} (readers follow within the manifest TTL)");
            }
            Ok(0)
        }
    }
}

/// What a job stopped by a signal leaves, said once its threads have stopped; the exit status.
fn interrupted(stop: interrupt::Interrupted) -> u8 {
    eprintln!(
        "interrupted by {}: stopping (a second signal ends it at once). Its scratch space is removed; its \
         checkpoint stays in the store: rerunning the same command resumes it, or reports the publish if it \
         had happened",
        stop.name
    );
    stop.status
}

async fn ingest(args: IngestArgs, store: Store) -> Res {
    let mut opts = IngestOptions::new("", &args.keyspace, store);
    opts.inputs = args.inputs;
    opts.columns = cairn_ingest::Columns {
        key: args.key_column,
        value: match args.value_columns {
            Some(cols) => {
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = cols.iter().find(|c| !seen.insert(c.as_str())) {
                    return Err(format!("--value-columns names {dup:?} twice").into());
                }
                if cols.iter().any(String::is_empty) {
                    return Err("--value-columns has an empty column name".into());
                }
                cairn_ingest::ValueSpec::Json(cols)
            }
            None => cairn_ingest::ValueSpec::Column(args.value_column),
        },
        deleted: None,
    };
    opts.replicas = args.replicas.iter().map(|u| Store::open(u)).collect::<Result<_, _>>()?;
    opts.shards = args.shards;
    opts.format = args.format;
    opts.ring_vnodes = args.ring_vnodes;
    opts.memory_budget = args.memory as usize;
    opts.run_bytes = args.run_size.map(|b| b as usize);
    opts.tmp_dir = args.tmp_dir;
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    opts.allow_empty = args.allow_empty;
    opts.delta = args.delta;
    opts.columns.deleted = args.deleted_column;
    opts.max_layers = args.layers.max_layers;
    if args.delta && args.layers.compact {
        match interrupt::interruptible(layers::compact_if_full(&opts.store, &opts.keyspace, opts.max_layers)).await {
            Ok(done) => done?,
            Err(stop) => return Ok(interrupted(stop)),
        }
    }
    match interrupt::interruptible(cairn_ingest::ingest(opts, Arc::new(progress::Bars::new()))).await {
        Ok(report) => admin::print_report(&report?),
        Err(stop) => return Ok(interrupted(stop)),
    }
    Ok(0)
}
