//! What the Lambda answers stays within what a function URL can return (issue 29, serving defect 5): a
//! buffered response of at most 6 MB, as the runtime sends it (the body a JSON string, escaped again, or
//! base64). MGET's byte cap counted the values' raw bytes, so values that JSON escaping grows (quotes,
//! control bytes) or that go out as base64 made an answer the function URL refused with an opaque 502. Now
//! the encoded answer is measured and refused with 413 on every deployment.

use std::sync::Arc;

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use serde_json::{Value, json};

/// The most a function URL returns, buffered (the Lambda response payload).
const LAMBDA_PAYLOAD: usize = 6 << 20;

fn mget_event(keys: &[String]) -> Value {
    json!({
        "version": "2.0", "routeKey": "$default", "rawPath": "/v1/keyspaces/default/mget", "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "content-type": "application/json"},
        "requestContext": {
            "accountId": "1", "apiId": "abc", "domainName": "abc.lambda-url.us-east-1.on.aws", "domainPrefix": "abc",
            "http": {"method": "POST", "path": "/v1/keyspaces/default/mget", "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "id", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:05:00:00 +0000", "timeEpoch": 1795000000000u64
        },
        "body": serde_json::to_string(keys).unwrap(), "isBase64Encoded": false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mget_whose_encoded_answer_is_too_large_for_a_function_url_is_a_413() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("st").to_str().unwrap()).unwrap();
    // 1,000 values of 4,000 double quotes: 4 MB raw (under the 8 MiB cap), ~8 MB as JSON, ~16 MB once the
    // runtime escapes that JSON again as the response's body string.
    let keys: Vec<String> = (0..1_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let input = dir.path().join("q.data");
    std::fs::write(&input, keys.iter().map(|k| format!("{k} {}\n", "\"".repeat(4_000))).collect::<String>()).unwrap();
    cairn_tests::ingest(&input, "default", &store, Some(4)).await.unwrap();
    let engine = Arc::new(cairn_shared::Engine::new(store, EngineConfig::default()));
    let router = cairn_functions::router_with_access_log(engine);

    let resp = cairn_functions::lambda::handle_event(router.clone(), mget_event(&keys)).await.unwrap();
    let payload = serde_json::to_vec(&resp).unwrap().len();
    assert_eq!(resp["statusCode"], 413, "answered {payload} bytes (the function URL refuses over {LAMBDA_PAYLOAD})");
    let body: Value = serde_json::from_str(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["error"], "response_too_large", "{body}");

    // A smaller MGET of the same values fits, and is answered.
    let resp = cairn_functions::lambda::handle_event(router, mget_event(&keys[..200])).await.unwrap();
    assert_eq!(resp["statusCode"], 200);
    assert!(serde_json::to_vec(&resp).unwrap().len() <= LAMBDA_PAYLOAD);
}
