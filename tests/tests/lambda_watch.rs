//! The real `cairn-query` binary under `cargo lambda watch` (the Lambda runtime emulator), reached over its
//! function URL path with the data in LocalStack S3: what a deployed function does, minus AWS.

use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_tests::{cargo_command, encode, example_data, path_with_tools, read_dataset, s3};

struct Watch(Child);

impl Drop for Watch {
    fn drop(&mut self) {
        // cargo lambda runs the function as a child: stop the whole process group.
        let _ = std::process::Command::new("kill").arg("--").arg(format!("-{}", self.0.id())).status();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cairn_query_under_cargo_lambda_watch_serves_function_url_requests() {
    let bucket = s3::bucket("lambda").await;
    let store_url = format!("s3://{bucket}/cairn");
    let mut opts = IngestOptions::new(example_data(), "default", s3::store(&store_url));
    opts.shards = Some(2);
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = cargo_command();
    cmd.args([
        "lambda",
        "watch",
        "-A",
        "127.0.0.1",
        "-P",
        &port.to_string(),
        "-p",
        "cairn-functions",
        "--bin",
        "cairn-query",
    ])
    .args(["--ignore-changes", "--env-var", &format!("CAIRN_STORE={store_url}")])
    .envs(s3::aws_settings())
    .env("PATH", path_with_tools())
    .env("CAIRN_LOG_FORMAT", "json")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    let _watch = Watch(cmd.spawn().expect("cargo lambda watch"));

    let http = reqwest::Client::builder().timeout(Duration::from_secs(300)).build().unwrap();
    let base = format!("http://127.0.0.1:{port}/lambda-url/cairn-query");
    // The first invocation may compile the function: wait for it.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        match http.get(format!("{base}/v1/health")).send().await {
            Ok(r) if r.status() == 200 => break,
            _ if Instant::now() > deadline => panic!("cargo lambda watch never answered on {base}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    let rows = read_dataset(&example_data());
    for (k, v) in rows.iter().step_by(53) {
        let r = http.get(format!("{base}/v1/keyspaces/default/keys/{}", encode(k))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), v.as_slice());
    }
    let r = http.get(format!("{base}/v1/keyspaces/default/keys/{}", uuid::Uuid::new_v4())).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(format!("{base}/v1/keyspaces/default/keys/bad%20key")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let r = http.post(format!("{base}/v1/keyspaces/default/mget")).json(&[&rows[3].0, "nope"]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let values: serde_json::Value = r.json().await.unwrap();
    assert_eq!(values, serde_json::json!([String::from_utf8(rows[3].1.clone()).unwrap(), null]));
    let r = http.delete(format!("{base}/v1/keyspaces/default/keys/x")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}
