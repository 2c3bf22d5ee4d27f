//! An S3 endpoint for tests, found in this order (never a silent skip):
//! 1. `CAIRN_TEST_S3_ENDPOINT` (scripts/test.sh starts one LocalStack for the whole run and sets it);
//! 2. LocalStack in Docker through testcontainers-modules (image `localstack/localstack:4.5`), when a Docker
//!    engine answers;
//! 3. LocalStack on the host without Docker: `localstack/start.sh` on a free loopback port (installing it
//!    into a venv first if needed); it stops when this test process exits.
//!
//! If none works the tests fail with the reasons of all three.

use std::sync::OnceLock;

use aws_sdk_s3::config::{Credentials, Region};
use cairn_shared::stores::Store;

/// Dummy credentials and region every emulator accepts.
pub const REGION: &str = "us-east-1";

static ENDPOINT: OnceLock<Result<String, String>> = OnceLock::new();

/// The endpoint URL, e.g. `http://127.0.0.1:4566`.
pub fn endpoint() -> String {
    ENDPOINT.get_or_init(find).clone().unwrap_or_else(|why| panic!("no S3 endpoint for the tests:\n{why}"))
}

fn find() -> Result<String, String> {
    if let Ok(url) = std::env::var("CAIRN_TEST_S3_ENDPOINT") {
        return Ok(url);
    }
    let docker = match docker_localstack() {
        Ok(url) => return Ok(url),
        Err(e) => e,
    };
    match host_localstack() {
        Ok(url) => Ok(url),
        Err(host) => {
            Err(format!("  CAIRN_TEST_S3_ENDPOINT: not set\n  testcontainers: {docker}\n  host LocalStack: {host}"))
        }
    }
}

fn docker_localstack() -> Result<String, String> {
    use testcontainers::runners::AsyncRunner;
    let (tx, rx) = std::sync::mpsc::channel();
    // The container must outlive every test runtime: it lives on its own thread and runtime, parked until the
    // process exits.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let started = tokio::time::timeout(
                std::time::Duration::from_secs(120),
                testcontainers_modules::localstack::LocalStack::default().start(),
            )
            .await;
            let container = match started {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return tx.send(Err(e.to_string())).unwrap_or(()),
                Err(_) => return tx.send(Err("timed out starting the container".into())).unwrap_or(()),
            };
            let url = match container.get_host_port_ipv4(4566).await {
                Ok(port) => Ok(format!("http://127.0.0.1:{port}")),
                Err(e) => Err(e.to_string()),
            };
            let _ = tx.send(url);
            std::future::pending::<()>().await;
            drop(container);
        });
    });
    rx.recv().map_err(|e| e.to_string())?
}

fn host_localstack() -> Result<String, String> {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let script = crate::workspace_root().join("localstack/start.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(port.to_string())
        .env("CAIRN_LOCALSTACK_WATCH_PID", std::process::id().to_string())
        .env("CAIRN_LOCALSTACK_STATE", std::env::temp_dir().join(format!("cairn-localstack-{port}")))
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `AWS_*` settings for object_store (and the environment of a spawned `cairn`).
pub fn aws_settings() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", REGION.into()),
        ("AWS_DEFAULT_REGION", REGION.into()),
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

/// Opens `s3://bucket/prefix` against the test endpoint.
pub fn store(url: &str) -> Store {
    let settings = aws_settings();
    let pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Store::open_with(url, &pairs).expect("open s3 store")
}

/// An aws-sdk-s3 client for what object_store cannot do (buckets).
pub fn client() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new(REGION))
        .endpoint_url(endpoint())
        .credentials_provider(Credentials::new("test", "test", None, None, "cairn-tests"))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Creates a bucket with a unique name (emulators keep state between tests) and returns the name.
pub async fn bucket(purpose: &str) -> String {
    let name = format!("cairn-{purpose}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client().create_bucket().bucket(&name).send().await.unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    name
}

/// Every object key in a bucket, sorted.
pub async fn list(bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = client()
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    keys.sort();
    keys
}
