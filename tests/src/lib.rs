//! Test support for cairn's end-to-end tests: fixtures, an in-process server, the `cairn` binary, and a
//! fault-injecting store decorator.

pub mod fault;
pub mod process;
pub mod s3;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use cairn_ingest::{IngestOptions, IngestReport, NoProgress};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::store::Store;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").to_path_buf()
}

pub fn example_data() -> PathBuf {
    workspace_root().join("examples/example.data")
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

/// The `cairn` binary of this workspace, built on first use with the profile the tests run under.
pub fn cairn_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("CAIRN_BIN") {
            return PathBuf::from(p);
        }
        // target/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().expect("test binary path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("profile dir").to_path_buf();
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-q", "-p", "cairn", "--bin", "cairn", "--target-dir"]).arg(target_dir);
        if release {
            cmd.arg("--release");
        }
        // Variables cargo sets for test processes; some build scripts (ring) track them, so passing them
        // on would make every inner build recompile half the tree.
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
        let status = cmd.current_dir(workspace_root()).status().expect("run cargo build");
        assert!(status.success(), "building the cairn binary failed");
        profile_dir.join("cairn")
    })
    .clone()
}
