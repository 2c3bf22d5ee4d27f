//! The Lambda handler in-process: function URL events (payload 2.0) through the same adapter the Lambda
//! runtime uses, answered by the same router as `cairn serve`.

use base64::Engine as _;
use cairn_shared::config::EngineConfig;
use cairn_shared::store::Store;
use cairn_tests::{encode, example_data, ingest, read_dataset};
use serde_json::{Value, json};
use std::sync::Arc;

fn event(method: &str, path: &str, body: Option<&[u8]>, base64: bool) -> Value {
    let body = body.map(|b| {
        if base64 {
            base64::engine::general_purpose::STANDARD.encode(b)
        } else {
            String::from_utf8(b.to_vec()).unwrap()
        }
    });
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc123.lambda-url.us-east-1.on.aws", "content-type": "application/json"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "test"},
            "requestId": "id",
            "routeKey": "$default",
            "stage": "$default",
            "time": "24/Nov/2026:05:00:00 +0000",
            "timeEpoch": 1795000000000u64
        },
        "body": body,
        "isBase64Encoded": base64
    })
}

fn body_bytes(resp: &Value) -> Vec<u8> {
    let body = resp["body"].as_str().unwrap_or("");
    if resp["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    } else {
        body.as_bytes().to_vec()
    }
}

#[tokio::test]
async fn function_url_events_get_the_same_answers_as_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(2)).await.unwrap();
    let engine = Arc::new(cairn_shared::Engine::new(store, EngineConfig::default()));
    let call = |e: Value| {
        let router = cairn_functions::router(engine.clone());
        async move { cairn_functions::lambda::handle_event(router, e).await.unwrap() }
    };
    let rows = read_dataset(&example_data());
    for (k, v) in rows.iter().step_by(97) {
        let resp = call(event("GET", &format!("/v1/keyspaces/default/keys/{}", encode(k)), None, false)).await;
        assert_eq!(resp["statusCode"], 200, "{resp}");
        assert_eq!(body_bytes(&resp), *v);
    }
    let resp = call(event("GET", "/v1/keyspaces/default/keys/absent", None, false)).await;
    assert_eq!(resp["statusCode"], 404);
    assert_eq!(serde_json::from_slice::<Value>(&body_bytes(&resp)).unwrap()["error"], "key_not_found");
    let resp = call(event("GET", "/v1/keyspaces/BAD/keys/x", None, false)).await;
    assert_eq!(resp["statusCode"], 400);
    let resp = call(event("DELETE", "/v1/keyspaces/default/keys/x", None, false)).await;
    assert_eq!(resp["statusCode"], 405);
    // MGET with a base64-encoded body, as function URLs deliver binary payloads.
    let keys = serde_json::to_vec(&json!([rows[0].0, "nope"])).unwrap();
    let resp = call(event("POST", "/v1/keyspaces/default/mget", Some(&keys), true)).await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    let values: Value = serde_json::from_slice(&body_bytes(&resp)).unwrap();
    assert_eq!(values, json!([String::from_utf8(rows[0].1.clone()).unwrap(), null]));
    let huge = vec![b' '; 2 << 20];
    let resp = call(event("POST", "/v1/keyspaces/default/mget", Some(&huge), true)).await;
    assert_eq!(resp["statusCode"], 413);
}
