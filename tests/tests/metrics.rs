//! `GET /metrics` tells an operator what the server did: every request counted by route and status (fast
//! path and router alike), latency histograms, store reads per root by outcome, failovers and checksum
//! failures when copies are lost or damaged, and the version each keyspace is served from. The exposition
//! is parsed here the way a scraper would; scripts/api-conformance.sh also checks a live scrape with
//! the Prometheus project's own OpenMetrics parser.

use std::collections::HashMap;
use std::sync::Arc;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::query::RootOpener;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::manifest};
use cairn_tests::{TestServer, encode, example_data, first_copy, read_dataset};

/// (metric name, labels, value) of every sample.
fn samples(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {l}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), HashMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {l}"));
                    let mut labels = HashMap::new();
                    let mut rest = body;
                    while !rest.is_empty() {
                        let (k, v) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label in {l}"));
                        let end = v.find('"').unwrap_or_else(|| panic!("unterminated label in {l}"));
                        labels.insert(k.trim_start_matches(',').to_string(), v[..end].to_string());
                        rest = v[end + 1..].trim_start_matches(',');
                    }
                    (name.to_string(), labels)
                }
            };
            (name, labels, value)
        })
        .collect()
}

/// The one sample named `name` with (at least) these labels; 0 if there is none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = samples(text)
        .into_iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
        .map(|(_, _, v)| v)
        .collect();
    assert!(found.len() <= 1, "{name} {labels:?} names {} samples", found.len());
    found.first().copied().unwrap_or(0.0)
}

async fn scrape(server: &TestServer, accept: Option<&str>) -> (String, String) {
    let mut req = reqwest::Client::new().get(server.url("/metrics"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    let kind = r.headers()["content-type"].to_str().unwrap().to_string();
    (kind, r.text().await.unwrap())
}

const KEYS: &str = "/v1/keyspaces/{ks}/keys/{key}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_counted_by_route_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let report = cairn_tests::ingest(&example_data(), "default", &store, Some(4)).await.unwrap();
    let server = TestServer::start(store.clone(), EngineConfig::default()).await;
    let rows = read_dataset(&example_data());
    let http = reqwest::Client::new();
    for (k, _) in &rows[..50] {
        assert_eq!(
            http.get(server.url(&format!("/v1/keyspaces/default/keys/{k}"))).send().await.unwrap().status(),
            200
        );
    }
    // Percent-escaped keys take the router instead of the fast path: counted under the same route.
    for (k, _) in &rows[50..53] {
        let escaped = encode(k).replacen('-', "%2D", 1);
        assert_eq!(
            http.get(server.url(&format!("/v1/keyspaces/default/keys/{escaped}"))).send().await.unwrap().status(),
            200
        );
    }
    for i in 0..5 {
        let missing = format!("/v1/keyspaces/default/keys/missing-{i}");
        assert_eq!(http.get(server.url(&missing)).send().await.unwrap().status(), 404);
    }
    let mget = http.post(server.url("/v1/keyspaces/default/mget")).body(r#"["a","b"]"#).send().await.unwrap();
    assert_eq!(mget.status(), 200);
    assert_eq!(http.get(server.url("/nope")).send().await.unwrap().status(), 404);
    assert_eq!(http.delete(server.url("/v1/keyspaces")).send().await.unwrap().status(), 405);

    let (kind, text) = scrape(&server, None).await;
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let requests =
        |route: &str, code: &str| value(&text, "cairn_http_requests_total", &[("route", route), ("code", code)]);
    assert_eq!(requests(KEYS, "200"), 53.0, "{text}");
    assert_eq!(requests(KEYS, "404"), 5.0);
    assert_eq!(requests("/v1/keyspaces/{ks}/mget", "200"), 1.0);
    assert_eq!(requests("unmatched", "404"), 1.0);
    assert_eq!(requests("/v1/keyspaces", "405"), 1.0);
    let latency =
        |s: &str, labels: &[(&str, &str)]| value(&text, &format!("cairn_http_request_duration_seconds{s}"), labels);
    assert_eq!(latency("_count", &[("route", KEYS)]), 58.0);
    assert_eq!(latency("_bucket", &[("route", KEYS), ("le", "+Inf")]), 58.0);
    assert!(latency("_sum", &[("route", KEYS)]) > 0.0);

    // The store was read (pointer, manifest, shards), and nothing failed.
    let root = store.url.as_str();
    let gets = |outcome: &str| value(&text, "cairn_store_gets_total", &[("root", root), ("outcome", outcome)]);
    assert!(gets("ok") >= 3.0, "{text}");
    assert_eq!(gets("error"), 0.0);
    assert!(value(&text, "cairn_store_get_bytes_total", &[("root", root)]) > 0.0);
    assert_eq!(
        value(&text, "cairn_store_get_duration_seconds_count", &[("root", root)]),
        gets("ok") + gets("not_found")
    );
    // Hits on warm paths are sampled (one counted as 64), so only misses are exact at this scale.
    assert!(value(&text, "cairn_cache_misses_total", &[("cache", "pointer")]) >= 1.0, "{text}");
    for cache in ["pointer", "manifest", "shard_roots", "shard_metadata", "data"] {
        assert!(text.contains(&format!("cairn_cache_capacity_bytes{{cache=\"{cache}\"}}")), "{cache}: {text}");
    }
    assert_eq!(
        value(&text, "cairn_keyspace_version_info", &[("keyspace", "default"), ("version", &report.version)]),
        1.0
    );
    assert_eq!(value(&text, "cairn_keyspace_keys", &[("keyspace", "default")]), 10_000.0);
    assert_eq!(value(&text, "cairn_checksum_failures_total", &[]), 0.0);

    // A scraper that asks for OpenMetrics gets it; the scrape itself is counted next time.
    let (kind, om) = scrape(&server, Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")).await;
    assert!(kind.starts_with("application/openmetrics-text; version=1.0.0"), "{kind}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert_eq!(value(&om, "cairn_http_requests_total", &[("route", "/metrics"), ("code", "200")]), 1.0);
    assert_eq!(value(&om, "cairn_http_requests_total", &[("route", KEYS), ("code", "200")]), 53.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_and_damaged_copies_show_as_failovers_misses_and_checksum_failures() {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..2).map(|i| Store::open(dir.path().join(format!("root{i}")).to_str().unwrap()).unwrap()).collect();
    let mut opts = IngestOptions::new(example_data(), "default", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    opts.shards = Some(4);
    let report = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &report.version).await.unwrap();
    let local = |root: &Store, p: &str| std::path::Path::new(root.url.strip_prefix("file://").unwrap()).join(p);
    // Shard 0: the copy read first is deleted; shard 1: the copy read first is corrupted.
    let (lost, damaged) = (&m.shards[0].path, &m.shards[1].path);
    std::fs::remove_file(local(&roots[first_copy(2, lost)], lost)).unwrap();
    let bad = local(&roots[first_copy(2, damaged)], damaged);
    let mut bytes = std::fs::read(&bad).unwrap();
    for i in (0..bytes.len()).step_by(512) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&bad, bytes).unwrap();

    let by_url: HashMap<String, Store> = roots[1..].iter().map(|s| (s.url.clone(), s.clone())).collect();
    let resolver: RootOpener = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    let config = EngineConfig { data_cache_bytes: 0, ..Default::default() };
    let engine = Arc::new(Engine::new(roots[0].clone(), config).with_root_opener(resolver));
    let (addr, serving) = cairn_functions::server::bind(engine.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let task = tokio::spawn(serving);
    let rows = read_dataset(&example_data());
    let http = reqwest::Client::new();
    for (k, v) in &rows[..400] {
        let r = http.get(format!("http://{addr}/v1/keyspaces/default/keys/{k}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.bytes().await.unwrap().as_ref(), v.as_slice());
    }
    let text = reqwest::get(format!("http://{addr}/metrics")).await.unwrap().text().await.unwrap();
    task.abort();

    let failovers = value(&text, "cairn_replica_failovers_total", &[]);
    let checksum = value(&text, "cairn_checksum_failures_total", &[]);
    assert!(failovers > 0.0, "{text}");
    assert!(checksum > 0.0, "{text}");
    assert_eq!(value(&text, "cairn_replica_failed_reads_total", &[]), 0.0);
    // The deleted copy shows as not_found GETs on its root.
    let lost_root = roots[first_copy(2, lost)].url.as_str();
    assert!(value(&text, "cairn_store_gets_total", &[("root", lost_root), ("outcome", "not_found")]) > 0.0, "{text}");
    for r in &roots {
        assert!(
            value(&text, "cairn_store_gets_total", &[("root", r.url.as_str()), ("outcome", "ok")]) > 0.0,
            "{}",
            r.url
        );
    }
    let stats = engine.keyspace("default").await.unwrap().top().replicated.as_ref().unwrap().stats();
    assert_eq!((failovers, checksum), (stats.failovers as f64, stats.corrupt_copies as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreplicated_damaged_shard_counts_as_a_checksum_failure() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let report = cairn_tests::ingest(&example_data(), "default", &store, Some(1)).await.unwrap();
    let m = manifest::Manifest::read(store.inner.as_ref(), "default", &report.version).await.unwrap();
    let path = dir.path().join(&m.shards[0].path);
    let mut bytes = std::fs::read(&path).unwrap();
    for i in (0..bytes.len()).step_by(512) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&path, bytes).unwrap();
    let server = TestServer::start(store, EngineConfig { data_cache_bytes: 0, ..Default::default() }).await;
    let (k, _) = &read_dataset(&example_data())[0];
    let r = reqwest::get(server.url(&format!("/v1/keyspaces/default/keys/{k}"))).await.unwrap();
    assert_eq!(r.status(), 500);
    let (_, text) = scrape(&server, None).await;
    assert!(value(&text, "cairn_checksum_failures_total", &[]) >= 1.0, "{text}");
    assert_eq!(value(&text, "cairn_http_requests_total", &[("route", KEYS), ("code", "500")]), 1.0);
}
