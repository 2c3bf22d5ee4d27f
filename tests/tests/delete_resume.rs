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

/// Found by review of the first fix, which spooled the keys to one path named by their hash: the same
/// `cairn delete` run at once on other stores (or by another user) replaced and removed each other's file,
/// and most runs failed, each leaving a checkpoint behind. Each run now has a private file.
#[test]
fn the_same_delete_run_at_once_on_several_stores_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.data");
    std::fs::write(&input, "a 1\nb 2\nc 3\n").unwrap();
    let stores: Vec<String> = (0..6).map(|i| dir.path().join(format!("s{i}")).to_str().unwrap().to_string()).collect();
    for s in &stores {
        let out = cairn(&["ingest", input.to_str().unwrap(), "-k", "ks", "--store", s], None, &[]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let runs: Vec<_> = stores
        .iter()
        .map(|s| {
            let s = s.clone();
            std::thread::spawn(move || cairn(&["delete", "-k", "ks", "--store", &s, "b"], None, &[]))
        })
        .collect();
    for (run, s) in runs.into_iter().zip(&stores) {
        let out = run.join().unwrap();
        assert!(out.status.success(), "{s}: {}", text(&out.stderr));
        assert!(checkpoints(Path::new(s), "ks").is_empty(), "{s}");
    }
}

/// Found by review: a delete whose checkpoint outlived its publish (a crash between the switch and the
/// checkpoint's removal) caught every later run of the same command, which reported "already published" and
/// deleted nothing, though the key had been written again since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leftover_checkpoint_of_a_published_delete_does_not_stand_for_a_later_one() {
    use cairn_ingest::{InputFormat, NoProgress};
    use cairn_tests::fault::FaultyStore;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let (base, keys, again) =
        (write("base.data", "a 1\nb 2\n"), write("gone.keys", "b\n"), write("again.data", "b 3\n"));
    cairn_ingest::ingest(cairn_ingest::IngestOptions::new(&base, "ks", healthy.clone()), Arc::new(NoProgress))
        .await
        .unwrap();
    let delete = |store: &Store| {
        let mut o = cairn_ingest::IngestOptions::new(&keys, "ks", store.clone());
        (o.format, o.delta) = (Some(InputFormat::Keys), true);
        o
    };
    // Published; its checkpoint stays, as after a kill between the switch and its removal.
    let faulty = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX);
    faulty.refuse_deletes(Some("_ingest/"));
    let crashing = Store { url: healthy.url.clone(), inner: Arc::new(faulty) };
    let first = cairn_ingest::ingest(delete(&crashing), Arc::new(NoProgress)).await.unwrap().version;
    assert_eq!(checkpoints(&dir.path().join("store"), "ks").len(), 1);

    let mut readd = cairn_ingest::IngestOptions::new(&again, "ks", healthy.clone());
    readd.delta = true;
    cairn_ingest::ingest(readd, Arc::new(NoProgress)).await.unwrap();
    let later = cairn_ingest::ingest(delete(&healthy), Arc::new(NoProgress)).await.unwrap();
    assert_ne!(later.version, first, "a new layer over the current version");
    let engine = Engine::new(healthy.clone(), EngineConfig::default());
    assert_eq!(engine.get("ks", "b").await.unwrap(), None, "the later delete deleted b");
    assert!(engine.get("ks", "a").await.unwrap().is_some());
}
