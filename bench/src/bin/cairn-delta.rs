//! Delta layers at scale (scripts/bench-delta.sh runs it; BENCHMARKS.md, "Delta layers"): on a base of the
//! DATA file's keys, a 1% delta (10% of it deletions) against a full rebuild of the same final data;
//! lookups at 1, 2, 5 and 8 layers (warm HTTP throughput through `cairn serve`'s server and cairn-load,
//! warm in-process, and cold requests and bytes per key class); the cache hit rate right after a delta
//! publish against right after a full republish; `cairn compact` against `cairn ingest`.
//!
//! usage: cairn-delta STORE_DIR DATA_FILE WORK_DIR CAIRN_LOAD_BIN
//! prints one JSON object per measurement.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{BooleanArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use cairn_ingest::{CompactOptions, IngestOptions, NoProgress};
use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, ServeConfig};
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use serde_json::json;

/// cairn-load asks for keys of keyspace `bench`.
const KS: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, data, work, load_bin) = (&args[1], &args[2], std::path::PathBuf::from(&args[3]), &args[4]);
    std::fs::create_dir_all(&work).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(run(store_dir, data, &work, load_bin));
}

fn emit(v: serde_json::Value) {
    println!("{v}");
}

/// Every `every`-th key of the data file, in file order (the file's keys are random UUIDs).
fn sample_keys(data: &str, every: usize, skip: usize) -> Vec<String> {
    let bytes = std::fs::read(data).unwrap();
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .skip(skip)
        .step_by(every)
        .map(|l| String::from_utf8_lossy(&l[..l.iter().position(|&b| b == b' ').unwrap()]).into_owned())
        .collect()
}

async fn ingest(store: &Store, ks: &str, input: std::path::PathBuf, delta: bool, shards: Option<u32>) -> (f64, u64) {
    let mut o = IngestOptions::new(input, ks, store.clone());
    o.delta = delta;
    o.shards = shards;
    o.threads = 2;
    let t = Instant::now();
    let r = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap();
    (t.elapsed().as_secs_f64(), written(store, ks, &r.version).await)
}

/// Bytes a version's publish wrote: its shard objects, its manifest (and groups), its key filter.
async fn written(store: &Store, ks: &str, version: &str) -> u64 {
    let m = Manifest::read(store.inner.as_ref(), ks, version).await.unwrap();
    let top = std::fs::metadata(format!(
        "{}/keyspace={ks}/manifests/{version}.json",
        store.url.trim_start_matches("file://")
    ))
    .map_or(0, |m| m.len());
    m.bytes + top + m.delta.as_ref().map_or(0, |d| d.filter.bytes)
}

/// A delta input: `changes` keys with new values and `deletes` keys deleted (Parquet, a boolean column).
fn delta_file(path: &std::path::Path, changes: &[String], deletes: &[String], tag: &str) {
    let keys: Vec<&str> = changes.iter().chain(deletes).map(String::as_str).collect();
    let values: Vec<Option<String>> =
        changes.iter().map(|k| Some(format!("{tag} {k}"))).chain(deletes.iter().map(|_| None)).collect();
    let gone: Vec<bool> = changes.iter().map(|_| false).chain(deletes.iter().map(|_| true)).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
        Field::new("gone", DataType::Boolean, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(keys)),
            Arc::new(StringArray::from(values)),
            Arc::new(BooleanArray::from(gone)),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

async fn publish_delta(store: &Store, path: std::path::PathBuf) -> (f64, u64) {
    let mut o = IngestOptions::new(path, KS, store.clone());
    o.delta = true;
    o.columns.deleted = Some("gone".into());
    o.threads = 2;
    let t = Instant::now();
    let r = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap();
    (t.elapsed().as_secs_f64(), written(store, KS, &r.version).await)
}

async fn run(store_dir: &str, data: &str, work: &std::path::Path, load_bin: &str) {
    let store = Store::open(store_dir).unwrap();
    let base_keys = sample_keys(data, 100, 0); // 1% of the keys: the delta's
    let (changes, deletes) = base_keys.split_at(base_keys.len() * 9 / 10);
    let total = std::fs::read(data).unwrap().split(|&b| b == b'\n').filter(|l| !l.is_empty()).count() as u64;

    // The base, then a 1% delta over it.
    let (base_s, base_bytes) = ingest(&store, KS, data.into(), false, None).await;
    let shards = Manifest::read_top(store.inner.as_ref(), KS, &current(&store).await).await.unwrap().placement.shards();
    emit(json!({"bench": "base_ingest", "keys": total, "seconds": base_s, "bytes": base_bytes, "shards": shards}));
    let d1 = work.join("delta-1.parquet");
    delta_file(&d1, changes, deletes, "changed-1");
    let (delta_s, delta_bytes) = publish_delta(&store, d1).await;

    // A full rebuild of the same final data (same shard count).
    let gone: HashSet<&str> = deletes.iter().map(String::as_str).collect();
    let changed: HashSet<&str> = changes.iter().map(String::as_str).collect();
    let final_file = work.join("final.data");
    {
        use std::io::Write;
        let bytes = std::fs::read(data).unwrap();
        let mut out = std::io::BufWriter::new(std::fs::File::create(&final_file).unwrap());
        for l in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let k = std::str::from_utf8(&l[..l.iter().position(|&b| b == b' ').unwrap()]).unwrap();
            if gone.contains(k) {
                continue;
            }
            if changed.contains(k) {
                writeln!(out, "{k} changed-1 {k}").unwrap();
            } else {
                out.write_all(l).unwrap();
                out.write_all(b"\n").unwrap();
            }
        }
    }
    let (full_s, full_bytes) = ingest(&store, "rebuild", final_file.clone(), false, Some(shards)).await;
    emit(json!({"bench": "delta_vs_rebuild", "delta_keys": base_keys.len(), "deletes": deletes.len(),
        "delta_s": delta_s, "delta_bytes": delta_bytes, "rebuild_s": full_s, "rebuild_bytes": full_bytes,
        "speedup": full_s / delta_s, "bytes_ratio": delta_bytes as f64 / full_bytes as f64}));

    // Caches right after a publish: a delta over a warm keyspace against a full republish of one.
    let probe = sample_keys(data, 50, 17); // keys the deltas do not touch (offset from the delta's)
    let probe = &probe[..probe.len().min(100_000)];
    let mut hit_rates = serde_json::Map::new();
    for (what, ks) in [("after_delta", KS), ("after_full_republish", "rebuild")] {
        let engine = Engine::new(store.clone(), EngineConfig { data_cache_bytes: 1 << 30, ..Default::default() });
        for _ in 0..2 {
            for k in probe {
                engine.get(ks, k).await.unwrap();
            }
        }
        if ks == KS {
            let d = work.join("delta-hit.parquet");
            let more = sample_keys(data, 100, 3);
            delta_file(&d, &more, &[], "changed-2");
            publish_delta(&store, d).await;
        } else {
            ingest(&store, ks, final_file.clone(), false, Some(shards)).await;
        }
        engine.refresh();
        engine.sync_caches().await;
        let before = engine.counters();
        for k in probe {
            engine.get(ks, k).await.unwrap();
        }
        let after = engine.counters();
        let (h, m) = (after.cache_hits - before.cache_hits, after.cache_misses - before.cache_misses);
        hit_rates.insert(
            what.into(),
            json!({"hit_rate": h as f64 / (h + m).max(1) as f64,
            "object_gets": after.object_gets - before.object_gets}),
        );
    }
    emit(json!({"bench": "cache_after_publish", "keys": probe.len(), "results": hit_rates}));

    // Lookups at 1 (a base alone: compacted), 2, 5 and 8 layers.
    let compact_t = Instant::now();
    let mut o = CompactOptions::new(KS, store.clone());
    o.threads = 2;
    let compacted = cairn_ingest::compact(o, Arc::new(NoProgress)).await.unwrap();
    let compact_s = compact_t.elapsed().as_secs_f64();
    emit(
        json!({"bench": "compact", "keys": compacted.rows, "seconds": compact_s, "keys_per_s": compacted.rows as f64 / compact_s,
        "ingest_keys_per_s": total as f64 / base_s, "ratio": (compacted.rows as f64 / compact_s) / (total as f64 / base_s)}),
    );
    let mut layers = 1;
    let mut newest: Vec<String> = Vec::new();
    let mut deleted: Vec<String> = Vec::new();
    for target in [1usize, 2, 5, 8] {
        while layers < target {
            let keys = sample_keys(data, 100, 5 + layers);
            let (ch, del) = keys.split_at(keys.len() * 9 / 10);
            let d = work.join(format!("delta-l{layers}.parquet"));
            delta_file(&d, ch, del, &format!("layer-{layers}"));
            publish_delta(&store, d).await;
            newest = ch.to_vec();
            deleted = del.to_vec();
            layers += 1;
        }
        lookups(&store, data, target, &newest, &deleted, load_bin, work).await;
    }
}

async fn current(store: &Store) -> String {
    cairn_shared::versions::pointer::read(store.inner.as_ref(), KS).await.unwrap().unwrap().pointer.version
}

/// Cold requests and bytes per key class, warm in-process lookups/s, and warm HTTP requests/s.
async fn lookups(
    store: &Store,
    data: &str,
    layers: usize,
    newest: &[String],
    deleted: &[String],
    load_bin: &str,
    work: &std::path::Path,
) {
    // Keys no delta holds (the deltas take every 100th key from offsets 0-12; these are at offset 50).
    let base_keys = sample_keys(data, 1000, 50);
    let absent: Vec<String> = (0..2000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut cold = serde_json::Map::new();
    let classes: [(&str, &[String]); 4] = [
        ("base", &base_keys[..2000.min(base_keys.len())]),
        ("newest_delta", newest),
        ("deleted", deleted),
        ("absent", &absent),
    ];
    for (class, keys) in classes {
        if keys.is_empty() {
            continue;
        }
        // Cold: each key looked up by an engine of its own that has loaded the version (pointer, manifest top
        // levels, the deltas' key filters) and nothing else, so no key benefits from another's reads.
        let keys = &keys[..keys.len().min(1000)];
        let (mut gets, mut bytes) = (0u64, 0u64);
        for k in keys {
            let engine = Engine::new(store.clone(), EngineConfig::default());
            engine.keyspace(KS).await.unwrap();
            let (_, cost) = cairn_shared::cost::measure(engine.get(KS, k)).await;
            gets += cost.object_gets;
            bytes += cost.bytes_fetched;
        }
        cold.insert(
            class.into(),
            json!({"gets_per_key": gets as f64 / keys.len() as f64,
            "bytes_per_key": bytes as f64 / keys.len() as f64}),
        );
    }
    // Warm: 200k keys of the base and the newest delta, looked up until every shard they touch is hot.
    let mut warm_keys: Vec<String> = sample_keys(data, 50, 23);
    warm_keys.truncate(180_000);
    warm_keys.extend(newest.iter().take(20_000).cloned());
    let engine = Arc::new(Engine::new(store.clone(), EngineConfig { data_cache_bytes: 2 << 30, ..Default::default() }));
    for _ in 0..3 {
        for k in &warm_keys {
            engine.get(KS, k).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed().as_secs_f64() < 3.0 {
        for k in warm_keys.iter().take(50_000) {
            engine.get(KS, k).await.unwrap();
            n += 1;
        }
    }
    let in_process = n as f64 / t.elapsed().as_secs_f64();
    let keys_file = work.join("warm-keys.txt");
    std::fs::write(&keys_file, warm_keys.join("\n") + "\n").unwrap();
    let (addr, serving) =
        cairn_functions::server::bind_with(engine.clone(), "127.0.0.1:0".parse().unwrap(), ServeConfig::default())
            .await
            .unwrap();
    let server = tokio::spawn(serving);
    let (bin, port, file) = (load_bin.to_string(), addr.port().to_string(), keys_file.to_str().unwrap().to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin).args(["http", &port, &file, "0", "5", "50"]).output().unwrap()
    })
    .await
    .unwrap();
    server.abort();
    let http: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or(json!(String::from_utf8_lossy(&out.stderr)));
    emit(
        json!({"bench": "lookups", "layers": layers, "cold": cold, "warm_in_process_per_s": in_process, "http": http}),
    );
}
