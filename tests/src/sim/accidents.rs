//! The accidents of running cairn for real (issue 28): an operator who deletes the keyspace and rebuilds it
//! under the same name, an external build (Spark) whose writers report late or write after the publish or
//! abort, and an ingest whose crashed owner's pid now belongs to another process.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use arrow_array::{ArrayRef, BinaryArray, StringArray};
use cairn_ingest::{Build, NoProgress, PublishOptions, RunStager, ShardObject};
use cairn_shared::format::manifest::ShardEntry;
use cairn_shared::format::ring::{Placement, PlacementSpec};
use cairn_shared::stores::Store;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use super::rng::Rng;
use super::world::{KS, World, one_line};
use super::writers::ingest_once;

/// Deletes every object of the keyspace under every root (`aws s3 rm --recursive`: in listing order, so
/// the pointer goes first), between writes, then ingests a dataset under the same name.
pub async fn demolisher(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 700);
    while w.running() {
        tokio::time::sleep(rng.millis(300, 900)).await;
        if !w.running() {
            break;
        }
        {
            let _alone = w.writers.write().await;
            w.ops.fetch_add(1, Relaxed);
            let mut deleted = 0;
            for root in &w.clean {
                let dir = cairn_shared::format::layout::keyspace_dir(KS);
                let mut listed: Vec<_> = match root.inner.list(Some(&dir)).try_collect::<Vec<_>>().await {
                    Ok(l) => l.into_iter().map(|m| m.location).collect(),
                    Err(e) => return w.violation(format!("demolisher: listing {}: {e}", root.url)),
                };
                listed.sort();
                let versions = listed.iter().filter_map(|p| {
                    let name = p.filename()?;
                    let v = name.strip_suffix(".parquet").or_else(|| name.strip_suffix(".json"))?;
                    (v.len() == "20261124T052300123Z-3f9a0c1e".len()).then(|| v.to_string())
                });
                w.demolished.lock().unwrap().extend(versions);
                for path in listed {
                    match root.inner.delete(&path).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                        Err(e) => return w.violation(format!("demolisher: deleting {path}: {e}")),
                    }
                }
            }
            w.log("demolish", format!("deleted the keyspace ({deleted} objects)"));
        }
        let d = rng.below(w.empty() as u64) as usize;
        let shards = *rng.pick(&[None, Some(2)]);
        let _writing = w.writers.read().await;
        if ingest_once(&w, "demolish", &mut rng, d, shards).await.is_some() {
            w.rebuilt.fetch_add(1, Relaxed);
        }
    }
}

/// The rows of dataset `d` that `spec` places on `shard`, in key order.
fn rows_of<'a>(w: &'a World, d: usize, placement: &Placement, shard: u32) -> Vec<(&'a String, &'a Vec<u8>)> {
    let data = &w.datasets[d];
    data.keys.iter().filter(|k| placement.shard_of(k.as_bytes()) == shard).map(|k| (k, &data.rows[k])).collect()
}

async fn write_shard(
    w: &World,
    target: &cairn_ingest::VersionTarget,
    d: usize,
    shard: u32,
    roots: &[Store],
) -> Result<ShardEntry, String> {
    let placement = Placement::new(&target.placement).map_err(|e| e.to_string())?;
    let tmp = tempfile::tempdir_in(&w.tmp).map_err(|e| e.to_string())?;
    let mut obj = ShardObject::create(target, &Default::default(), shard, tmp.path()).map_err(|e| e.to_string())?;
    for (k, v) in rows_of(w, d, &placement, shard) {
        obj.append(k, v).map_err(|e| e.to_string())?;
    }
    obj.finish_exclusive(roots).await.map_err(|e| one_line(&e.to_string()))
}

/// An external build, as `cairn.spark.bulk_load` runs one: begin, every shard written by a "task", publish.
/// Now and then a task reports late (its shard is missing from the publish, and written after it), a
/// zombie task writes a shard with other rows after the publish, or the build is aborted and a task writes
/// after the abort; and the driver may crash at any point.
pub async fn builder(w: Arc<World>) {
    let mut rng = Rng::new(w.seed, 800);
    while w.running() {
        tokio::time::sleep(rng.millis(50, 300)).await;
        let _writing = w.writers.read().await;
        w.ops.fetch_add(1, Relaxed);
        let d = w.pick_dataset(&mut rng);
        let shards = *rng.pick(&[1u32, 2, 4]);
        let scenario = rng.below(10);
        let crash = rng.chance(150).then(|| rng.millis(0, 30));
        let run = build_once(&w, d, shards, scenario);
        let outcome = match crash {
            Some(after) => tokio::time::timeout(after, run).await.unwrap_or_else(|_| Ok("crashed".into())),
            None => run.await,
        };
        w.log(
            "builder",
            match outcome {
                Ok(s) => format!("dataset {d} shards {shards}: {s}"),
                Err(e) => format!("dataset {d} shards {shards}: {}", one_line(&e)),
            },
        );
    }
}

/// A build's shards through cairn's exchange, as `bulk_load` makes them: two map tasks stage the rows as
/// sorted runs through the faulty roots (in scenario 5 a failed attempt of the first also stages runs that
/// nobody reports), then two merge tasks write half of the shards each from every reported run.
async fn exchange(
    w: &World,
    target: &cairn_ingest::VersionTarget,
    d: usize,
    scenario: u64,
) -> Result<Vec<ShardEntry>, String> {
    let data = &w.datasets[d];
    let mut runs = Vec::new();
    for (task, attempt) in [(0u32, 1u64), (1, 2)].into_iter().chain((scenario == 5).then_some((0, 3))) {
        let mine: Vec<&String> = data.keys.iter().skip(task as usize).step_by(2).collect();
        let keys: ArrayRef = Arc::new(StringArray::from_iter_values(&mine));
        let values: ArrayRef = Arc::new(BinaryArray::from_iter_values(mine.iter().map(|k| &data.rows[*k])));
        let mut stager = RunStager::new(target.clone(), w.roots.clone(), (task, attempt), Some(64 << 10))
            .map_err(|e| e.to_string())?;
        stager.write(&keys, &values).await.map_err(|e| e.to_string())?;
        let staged = stager.finish().await.map_err(|e| e.to_string())?;
        if attempt != 3 {
            runs.extend(staged);
        }
    }
    let n = target.placement.shards();
    let mut entries = Vec::new();
    for range in [0..n / 2, n / 2..n] {
        entries.extend(cairn_ingest::merge_staged(target, &w.roots, &runs, range).await.map_err(|e| e.to_string())?);
    }
    Ok(entries)
}

async fn build_once(w: &World, d: usize, shards: u32, scenario: u64) -> Result<String, String> {
    let build = Build::begin(KS, w.roots.clone(), PlacementSpec::jump(shards), Duration::from_secs(30))
        .await
        .map_err(|e| e.to_string())?;
    let target = build.target().clone();
    w.built.lock().unwrap().insert(target.version.clone(), d);
    // Scenario 0-1: the last shard's task reports late; 2: abort, then a task writes; 3: a zombie after
    // the publish; 4-5: the shards come through the exchange; else all report.
    let late = (scenario < 2).then_some(shards - 1);
    let exchanged = (4..=5).contains(&scenario);
    let mut entries = Vec::new();
    if exchanged {
        match exchange(w, &target, d, scenario).await {
            Ok(e) => entries = e,
            Err(e) => {
                build.abort().await;
                return Err(format!("the exchange failed ({e}); aborted"));
            }
        }
    }
    for s in (0..shards).filter(|_| !exchanged) {
        if Some(s) == late {
            continue;
        }
        match write_shard(w, &target, d, s, &w.roots).await {
            Ok(e) => entries.push(e),
            Err(e) => {
                build.abort().await;
                return Err(format!("a writer failed ({e}); aborted"));
            }
        }
    }
    if scenario == 2 {
        build.abort().await;
        let after = write_shard(w, &target, d, 0, &w.roots).await;
        return Ok(format!("aborted {}; a task wrote after the abort: {after:?}", target.version));
    }
    // The exchange writes no object for a shard without rows: the publish writes those empty.
    let empty = (0..shards).filter(|s| exchanged && !entries.iter().any(|e| e.shard == *s)).collect();
    let published =
        build.publish_with(entries, vec![], &PublishOptions { allow_empty: false, empty_shards: empty }).await;
    if let Some(s) = late {
        let wrote = write_shard(w, &target, d, s, &w.roots).await.map(|_| "written");
        return match published {
            Ok(r) => {
                w.published.fetch_add(1, Relaxed);
                let rows = rows_of(w, d, &Placement::new(&target.placement).unwrap(), s).len();
                if rows > 0 {
                    // Readers will find the shard's keys missing; say why here too.
                    w.log("builder", format!("published {} without shard {s}'s {rows} rows", r.version));
                }
                Ok(format!("published {} before shard {s} reported; the late task: {wrote:?}", r.version))
            }
            Err(e) => {
                build.abort().await;
                Ok(format!(
                    "refused a publish without shard {s} ({}); the late task: {wrote:?}",
                    one_line(&e.to_string())
                ))
            }
        };
    }
    let report = match published {
        Ok(r) => r,
        Err(e) => {
            build.abort().await;
            return Err(format!("publish: {e}; aborted"));
        }
    };
    w.published.fetch_add(1, Relaxed);
    if exchanged {
        // What is left (a fault, the failed attempt's runs beyond it) goes with the version (gc).
        let _ = cairn_ingest::discard_staged(&target, &w.roots).await;
    }
    if d == w.empty() {
        w.violation(format!("(e) builder: an empty build was published over the keyspace as {}", report.version));
    }
    if scenario == 3 {
        // A zombie task of shard 0 with another dataset's rows: refused, or identical.
        let other = (d + 1) % w.empty();
        let zombie = write_shard(w, &target, other, 0, &w.roots).await;
        return Ok(format!("published {}; a zombie task: {zombie:?}", report.version));
    }
    Ok(format!("published {}", report.version))
}

/// An ingest into a keyspace of its own whose run crashes (its future dropped); then the pid its
/// checkpoint names is "reused" by another live process (this test's parent) and its lease runs out; the
/// rerun must resume, never be refused for good.
pub async fn pid_reuser(w: Arc<World>) {
    const PID_KS: &str = "sim-pid";
    let lease = Duration::from_millis(100);
    let mut rng = Rng::new(w.seed, 900);
    let parent = std::os::unix::process::parent_id();
    while w.running() {
        tokio::time::sleep(rng.millis(20, 200)).await;
        w.ops.fetch_add(1, Relaxed);
        let d = rng.below(w.empty() as u64) as usize;
        let options = || {
            let mut o = cairn_ingest::IngestOptions::new(&w.datasets[d].file, PID_KS, w.roots[0].clone());
            o.shards = Some(4);
            o.threads = 1;
            o.memory_budget = 16 << 20;
            o.tmp_dir = Some(w.tmp.clone());
            o.lease = lease;
            o
        };
        let crash_after = rng.millis(0, 30);
        if tokio::time::timeout(crash_after, cairn_ingest::ingest(options(), Arc::new(NoProgress))).await.is_ok() {
            continue; // finished (or failed) before the crash
        }
        let reused = reuse_pid(&w, PID_KS, parent, 5 * lease).await;
        let refused_at = SystemTime::now();
        match cairn_ingest::ingest(options(), Arc::new(NoProgress)).await {
            Ok(r) => w.log("pid-reuse", format!("rewrote {reused} owners; the rerun published {}", r.version)),
            Err(cairn_ingest::IngestError::Busy(why)) => {
                // Refused: only right if some owner's lease was still running then.
                let expired = lease_ended_before(&w, PID_KS, refused_at - lease).await;
                if reused > 0 && expired {
                    w.violation(format!("(g) a rerun was refused by an owner whose lease ran out: {}", one_line(&why)));
                } else {
                    w.log("pid-reuse", format!("refused: {}", one_line(&why)));
                }
            }
            Err(e) => w.log("pid-reuse", format!("rerun: {}", one_line(&e.to_string()))),
        }
    }
}

/// The checkpoint objects (clean primary) of `ks` that name an owner.
async fn owners(w: &World, ks: &str) -> Vec<(object_store::path::Path, serde_json::Value)> {
    let dir = object_store::path::Path::from(format!("keyspace={ks}/_ingest"));
    let listed: Vec<_> = w.clean[0].inner.list(Some(&dir)).try_collect().await.unwrap_or_default();
    let mut out = Vec::new();
    for m in listed {
        let Ok(got) = w.clean[0].inner.get(&m.location).await else { continue };
        let Ok(bytes) = got.bytes().await else { continue };
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && v.get("owner").is_some_and(|o| o.is_object())
        {
            out.push((m.location, v));
        }
    }
    out
}

/// Makes every owner of `ks` a process that is alive but not it (`pid`), its heartbeat `age` old.
async fn reuse_pid(w: &World, ks: &str, pid: u32, age: Duration) -> usize {
    let mut n = 0;
    for (path, mut v) in owners(w, ks).await {
        let owner = v["owner"].as_object_mut().expect("checked");
        owner.insert("pid".into(), pid.into());
        owner.insert("token".into(), format!("reused-{}", uuid::Uuid::new_v4()).into());
        let at = humantime::format_rfc3339_millis(SystemTime::now() - age).to_string();
        owner.insert("heartbeat_at".into(), at.into());
        let body = PutPayload::from(serde_json::to_vec(&v).unwrap());
        if w.clean[0].inner.put(&path, body).await.is_ok() {
            n += 1;
        }
    }
    n
}

/// Whether every owner named in `ks`'s checkpoints had its last heartbeat's lease end before `t`.
async fn lease_ended_before(w: &World, ks: &str, t: SystemTime) -> bool {
    let found = owners(w, ks).await;
    !found.is_empty()
        && found.iter().all(|(_, v)| {
            let o = &v["owner"];
            let at = o["heartbeat_at"].as_str().and_then(|s| humantime::parse_rfc3339(s).ok());
            let lease = Duration::from_millis(o["lease_ms"].as_u64().unwrap_or(0));
            at.is_some_and(|at| at + lease < t)
        })
}
