//! `GET /v1/health` is what load balancers and probes call, unauthenticated, every few seconds (issue 29,
//! serving defect 3). It used to load every manifest group and HEAD every shard under every root on each
//! call, and list every shard in its body: work and bytes proportional to the whole store. Now it answers
//! from what the engine holds, with no store request and a bounded body; the per-shard report is behind a
//! parameter only an operator enables.

use std::sync::Arc;

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_tests::TestServer;
use cairn_tests::fault::FaultyStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_probe_costs_no_store_request_and_a_small_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let input = dir.path().join("in.data");
    let body: String = (0..30_000).map(|i| format!("{} v{i}\n", uuid::Uuid::new_v4())).collect();
    std::fs::write(&input, body).unwrap();
    cairn_tests::ingest(&input, "wide", &store, Some(1_500)).await.unwrap();
    let faulty = Arc::new(FaultyStore::new(store.inner.clone(), "\0never", usize::MAX));
    let server =
        TestServer::start(Store { url: store.url.clone(), inner: faulty.clone() }, EngineConfig::default()).await;
    // A lookup loads the keyspace, as traffic would.
    let k = std::fs::read_to_string(&input).unwrap().lines().next().unwrap().split(' ').next().unwrap().to_string();
    assert_eq!(reqwest::get(server.url(&format!("/v1/keyspaces/wide/keys/{k}"))).await.unwrap().status(), 200);

    for _ in 0..3 {
        let before = faulty.reads();
        let r = reqwest::get(server.url("/v1/health")).await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        assert_eq!(faulty.reads() - before, 0, "a health probe read the store: {}", String::from_utf8_lossy(&body));
        assert!(body.len() < 8 << 10, "a health probe answered {} bytes", body.len());
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["status"], "ok", "{v}");
    }
}
