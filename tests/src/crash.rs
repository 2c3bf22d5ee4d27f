//! Killing an ingest process at a chosen point: the crash tests (crash_resume.rs, ingest_sources.rs) run the
//! `cairn ingest` binary and SIGKILL it once its checkpoint in a local store lists enough shards.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Shards the checkpoint of keyspace `ks` in the local store lists as done, or None when there is none yet.
pub fn checkpointed(store: &Path, ks: &str) -> Option<usize> {
    let dir = store.join(format!("keyspace={ks}/_ingest"));
    // Only checkpoints: a write killed part-way leaves the local store's staging file (`<name>#<n>`) beside it,
    // which no reader lists.
    let file = std::fs::read_dir(dir).ok()?.flatten().find(|f| f.file_name().to_string_lossy().ends_with(".json"))?;
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
    Some(v["done"].as_object()?.len())
}

/// Starts `cmd` and SIGKILLs it once the checkpoint lists at least `done` shards; returns how many it saw.
pub fn run_and_kill(mut cmd: Command, store: &Path, ks: &str, done: usize) -> usize {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(n) = checkpointed(store, ks)
            && n >= done
        {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return n;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ingest finished ({status}) before reaching {done} checkpointed shards");
        }
        assert!(Instant::now() < deadline, "ingest never checkpointed {done} shards");
        std::thread::sleep(Duration::from_millis(2));
    }
}
