//! cairn's own exchange, which `cairn.spark.bulk_load` runs instead of a Spark shuffle (issue 30): map tasks
//! stage sorted runs in the store (`RunStager`), reduce tasks merge a range of shards each from all of them
//! (`merge_staged`). Every key must be served after a publish from the reducers' entries, whatever the
//! ranges, on a local store (runs read where they lie) and on one that is not (each reducer fetches only
//! its slice of each run), with more runs than the open-file limit lets one merge read (`ulimit -n 64`:
//! this binary lowers its own limit before any test runs). A key twice, or a damaged run, fails the merge
//! without a panic.

use std::sync::{Arc, Once};

use arrow_array::{ArrayRef, StringArray};
use cairn_ingest::{Build, BuildOptions, PublishOptions, RunStager, StagedRun, VersionTarget};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::stores::Store;
use object_store::ObjectStoreExt;

static LIMIT: Once = Once::new();
/// One test at a time: the limit is the process's, and a merge sizes its fan-in to all of it, as each Spark
/// worker process does.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every test here runs with at most 64 open files, as a Spark worker might, alone.
async fn low_file_limit() -> tokio::sync::MutexGuard<'static, ()> {
    let alone = ONE_AT_A_TIME.lock().await;
    LIMIT.call_once(|| {
        let l = libc::rlimit { rlim_cur: 64, rlim_max: 64.max(current_max()) };
        // SAFETY: setrlimit reads the struct it is given.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) }, 0);
    });
    alone
}

fn current_max() -> u64 {
    let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) };
    l.rlim_max
}

/// `n` rows with UUID-shaped keys and values of varied length.
fn rows(n: usize, seed: u64) -> Vec<(String, String)> {
    (0..n as u64)
        .map(|i| {
            let h = xxhash_rust::xxh3::xxh3_128_with_seed(&i.to_le_bytes(), seed);
            let hex = format!("{h:032x}");
            let key = format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]);
            (key, format!("value {i} {}", "x".repeat((h % 97) as usize)))
        })
        .collect()
}

fn batch(rows: &[(String, String)]) -> (ArrayRef, ArrayRef) {
    (
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(k, _)| k))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(_, v)| v))),
    )
}

/// Stages `rows` as `tasks` map tasks would (every task a share of them, in batches), in small runs.
async fn stage(target: &VersionTarget, store: &Store, rows: &[(String, String)], tasks: u32) -> Vec<StagedRun> {
    let mut runs = Vec::new();
    for t in 0..tasks {
        let mine: Vec<(String, String)> = rows.iter().skip(t as usize).step_by(tasks as usize).cloned().collect();
        let mut s = RunStager::new(target.clone(), vec![store.clone()], (t, 100 + t as u64), Some(64 << 10)).unwrap();
        for part in mine.chunks(1_000) {
            let (k, v) = batch(part);
            s.write(&k, &v).await.unwrap();
        }
        runs.extend(s.finish().await.unwrap());
    }
    runs
}

async fn begin(store: &Store, shards: u32) -> Build {
    let lease = cairn_ingest::checkpoint::DEFAULT_LEASE;
    Build::begin_with("ks", vec![store.clone()], PlacementSpec::jump(shards), lease, &BuildOptions::default())
        .await
        .unwrap()
}

/// Stages, merges in uneven ranges (one of them empty), publishes and serves every key.
async fn exchange_serves_every_key(store: Store, n: usize, tasks: u32) -> usize {
    let shards = 23;
    let build = begin(&store, shards).await;
    let target = build.target().clone();
    let data = rows(n, 7);
    let runs = stage(&target, &store, &data, tasks).await;
    // One run per task, whatever it was given (its spills are merged before it stages).
    assert_eq!(runs.len(), tasks as usize);
    assert_eq!(runs.iter().map(|r| r.rows).sum::<u64>(), n as u64);
    let mut entries: Vec<ShardEntry> = Vec::new();
    for range in [0..1, 1..9, 9..9, 9..22, 22..23] {
        let got =
            cairn_ingest::merge_staged(&target, std::slice::from_ref(&store), &runs, range.clone()).await.unwrap();
        assert!(got.iter().all(|e| range.contains(&e.shard)), "{range:?}");
        entries.extend(got);
    }
    assert_eq!(entries.iter().map(|e| e.rows).sum::<u64>(), n as u64);
    let empty = (0..shards).filter(|s| !entries.iter().any(|e| e.shard == *s)).collect();
    build.publish_with(entries, vec![], &PublishOptions { allow_empty: false, empty_shards: empty }).await.unwrap();
    assert_eq!(cairn_ingest::discard_staged(&target, std::slice::from_ref(&store)).await.unwrap(), runs.len());
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (k, v) in &data {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(v.as_bytes()), "key {k}");
    }
    runs.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reducers_write_every_shard_from_runs_read_where_a_local_store_keeps_them() {
    let _alone = low_file_limit().await;
    let dir = tempfile::tempdir().unwrap();
    exchange_serves_every_key(Store::open(dir.path().to_str().unwrap()).unwrap(), 10_000, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reducers_fetch_their_slices_and_merge_more_runs_than_the_file_limit_allows_at_once() {
    let _alone = low_file_limit().await;
    // Not a local store: each reducer fetches the part of each run that holds its shards.
    let store = Store::open(&format!("memory://exchange-{}", std::process::id())).unwrap();
    // One task given enough rows to spill more runs than one merge reads at once under 64 open files.
    exchange_serves_every_key(store.clone(), 60_000, 1).await;
    // More staged runs (tasks) than one merge reads at once.
    let runs = exchange_serves_every_key(store, 20_000, 48).await;
    // Under 64 open files a merge reads at most a few dozen runs at once.
    assert!(runs > 40, "{runs} runs: not more than one merge reads at once");
    // A local store's runs are read in place only while one merge can read them all: past that, slices.
    let dir = tempfile::tempdir().unwrap();
    let runs = exchange_serves_every_key(Store::open(dir.path().to_str().unwrap()).unwrap(), 20_000, 48).await;
    assert!(runs > 40, "{runs} runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_staged_by_two_tasks_fails_the_merge_naming_it() {
    let _alone = low_file_limit().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let build = begin(&store, 4).await;
    let target = build.target().clone();
    let mut data = rows(2_000, 3);
    data.push((data[777].0.clone(), "another value".into()));
    let runs = stage(&target, &store, &data, 2).await;
    let err = cairn_ingest::merge_staged(&target, std::slice::from_ref(&store), &runs, 0..4).await.unwrap_err();
    assert_eq!(err.to_string(), format!("duplicate key {:?}", data[777].0));
    // Within one task too, its copies far apart in its input (so in different spilled runs, merged before
    // it stages).
    let mut one = rows(3_000, 5);
    one.push((one[3].0.clone(), "again".into()));
    let runs = stage(&target, &store, &one, 1).await;
    let err = cairn_ingest::merge_staged(&target, std::slice::from_ref(&store), &runs, 0..4).await.unwrap_err();
    assert_eq!(err.to_string(), format!("duplicate key {:?}", one[3].0));
    // A null or bad key is refused by the stager, before anything is staged.
    let mut s = RunStager::new(target.clone(), vec![store.clone()], (9, 9), None).unwrap();
    let (k, v) = batch(&[("not a key\n".into(), "v".into())]);
    assert!(s.write(&k, &v).await.unwrap_err().to_string().contains("invalid key"));
    build.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_run_fails_the_merge_and_never_panics() {
    let _alone = low_file_limit().await;
    for url in ["local", "memory"] {
        let dir = tempfile::tempdir().unwrap();
        let store = if url == "local" {
            Store::open(dir.path().to_str().unwrap()).unwrap()
        } else {
            Store::open(&format!("memory://damaged-{}", std::process::id())).unwrap()
        };
        let build = begin(&store, 5).await;
        let target = build.target().clone();
        let runs = stage(&target, &store, &rows(3_000, 11), 1).await;
        let run = &runs[0];
        let path = object_store::path::Path::from(run.path.as_str());
        let good = store.inner.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
        let good_merge = cairn_ingest::merge_staged(&target, std::slice::from_ref(&store), &runs, 0..5).await.unwrap();
        let sums = |e: &[ShardEntry]| {
            e.iter().map(|e| (e.shard, e.rows, e.min_key.clone(), e.max_key.clone())).collect::<Vec<_>>()
        };
        let mut failures = 0;
        for seed in 0..25u64 {
            let mut bad = good.clone();
            match seed % 3 {
                // Shard 1's footer entry where shard 0's was: followed, shard 0's rows would be skipped.
                _ if seed == 24 => {
                    // Entries of 20 bytes (ingest/src/run_file.rs).
                    let e = run.blocks as usize;
                    let next = bad[e + 20..e + 40].to_vec();
                    bad[e..e + 20].copy_from_slice(&next);
                }
                // A byte of the blocks changed.
                0 => bad[(xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) % run.blocks) as usize] ^= 0x5a,
                // A byte of the footer changed.
                1 => {
                    let at =
                        run.blocks + xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) % (good.len() as u64 - run.blocks);
                    bad[at as usize] ^= 0x81;
                }
                // Cut short.
                _ => bad.truncate((xxhash_rust::xxh3::xxh3_64(&seed.to_le_bytes()) % good.len() as u64) as usize),
            }
            store.inner.put(&path, bad.into()).await.unwrap();
            // Into a version of its own: objects of the intact merge's version would refuse other rows, which
            // would hide a merge that lost some.
            let other = begin(&store, 5).await;
            let merged = cairn_ingest::merge_staged(other.target(), std::slice::from_ref(&store), &runs, 0..5).await;
            other.abort().await;
            match merged {
                Err(_) => failures += 1,
                // A change in a part this merge does not read (a footer entry of a shard it does not start
                // from) is harmless; anything else must be found, never written as other rows.
                Ok(e) => assert_eq!(sums(&e), sums(&good_merge), "{url} seed {seed}: a damaged run was merged"),
            }
        }
        assert!(failures >= 16, "{url}: only {failures} of 25 damaged runs failed the merge");
        store.inner.put(&path, good.into()).await.unwrap();
        // No merge of a damaged run left an object the intact run's rows do not match (they would be refused).
        let whole = cairn_ingest::merge_staged(&target, std::slice::from_ref(&store), &runs, 0..5).await.unwrap();
        assert_eq!(sums(&whole), sums(&good_merge));
        assert_eq!(whole.iter().map(|e| e.rows).sum::<u64>(), 3_000);
        build.abort().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_deletes_runs_a_late_task_stages_after_the_publish_and_keeps_a_running_loads() {
    let _alone = low_file_limit().await;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    exchange_serves_every_key(store.clone(), 2_000, 3).await;
    let published = cairn_shared::versions::pointer::read(store.inner.as_ref(), "ks").await.unwrap().unwrap();
    let version = published.pointer.version.clone();
    // A map task's zombie attempt stages its runs after the publish (the load deleted its own already).
    let late_target = VersionTarget { version: version.clone(), ..begin(&store, 23).await.target().clone() };
    let late = stage(&late_target, &store, &rows(500, 9), 1).await;
    assert!(!late.is_empty());
    // And another load is running: its runs are still to be merged.
    let running = begin(&store, 23).await;
    let theirs = stage(running.target(), &store, &rows(500, 10), 1).await;
    let opts = cairn_shared::versions::gc::GcOptions { min_age: std::time::Duration::ZERO, ..Default::default() };
    let report = cairn_shared::versions::gc::collect(std::slice::from_ref(&store), "ks", &opts).await.unwrap();
    assert_eq!(report.staged_runs_deleted, late.len(), "{report:?}");
    assert!(report.kept_versions.contains(&version), "{report:?}");
    let runs_of = |v: &str| {
        let dir = dir.path().join(format!("keyspace=ks/groups/{v}/runs"));
        std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
    };
    assert_eq!(runs_of(&version), 0, "the late runs are gone");
    assert_eq!(runs_of(&running.target().version), theirs.len(), "a running load's runs were deleted");
    let merged = cairn_ingest::merge_staged(running.target(), std::slice::from_ref(&store), &theirs, 0..23).await;
    assert_eq!(merged.unwrap().iter().map(|e| e.rows).sum::<u64>(), 500);
    running.abort().await;
    let engine = Engine::new(store.clone(), EngineConfig::default());
    assert!(engine.get("ks", &rows(2_000, 7)[0].0).await.unwrap().is_some());
}
