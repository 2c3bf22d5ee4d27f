//! The HTTP API over the embedded (local directory) store: every key of the reference dataset, absent keys,
//! bad requests, MGET and INFO.

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_tests::{TestServer, encode, example_data, ingest, read_dataset};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn served_example() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let report = ingest(&example_data(), "default", &store, Some(4)).await.unwrap();
    assert_eq!(report.rows, 10_000);
    (dir, TestServer::start(store, EngineConfig::default()).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reference_key_returns_its_exact_value_and_absent_keys_404() {
    let (_dir, server) = served_example().await;
    let http = reqwest::Client::new();
    let rows = read_dataset(&example_data());
    let wrong = futures::stream::iter(rows.iter())
        .map(|(k, v)| {
            let (http, url) = (http.clone(), server.url(&format!("/v1/keyspaces/default/keys/{}", encode(k))));
            async move {
                let r = http.get(url).send().await.unwrap();
                let ok = r.status() == StatusCode::OK
                    && r.headers()["content-type"] == "application/octet-stream"
                    && r.bytes().await.unwrap().as_ref() == v.as_slice();
                !ok
            }
        })
        .buffer_unordered(16)
        .filter(|bad| std::future::ready(*bad))
        .count()
        .await;
    assert_eq!(wrong, 0, "{wrong} of {} keys answered wrongly", rows.len());

    let absent = futures::stream::iter(0..1000)
        .map(|_| {
            let url = server.url(&format!("/v1/keyspaces/default/keys/{}", uuid::Uuid::new_v4()));
            let http = http.clone();
            async move {
                let r = http.get(url).send().await.unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                status == StatusCode::NOT_FOUND && body["error"] == "key_not_found"
            }
        })
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    assert_eq!(absent, 1000);
}

#[tokio::test]
async fn bad_requests_get_clear_statuses() {
    let (_dir, server) = served_example().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(server.url(path)).send();
    let code = |r: &reqwest::Response| r.headers().get("x-cairn-error").map(|v| v.to_str().unwrap().to_string());

    let r = get("/v1/keyspaces/default/keys/has%20space").await.unwrap();
    assert_eq!((r.status(), code(&r).as_deref()), (StatusCode::BAD_REQUEST, Some("invalid_key")));
    let r = get("/v1/keyspaces/default/keys/tab%09key").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let long = "k".repeat(2000);
    let r = get(&format!("/v1/keyspaces/default/keys/{long}")).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = get("/v1/keyspaces/Not_Valid/keys/abc").await.unwrap();
    assert_eq!((r.status(), code(&r).as_deref()), (StatusCode::BAD_REQUEST, Some("invalid_keyspace")));
    let r = get("/v1/keyspaces/missing/keys/abc").await.unwrap();
    assert_eq!((r.status(), code(&r).as_deref()), (StatusCode::NOT_FOUND, Some("keyspace_not_found")));
    let r = http.head(server.url("/v1/keyspaces/default/keys/absent")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get("/v2/nothing").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.put(server.url("/v1/keyspaces/default/keys/abc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let r = http.post(server.url("/v1/keyspaces/default/mget")).body("not json").send().await.unwrap();
    assert_eq!((r.status(), code(&r).as_deref()), (StatusCode::BAD_REQUEST, Some("invalid_body")));
    let huge = vec![b'x'; 2 << 20];
    let r = http.post(server.url("/v1/keyspaces/default/mget")).body(huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let many: Vec<String> = (0..1001).map(|i| format!("k{i}")).collect();
    let r = http.post(server.url("/v1/keyspaces/default/mget")).json(&many).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn mget_info_and_keyspace_listing() {
    let (_dir, server) = served_example().await;
    let http = reqwest::Client::new();
    let rows = read_dataset(&example_data());
    let keys = json!([rows[0].0, "absent-key", rows[9999].0]);
    // No content type on purpose: `curl -d` users send form-encoded bodies.
    let r = http.post(server.url("/v1/keyspaces/default/mget")).body(keys.to_string()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let values: Value = r.json().await.unwrap();
    let as_str = |v: &[u8]| String::from_utf8(v.to_vec()).unwrap();
    assert_eq!(values, json!([as_str(&rows[0].1), null, as_str(&rows[9999].1)]));
    let r = http.head(server.url(&format!("/v1/keyspaces/default/keys/{}", rows[0].0))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r =
        http.post(server.url("/v1/keyspaces/default/mget")).json(&json!({"keys": [rows[1].0]})).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap(), json!([as_str(&rows[1].1)]));

    let info: Value = http.get(server.url("/v1/keyspaces/default")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["keys"], 10_000);
    assert_eq!(info["shards"], 4);
    assert!(info["version"].as_str().unwrap().len() > 10);
    let caches = info["cache"]["caches"].as_array().unwrap();
    assert!(caches.iter().any(|c| c["name"] == "data" && c["misses"].as_u64().unwrap() > 0));
    let list: Value = http.get(server.url("/v1/keyspaces")).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["keyspaces"], json!(["default"]));
}

/// `cairn serve` answers single-key GETs before the router (server.rs); every answer must stay what the
/// router (and so the Lambda) gives: status, the headers clients read, and body.
#[tokio::test]
async fn the_serve_fast_path_answers_exactly_like_the_router() {
    use tower::ServiceExt;
    let (_dir, server) = served_example().await;
    let router = cairn_functions::router(server.engine.clone());
    let http = reqwest::Client::new();
    let rows = read_dataset(&example_data());
    let key = &rows[42].0;
    let long = "k".repeat(2000);
    let paths = [
        format!("/v1/keyspaces/default/keys/{key}"),
        format!("/v1/keyspaces/default/keys/{key}?x=1"),
        format!("/v1/keyspaces/default/keys/{}", key.replace('-', "%2D")),
        format!("/v1/keyspaces/default/keys/{long}"),
        format!("/v1/keyspaces/default/keys/{key}/more"),
        "/v1/keyspaces/default/keys/".into(),
        "/v1/keyspaces//keys/abc".into(),
        "/v1/keyspaces/default/keys/absent".into(),
        "/v1/keyspaces/default/keys/has%20space".into(),
        "/v1/keyspaces/Not_Valid/keys/abc".into(),
        "/v1/keyspaces/missing/keys/abc".into(),
        "/v1/keyspaces/default/keys/a/keys/b".into(),
    ];
    let mut statuses = Vec::new();
    for path in &paths {
        let served = http.get(server.url(path)).send().await.unwrap();
        let routed = router.clone().oneshot(http::Request::get(path.as_str()).body(axum::body::Body::empty()).unwrap());
        let routed = routed.await.unwrap();
        assert_eq!(served.status().as_u16(), routed.status().as_u16(), "{path}");
        for h in ["content-type", "content-length", "x-cairn-version", "x-cairn-error"] {
            let a = served.headers().get(h).map(|v| v.as_bytes().to_vec());
            let b = routed.headers().get(h).map(|v| v.as_bytes().to_vec());
            // The router's response carries no content-length until hyper writes it from the body's size.
            if h != "content-length" || b.is_some() {
                assert_eq!(a, b, "{path}: header {h}");
            }
        }
        statuses.push(served.status().as_u16());
        let routed = axum::body::to_bytes(routed.into_body(), usize::MAX).await.unwrap();
        assert_eq!(served.bytes().await.unwrap(), routed, "{path}");
    }
    // The cases above cover hits, misses and every error class, not just one of them.
    assert_eq!(statuses, [200, 200, 200, 400, 404, 404, 400, 404, 400, 400, 404, 404]);
}
