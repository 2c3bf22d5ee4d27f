//! Test support for cairn's end-to-end tests: fixtures, an in-process server, the `cairn` binary, and a
//! fault-injecting store decorator.

pub mod chaos;
pub mod crash;
pub mod fault;
pub mod hooked;
pub mod pointer_log;
pub mod process;
pub mod redis_server;
pub mod s3;
pub mod sim;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_ingest::{IngestOptions, IngestReport, NoProgress};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;

/// Read at run time first (cargo sets CARGO_MANIFEST_DIR for test processes): cargo reuses a test binary
/// that another checkout of the same tree compiled into a shared target dir, and the compile-time path then
/// names that checkout (seen: CI's /check/work/main, gone, failed every CLI test here).
pub fn workspace_root() -> PathBuf {
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    manifest_dir.parent().expect("workspace").to_path_buf()
}

pub fn example_data() -> PathBuf {
    workspace_root().join("examples/example.data")
}

/// A Python with pyarrow and duckdb: `CAIRN_PYTHON`, or the venv `scripts/test.sh` installs
/// (~/.cache/cairn/pyenv).
pub fn python() -> Option<PathBuf> {
    let candidates = [
        std::env::var("CAIRN_PYTHON").ok().map(PathBuf::from),
        std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cache/cairn/pyenv/bin/python")),
    ];
    candidates.into_iter().flatten().find(|p| {
        std::process::Command::new(p).args(["-c", "import pyarrow, duckdb"]).output().is_ok_and(|o| o.status.success())
    })
}

/// [`python`] for a test that needs it: None (the test returns) only on a developer's machine without one.
/// Under CI, or when `CAIRN_PYTHON` names one (scripts/test.sh always does), a missing or broken Python
/// fails the test instead of skipping it.
pub fn python_or_skip() -> Option<PathBuf> {
    let py = python();
    if py.is_none() {
        let required = std::env::var("CI").is_ok() || std::env::var("CAIRN_PYTHON").is_ok();
        assert!(!required, "no Python with pyarrow+duckdb (CAIRN_PYTHON or CI is set): run scripts/test.sh");
        eprintln!("SKIPPED locally: no Python with pyarrow and duckdb (scripts/test.sh installs one)");
    }
    py
}

/// Parses a `<key> <value>\n` file the simplest possible way, as an oracle for what cairn must return.
pub fn read_dataset(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("dataset");
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    body.split(|&b| b == b'\n')
        .map(|line| {
            let sp = line.iter().position(|&b| b == b' ').expect("space");
            (String::from_utf8(line[..sp].to_vec()).expect("utf8 key"), line[sp + 1..].to_vec())
        })
        .collect()
}

/// Ingests `input` into `ks` with default options (plus `shards`).
pub async fn ingest(
    input: &Path,
    ks: &str,
    store: &Store,
    shards: Option<u32>,
) -> Result<IngestReport, cairn_ingest::IngestError> {
    let mut opts = IngestOptions::new(input, ks, store.clone());
    opts.shards = shards;
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await
}

/// A running in-process `cairn serve` (same bind function as the binary); stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(store: Store, config: EngineConfig) -> TestServer {
        let engine = Arc::new(Engine::new(store, config));
        let (addr, serving) =
            cairn_functions::server::bind(engine.clone(), "127.0.0.1:0".parse().unwrap()).await.expect("bind");
        let task = tokio::spawn(async move {
            serving.await.expect("serve");
        });
        TestServer { addr, engine, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Which of `roots` copies a fresh [`ReplicatedStore`](cairn_shared::stores::replicated::ReplicatedStore) reads first
/// for `path` (rendezvous order): fault tests damage that copy so the fault is certainly met.
pub fn first_copy(roots: usize, path: &str) -> usize {
    copy_order(roots, path)[0]
}

/// The order in which a fresh replicated store tries the copies of `path`.
pub fn copy_order(roots: usize, path: &str) -> Vec<usize> {
    let stores: Vec<Arc<dyn object_store::ObjectStore>> = (0..roots)
        .map(|_| Arc::new(object_store::memory::InMemory::new()) as Arc<dyn object_store::ObjectStore>)
        .collect();
    let r = cairn_shared::stores::replicated::ReplicatedStore::new(stores, Default::default());
    r.order(&object_store::path::Path::from(path))
}

/// Percent-encodes a key for a URL path segment.
pub fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The cargo target dir and profile dir the tests were built into (`target/<profile>/deps/<test>`).
pub fn target_dirs() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    (target_dir, profile_dir)
}

/// A `cargo` command for this workspace and target dir, without the variables cargo sets for test
/// processes: some build scripts (ring) track them, and passing them on would make every inner build
/// recompile half the tree.
pub fn cargo_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root()).env("CARGO_TARGET_DIR", target_dirs().0);
    for (k, _) in std::env::vars() {
        let per_test = k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&k.as_str());
        if per_test {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The `cairn` binary of this workspace, built on first use with the profile the tests run under.
pub fn cairn_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("CAIRN_BIN") {
            return PathBuf::from(p);
        }
        let (_, profile_dir) = target_dirs();
        let mut cmd = cargo_command();
        cmd.args(["build", "-q", "-p", "cairn", "--bin", "cairn"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        assert!(cmd.status().expect("run cargo build").success(), "building the cairn binary failed");
        profile_dir.join("cairn")
    })
    .clone()
}

/// The bin directory holding cargo-lambda and the AWS CLI (installed by scripts/install-tools.sh on first use).
pub fn tools_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(workspace_root().join("scripts/install-tools.sh"))
            .output()
            .expect("run scripts/install-tools.sh");
        assert!(out.status.success(), "installing tools failed: {}", String::from_utf8_lossy(&out.stderr));
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// PATH with the tools first.
pub fn path_with_tools() -> String {
    format!("{}:{}", tools_bin().display(), std::env::var("PATH").unwrap_or_default())
}

/// Waits until no promotion (whole-shard read) runs in `engine`, so what a test measures next is not
/// changed by one landing halfway through. Panics if one never ends.
pub async fn promotions_settled(engine: &cairn_shared::Engine) {
    for _ in 0..6000 {
        if engine.promotions_in_flight() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("a promotion never ended ({} still running)", engine.promotions_in_flight());
}
