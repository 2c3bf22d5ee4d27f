//! Crash-safe ingest: the `cairn ingest` binary is SIGKILLed at several points (while reading, after some
//! shards, after most shards); rerunning the same command resumes from the checkpoint in the store and
//! publishes a dataset identical to an uninterrupted run. Nothing partial is visible meanwhile.

use std::path::Path;
use std::process::Command;

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, versions::pointer};

const SHARDS: usize = 8;

fn write_input(path: &Path) -> Vec<(String, String)> {
    let rows: Vec<(String, String)> =
        (0..200_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("value {i} {}", "v".repeat(i % 50)))).collect();
    let body: String = rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    std::fs::write(path, body).unwrap();
    rows
}

fn ingest_cmd(input: &Path, store: &Path) -> Command {
    let mut c = cairn_tests::process::cairn_command();
    c.args([
        "ingest",
        input.to_str().unwrap(),
        "-k",
        "crash",
        "--shards",
        &SHARDS.to_string(),
        "--threads",
        "1",
        "--store",
        store.to_str().unwrap(),
    ]);
    c
}

fn checkpointed(store: &Path) -> Option<usize> {
    cairn_tests::crash::checkpointed(store, "crash")
}

fn run_and_kill(input: &Path, store: &Path, done: usize) -> usize {
    cairn_tests::crash::run_and_kill(ingest_cmd(input, store), store, "crash", done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_several_points_then_rerun_publishes_the_same_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.data");
    let rows = write_input(&input);

    for kill_after in [0, 2, SHARDS - 2] {
        let store_dir = dir.path().join(format!("store-{kill_after}"));
        let killed_at = run_and_kill(&input, &store_dir, kill_after);
        let store = Store::open(store_dir.to_str().unwrap()).unwrap();
        assert!(
            pointer::read(store.inner.as_ref(), "crash").await.unwrap().is_none(),
            "nothing may be published by a killed run"
        );

        let out = ingest_cmd(&input, &store_dir).output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rerun failed:\n{log}");
        if killed_at > 0 {
            assert!(
                log.contains(&format!("{killed_at} of {SHARDS} shards already written")),
                "kill point {kill_after}: {log}"
            );
        }
        assert!(checkpointed(&store_dir).is_none(), "the checkpoint is removed after publishing");

        let engine = Engine::new(store, EngineConfig::default());
        let ks = engine.keyspace("crash").await.unwrap();
        assert_eq!(ks.manifest().rows, rows.len() as u64);
        for (k, v) in rows.iter().step_by(13) {
            assert_eq!(engine.get("crash", k).await.unwrap().as_deref(), Some(v.as_bytes()), "kill point {kill_after}");
        }
    }

    // The reference: an uninterrupted run has the same shards, row for row.
    let clean_dir = dir.path().join("clean");
    assert!(ingest_cmd(&input, &clean_dir).output().unwrap().status.success());
    let rows_per_shard = |d: &Path| -> Vec<(u64, Option<String>, Option<String>)> {
        let s = Store::open(d.to_str().unwrap()).unwrap();
        let rt = tokio::runtime::Handle::current();
        let m = tokio::task::block_in_place(|| {
            rt.block_on(async {
                let cur = pointer::read(s.inner.as_ref(), "crash").await.unwrap().unwrap();
                cairn_shared::format::manifest::Manifest::read(s.inner.as_ref(), "crash", &cur.pointer.version)
                    .await
                    .unwrap()
            })
        });
        m.shards.iter().map(|e| (e.rows, e.min_key.clone(), e.max_key.clone())).collect()
    };
    let clean = rows_per_shard(&clean_dir);
    for kill_after in [0, 2, SHARDS - 2] {
        assert_eq!(rows_per_shard(&dir.path().join(format!("store-{kill_after}"))), clean, "kill point {kill_after}");
    }
}
