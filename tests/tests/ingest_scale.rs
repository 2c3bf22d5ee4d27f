//! An ingest whose input makes hundreds of sorted runs under a small memory budget and a low open-file limit
//! (issue 30): it must succeed and serve every key. Before runs were merged with a bounded fan-in, every
//! shard's merge opened every run at once and such an ingest failed with "Too many open files".

use cairn_shared::config::EngineConfig;
use cairn_shared::{Engine, Store};
use cairn_tests::cairn_bin;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_runs_under_ulimit_64_ingest_and_serve_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(String, String)> =
        (0..150_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}-{}", "y".repeat(i % 40)))).collect();
    let body: String = rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let input = dir.path().join("many-runs.data");
    std::fs::write(&input, &body).unwrap();
    let store = dir.path().join("store");
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    // 64 KiB runs of ~90-byte records (with bookkeeping): ~700 records a run, over 200 runs:
    // far more than 64 descriptors can hold open at once.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" "$@""#)
        .arg(cairn_bin())
        .args(["ingest", input.to_str().unwrap(), "-k", "many", "--store", store.to_str().unwrap()])
        .args(["--memory", "32MiB", "--run-size", "64KiB", "--threads", "2", "--shards", "16"])
        .args(["--tmp-dir", tmp.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ingest failed:\n{err}");
    let spilled: usize = err
        .split_once(" sorted runs spilled")
        .and_then(|(before, _)| before.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no run count in:\n{err}"));
    assert!(spilled >= 100, "only {spilled} runs: the test does not exercise a bounded fan-in\n{err}");
    assert!(err.contains("merged together in"), "the runs were not merged before writing:\n{err}");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "scratch space left behind");

    let engine = Engine::new(Store::open(store.to_str().unwrap()).unwrap(), EngineConfig::default());
    for (k, v) in &rows {
        assert_eq!(engine.get("many", k).await.unwrap().as_deref(), Some(v.as_bytes()), "key {k}");
    }
    assert_eq!(engine.get("many", &uuid::Uuid::new_v4().to_string()).await.unwrap(), None);
}
