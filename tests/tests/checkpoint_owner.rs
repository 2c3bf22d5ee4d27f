//! Who owns an ingest's checkpoint (issue 28, defect 4). On the same host an owner was judged alive by
//! `kill(pid, 0)` alone: once its pid belonged to another process (pids are reused), every rerun was refused
//! with "process N on this host holds it", forever. Liveness now also needs a fresh lease, and an owner whose
//! pid now names a process started at another time is gone at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use cairn_tests::cairn_bin;

const SHARDS: usize = 16;

fn ingest_cmd(input: &Path, store: &Path) -> Command {
    let mut c = Command::new(cairn_bin());
    c.args(["ingest", input.to_str().unwrap(), "-k", "pid", "--shards", &SHARDS.to_string(), "--threads", "1"])
        .args(["--store", store.to_str().unwrap()]);
    c
}

/// Rewrites the owner recorded in the keyspace's checkpoint objects: `pid`, and a heartbeat `age` ago.
fn rewrite_owner(store: &Path, pid: u32, age: Duration) -> usize {
    let dir = store.join("keyspace=pid/_ingest");
    let mut changed = 0;
    for f in std::fs::read_dir(&dir).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        if name.contains('#') {
            continue; // a local store's staging file
        }
        let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&std::fs::read(f.path()).unwrap()) else {
            continue;
        };
        let Some(owner) = v.get_mut("owner").and_then(|o| o.as_object_mut()) else { continue };
        owner.insert("pid".into(), pid.into());
        let at = humantime::format_rfc3339_millis(SystemTime::now() - age).to_string();
        owner.insert("heartbeat_at".into(), at.into());
        std::fs::write(f.path(), serde_json::to_vec(&v).unwrap()).unwrap();
        changed += 1;
    }
    assert!(changed > 0, "no checkpoint object names an owner in {}", dir.display());
    changed
}

fn killed_run(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let input = dir.join("input.data");
    if !input.exists() {
        let body: String = (0..200_000).map(|i| format!("{} value-{i}\n", uuid::Uuid::new_v4())).collect();
        std::fs::write(&input, body).unwrap();
    }
    let store = dir.join(name);
    let seen = cairn_tests::crash::run_and_kill(ingest_cmd(&input, &store), &store, "pid", 2);
    assert!(seen >= 2);
    (input, store)
}

fn rerun(input: &Path, store: &Path) -> String {
    let out = ingest_cmd(input, store).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the rerun was refused:\n{log}");
    assert!(log.contains("already written"), "the rerun did not resume:\n{log}");
    log
}

/// The reproduction: the owner was SIGKILLed, its pid now belongs to a live process, and its lease
/// ran out long ago (41 s in the report; an hour here, so nothing waits).
#[test]
fn an_owner_pid_reused_by_another_process_does_not_block_a_resume_once_its_lease_ran_out() {
    let dir = tempfile::tempdir().unwrap();
    let (input, store) = killed_run(dir.path(), "expired");
    rewrite_owner(&store, std::process::id(), Duration::from_secs(3600));
    rerun(&input, &store);
}

/// Right after the crash (the lease still fresh), a pid that now names a process started at another time
/// than the owner is not the owner: the rerun takes over at once.
#[test]
fn a_reused_pid_is_told_apart_by_its_process_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let (input, store) = killed_run(dir.path(), "fresh");
    rewrite_owner(&store, std::process::id(), Duration::ZERO);
    rerun(&input, &store);
}

/// And a live owner still holds it: a second run started while the first is running is refused.
#[test]
fn a_live_owner_still_holds_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.data");
    let body: String = (0..400_000).map(|i| format!("{} value-{i}\n", uuid::Uuid::new_v4())).collect();
    std::fs::write(&input, body).unwrap();
    let store = dir.path().join("live");
    let mut first = ingest_cmd(&input, &store)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while cairn_tests::crash::checkpointed(&store, "pid").is_none() {
        assert!(std::time::Instant::now() < deadline, "the first run never wrote a checkpoint");
        assert!(first.try_wait().unwrap().is_none(), "the first run ended before checkpointing");
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = ingest_cmd(&input, &store).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    let first_done = first.try_wait().unwrap().is_some();
    first.kill().ok();
    first.wait().unwrap();
    if !first_done {
        assert!(!out.status.success() && log.contains("in progress"), "a second run ignored a live owner:\n{log}");
    }
}
