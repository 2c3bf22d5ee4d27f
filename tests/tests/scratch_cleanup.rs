//! An ingest's scratch space (spilled runs, shard files before upload) goes away on every exit path
//! (issue 28, defect 6): Ctrl-C and SIGTERM were not handled at all, so an interrupted ingest left its
//! `cairn-ingest-*` directory (up to the input's size) in the temp dir, and a SIGKILLed one too. Now a
//! signal stops the ingest and removes its scratch space, and what a killed run left is swept by the next
//! run that uses the same temp dir.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An input large enough that a 16 MiB budget spills several runs.
fn input(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("big.data");
    let body: String =
        (0..600_000).map(|i| format!("{} value-{i}-{}\n", uuid::Uuid::new_v4(), "x".repeat(40))).collect();
    std::fs::write(&path, body).unwrap();
    path
}

fn ingest(input: &Path, store: &Path, tmp: &Path, ks: &str) -> Command {
    let mut c = cairn_tests::process::cairn_command();
    c.args(["ingest", input.to_str().unwrap(), "-k", ks, "--memory", "16MiB", "--shards", "32", "--threads", "1"])
        .args(["--store", store.to_str().unwrap(), "--tmp-dir", tmp.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// What the temp dir holds (names).
fn scratch(tmp: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(tmp).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Starts the ingest and waits until it has spilled a run into its scratch dir.
fn start_and_wait_for_a_spill(cmd: &mut Command, tmp: &Path) -> Child {
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let spilled = std::fs::read_dir(tmp).unwrap().flatten().any(|d| {
            std::fs::read_dir(d.path())
                .map(|f| f.flatten().any(|f| f.file_name().to_string_lossy().starts_with("run-")))
                .unwrap_or(false)
        });
        if spilled {
            return child;
        }
        assert!(child.try_wait().unwrap().is_none(), "the ingest ended before spilling");
        assert!(Instant::now() < deadline, "the ingest never spilled a run");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: sends a signal to a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn a_signal_stops_the_ingest_and_removes_its_scratch_space() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    for (sig, name) in [(libc::SIGTERM, "term"), (libc::SIGINT, "int")] {
        let tmp = dir.path().join(format!("tmp-{name}"));
        std::fs::create_dir_all(&tmp).unwrap();
        let store = dir.path().join(format!("store-{name}"));
        let child = start_and_wait_for_a_spill(&mut ingest(&input, &store, &tmp, "sig"), &tmp);
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: an interrupted ingest reported success:\n{log}");
        assert_eq!(scratch(&tmp), Vec::<String>::new(), "{name}: left behind in the temp dir:\n{log}");
        assert!(log.contains("interrupted"), "{name}: {log}");
        assert!(!store.join("keyspace=sig/CURRENT").exists(), "{name}: an interrupted ingest published");
    }
}

#[test]
fn what_a_killed_ingest_left_is_swept_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let store = dir.path().join("store");
    let mut child = start_and_wait_for_a_spill(&mut ingest(&input, &store, &tmp, "killed"), &tmp);
    child.kill().unwrap(); // SIGKILL: nothing can clean up
    child.wait().unwrap();
    assert!(!scratch(&tmp).is_empty(), "the killed run left nothing: the test proves nothing");

    // A later, unrelated ingest with the same temp dir sweeps it.
    let small = dir.path().join("small.data");
    std::fs::write(&small, format!("{} v\n", uuid::Uuid::new_v4())).unwrap();
    let out = ingest(&small, &store, &tmp, "other").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(scratch(&tmp), Vec::<String>::new(), "the killed run's scratch space is still there");
}

/// A failed ingest (bad input found after runs were spilled) removes its scratch space too.
#[test]
fn a_failed_ingest_leaves_no_scratch_space() {
    let dir = tempfile::tempdir().unwrap();
    let input = input(dir.path());
    let mut body = std::fs::read(&input).unwrap();
    body.extend_from_slice(b"no-space-here\n");
    std::fs::write(&input, body).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = ingest(&input, &dir.path().join("store"), &tmp, "bad").output().unwrap();
    assert!(!out.status.success());
    assert_eq!(scratch(&tmp), Vec::<String>::new(), "{}", String::from_utf8_lossy(&out.stderr));
}
