//! `GET /v1/health` is what load balancers and probes call, unauthenticated, every few seconds (issue 29,
//! serving defect 3). It used to load every manifest group and HEAD every shard under every root on each
//! call, and list every shard in its body: work and bytes proportional to the whole store. Now it answers
//! from what the engine holds, with no store request and a bounded body; the per-shard report is behind a
//! parameter only an operator enables. `GET /v1/keyspaces`, the other unauthenticated listing, is read from
//! the store once per pointer TTL.

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

/// `GET /v1/keyspaces`, unauthenticated too, listed the store and read every keyspace's pointer on each
/// call, one after the other (found by review: N+1 store requests a call). It is now read once per pointer
/// TTL, as pointers are: a keyspace published meanwhile shows within that TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyspace_list_is_read_once_per_pointer_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let input = dir.path().join("in.data");
    std::fs::write(&input, "a 1\n").unwrap();
    for ks in ["one", "two", "three"] {
        cairn_tests::ingest(&input, ks, &store, Some(1)).await.unwrap();
    }
    let faulty = Arc::new(FaultyStore::new(store.inner.clone(), "\0never", usize::MAX));
    let config = EngineConfig { pointer_ttl: std::time::Duration::from_secs(3600), ..EngineConfig::default() };
    let server = TestServer::start(Store { url: store.url.clone(), inner: faulty.clone() }, config).await;
    let list = || async {
        let v: serde_json::Value = reqwest::get(server.url("/v1/keyspaces")).await.unwrap().json().await.unwrap();
        v["keyspaces"].clone()
    };
    assert_eq!(list().await, serde_json::json!(["one", "three", "two"]));
    let first = faulty.reads();
    assert!(first >= 3, "the first call reads each pointer: {first}");
    for _ in 0..5 {
        assert_eq!(list().await, serde_json::json!(["one", "three", "two"]));
    }
    assert_eq!(faulty.reads(), first, "calls within the TTL read the store again");

    // With no TTL, each call reads the store (and sees a keyspace published since).
    let server = TestServer::start(
        Store { url: store.url.clone(), inner: faulty.clone() },
        EngineConfig { pointer_ttl: std::time::Duration::ZERO, ..EngineConfig::default() },
    )
    .await;
    cairn_tests::ingest(&input, "four", &store, Some(1)).await.unwrap();
    let v: serde_json::Value = reqwest::get(server.url("/v1/keyspaces")).await.unwrap().json().await.unwrap();
    assert_eq!(v["keyspaces"], serde_json::json!(["four", "one", "three", "two"]));
}
