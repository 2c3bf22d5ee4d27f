//! The Lambda handler in-process: function URL events (payload 2.0) through the same adapter the Lambda
//! runtime uses, answered by the same router as `cairn serve`.

use base64::Engine as _;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
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

/// Checks one line against the Embedded Metric Format specification: the envelope, a namespace, at most 100
/// metrics and 30 dimensions a set, every metric a number at the top level and every dimension a string.
fn check_emf(line: &Value) {
    let aws = &line["_aws"];
    assert!(aws["Timestamp"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{line}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
    assert_eq!(directives.len(), 1);
    let d = &directives[0];
    let ns = d["Namespace"].as_str().unwrap();
    assert!(!ns.is_empty() && !ns.contains(':'), "{ns}");
    let metrics = d["Metrics"].as_array().unwrap();
    assert!(!metrics.is_empty() && metrics.len() <= 100);
    for m in metrics {
        let name = m["Name"].as_str().unwrap();
        assert!(line[name].is_number(), "metric {name} is not a number at the top level: {line}");
        assert!(["Count", "Milliseconds", "Bytes"].contains(&m["Unit"].as_str().unwrap()), "{m}");
    }
    for set in d["Dimensions"].as_array().unwrap() {
        let set = set.as_array().unwrap();
        assert!(set.len() <= 30);
        for dim in set {
            assert!(line[dim.as_str().unwrap()].is_string(), "dimension {dim} is not a string: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_logs_one_embedded_metric_format_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(2)).await.unwrap();
    let engine = Arc::new(cairn_shared::Engine::new(store, EngineConfig::default()));
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let captured = lines.clone();
    let sink: cairn_functions::access_log::Sink = Arc::new(move |l: String| captured.lock().unwrap().push(l));
    let router = cairn_functions::router_with(engine, Arc::default(), Some(sink));
    let rows = read_dataset(&example_data());
    let key = format!("/v1/keyspaces/default/keys/{}", encode(&rows[7].0));
    for (path, status) in [(key.as_str(), 200), ("/v1/keyspaces/default/keys/nope", 404), ("/v1/nope", 404)] {
        let resp =
            cairn_functions::lambda::handle_event(router.clone(), event("GET", path, None, false)).await.unwrap();
        assert_eq!(resp["statusCode"], status, "{path}");
    }
    let lines: Vec<Value> =
        lines.lock().unwrap().iter().map(|l| serde_json::from_str(l).expect("one JSON line")).collect();
    assert_eq!(lines.len(), 3, "one line per request: {lines:?}");
    for l in &lines {
        check_emf(l);
        assert_eq!(l["Requests"], 1);
        assert_eq!(l["Errors"], 0);
    }
    let first = &lines[0];
    assert_eq!(first["Route"], "/v1/keyspaces/{ks}/keys/{key}");
    assert_eq!((first["status"].as_u64(), first["ClientErrors"].as_u64()), (Some(200), Some(0)));
    // The first lookup read the pointer, manifest and shard from the store.
    assert!(first["ObjectGets"].as_u64().unwrap() >= 2, "{first}");
    assert!(first["BytesFetched"].as_u64().unwrap() > 0, "{first}");
    assert_eq!(lines[1]["ClientErrors"], 1);
    assert_eq!(lines[2]["Route"], "unmatched");
    // The alarms in infra/template.yaml watch metrics these lines carry, in their namespace.
    let template = std::fs::read_to_string(cairn_tests::workspace_root().join("infra/template.yaml")).unwrap();
    let namespace = first["_aws"]["CloudWatchMetrics"][0]["Namespace"].as_str().unwrap();
    let mut watched = 0;
    for l in template.lines().map(str::trim) {
        if let Some(name) = l.strip_prefix("MetricName: ") {
            assert!(first[name].is_number(), "the template alarms on {name}, which no log line carries");
            watched += 1;
        }
        if let Some(ns) = l.strip_prefix("Namespace: ") {
            assert_eq!(ns.trim_matches('"'), namespace, "{l}");
        }
    }
    assert!(watched >= 3, "the template alarms on errors, requests and latency");
}
