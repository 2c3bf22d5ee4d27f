//! Who owns an ingest's checkpoint (issue 28, defect 4). On the same host an owner was judged alive by
//! `kill(pid, 0)` alone: once its pid belonged to another process (pids are reused), every rerun was refused
//! with "process N on this host holds it", forever. Liveness now also needs a fresh lease, and an owner whose
//! pid now names a process started at another time is gone at once.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

const SHARDS: usize = 16;

fn ingest_cmd(input: &Path, store: &Path) -> Command {
    let mut c = cairn_tests::process::cairn_command();
    c.args(["ingest", input.to_str().unwrap(), "-k", "pid", "--shards", &SHARDS.to_string(), "--threads", "1"])
        .args(["--store", store.to_str().unwrap()]);
    c
}

/// The start time of process `pid` as the owner records it (clock ticks after boot, field 22 of its stat).
fn start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(19).unwrap().parse().unwrap()
}

/// Rewrites the owner recorded in the keyspace's checkpoint objects: `pid` (and with `same_start`, that
/// process's own start time, so only the lease can tell it is not the owner), and a heartbeat `age` ago.
fn rewrite_owner(store: &Path, pid: u32, same_start: bool, age: Duration) -> usize {
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
        if same_start {
            owner.insert("started".into(), start_time(pid).into());
        }
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
    rewrite_owner(&store, std::process::id(), true, Duration::from_secs(3600));
    rerun(&input, &store);
}

/// Right after the crash (the lease still fresh), a pid that now names a process started at another time
/// than the owner is not the owner: the rerun takes over at once.
#[test]
fn a_reused_pid_is_told_apart_by_its_process_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let (input, store) = killed_run(dir.path(), "fresh");
    rewrite_owner(&store, std::process::id(), false, Duration::ZERO);
    rerun(&input, &store);
}

/// And a live owner still holds it: a live process of this host, started when the owner says, with a fresh
/// lease (this test process stands for it).
#[test]
fn a_live_owner_still_holds_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (input, store) = killed_run(dir.path(), "live");
    rewrite_owner(&store, std::process::id(), true, Duration::ZERO);
    let out = ingest_cmd(&input, &store).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && log.contains("in progress"), "a rerun ignored a live owner:\n{log}");
    assert!(!store.join("keyspace=pid/CURRENT").exists());
}
