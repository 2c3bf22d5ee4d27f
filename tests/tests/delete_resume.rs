//! `cairn delete KEY...` is a job like any ingest: interrupted, the same command resumes it (or reports its
//! publish) instead of publishing a second layer and leaving the first run's checkpoint to pin its version
//! for a week. The first run is stopped deterministically: the replica root it must also write is made
//! unwritable, so it fails after taking its checkpoint in the primary.

use std::path::Path;

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, versions::pointer};
use cairn_tests::process::{cairn, text};

fn checkpoints(store: &Path, ks: &str) -> Vec<serde_json::Value> {
    let Ok(dir) = std::fs::read_dir(store.join(format!("keyspace={ks}/_ingest"))) else { return Vec::new() };
    dir.flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".json"))
        .map(|f| serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap())
        .collect()
}

async fn current_version(store: &Path, ks: &str) -> String {
    let store = Store::open(store.to_str().unwrap()).unwrap();
    pointer::read(store.inner.as_ref(), ks).await.unwrap().unwrap().pointer.version
}

#[tokio::test]
async fn an_interrupted_delete_of_command_line_keys_is_resumed_by_the_same_command() {
    let dir = tempfile::tempdir().unwrap();
    let (primary, replica) = (dir.path().join("primary"), dir.path().join("replica"));
    let input = dir.path().join("in.data");
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i:04}")).collect();
    std::fs::write(&input, keys.iter().map(|k| format!("{k} value of {k}\n")).collect::<String>()).unwrap();
    let (p, r) = (primary.to_str().unwrap(), replica.to_str().unwrap());
    let out = cairn(&["ingest", input.to_str().unwrap(), "-k", "ks", "--store", p, "--replicas", r], None, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The replica's keyspace folder becomes a file: the delta's shard write there fails.
    let (ks_dir, aside) = (replica.join("keyspace=ks"), dir.path().join("aside"));
    std::fs::rename(&ks_dir, &aside).unwrap();
    std::fs::write(&ks_dir, b"in the way").unwrap();
    let delete = ["delete", "-k", "ks", "--store", p, "key-0001", "key-0002", "key-0003"];
    let first = cairn(&delete, None, &[]);
    assert!(!first.status.success(), "the first delete cannot write its replica:\n{}", text(&first.stderr));
    let left = checkpoints(&primary, "ks");
    assert_eq!(left.len(), 1, "the failed run leaves its checkpoint: {left:?}");
    let interrupted = left[0]["version"].as_str().unwrap().to_string();

    std::fs::remove_file(&ks_dir).unwrap();
    std::fs::rename(&aside, &ks_dir).unwrap();
    let again = cairn(&delete, None, &[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        current_version(&primary, "ks").await,
        interrupted,
        "the rerun publishes the interrupted run's version:\n{}",
        text(&again.stderr)
    );
    assert!(checkpoints(&primary, "ks").is_empty(), "no checkpoint pins a version: {:?}", checkpoints(&primary, "ks"));

    let engine = Engine::new(Store::open(p).unwrap(), EngineConfig::default());
    for (k, found) in [("key-0001", false), ("key-0003", false), ("key-0004", true)] {
        assert_eq!(engine.get("ks", k).await.unwrap().is_some(), found, "{k}");
    }
}
