//! What a reader is told when something is wrong, and that it is the truth: an outage is a 503 (retry),
//! lost data is `data_loss` and makes health RED, a key no lookup could name is refused at ingest, and a
//! reader failing over to a lagging replica never moves back a version.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cairn_ingest::{IngestError, IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::query::RootOpener;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, versions::pointer};
use cairn_tests::fault::FaultyStore;
use cairn_tests::{encode, ingest};
use object_store::ObjectStoreExt;

struct Served {
    _dir: tempfile::TempDir,
    roots: Vec<Store>,
    faulty: Vec<Arc<FaultyStore>>,
    keys: Vec<(String, String)>,
    addr: std::net::SocketAddr,
    _task: tokio::task::JoinHandle<()>,
}

/// `n` roots (primary first) holding one keyspace `ks`, served over HTTP by an engine whose every root
/// goes through a fault injector.
async fn served(n: usize) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..n).map(|i| Store::open(dir.path().join(format!("r{i}")).to_str().unwrap()).unwrap()).collect();
    let keys: Vec<(String, String)> = (0..200).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}"))).collect();
    let input = dir.path().join("in.data");
    std::fs::write(&input, keys.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    opts.shards = Some(2);
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
    let faulty: Vec<Arc<FaultyStore>> =
        roots.iter().map(|r| Arc::new(FaultyStore::new(r.inner.clone(), "\0never", usize::MAX))).collect();
    let wrapped: Vec<Store> =
        roots.iter().zip(&faulty).map(|(r, f)| Store { url: r.url.clone(), inner: f.clone() }).collect();
    let by_url: HashMap<String, Store> = wrapped[1..].iter().map(|s| (s.url.clone(), s.clone())).collect();
    let resolver: RootOpener = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    let config = EngineConfig {
        data_cache_bytes: 0,
        pointer_ttl: Duration::from_secs(3600),
        deep_health: true,
        ..Default::default()
    };
    let engine = Arc::new(Engine::new(wrapped[0].clone(), config).with_root_opener(resolver));
    let (addr, serving) = cairn_functions::server::bind(engine, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let task = tokio::spawn(async move {
        serving.await.unwrap();
    });
    Served { _dir: dir, roots, faulty, keys, addr, _task: task }
}

async fn get(s: &Served, key: &str) -> (u16, String) {
    let url = format!("http://{}/v1/keyspaces/ks/keys/{}", s.addr, encode(key));
    let r = reqwest::get(url).await.unwrap();
    let code = r.headers().get("x-cairn-error").map(|h| h.to_str().unwrap().to_string()).unwrap_or_default();
    (r.status().as_u16(), code)
}

/// With replicas, a store outage answered 500 `corrupt_data`; it is an outage (503) with or without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_a_503_with_or_without_replicas() {
    for roots in [1, 2] {
        let s = served(roots).await;
        assert_eq!(get(&s, &s.keys[0].0).await.0, 200, "warm up: pointer and manifest cached");
        for f in &s.faulty {
            f.fail_reads.store(true, SeqCst);
        }
        assert_eq!(get(&s, &s.keys[1].0).await, (503, "store_unavailable".into()), "{roots} root(s)");
    }
}

/// A shard the published version names, gone from every root, is lost data, not an outage: a retry will not
/// bring it back, and health must say RED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_shard_of_the_current_version_is_data_loss() {
    for roots in [1, 2] {
        let s = served(roots).await;
        let cur = pointer::read(s.roots[0].inner.as_ref(), "ks").await.unwrap().unwrap();
        let m = cairn_shared::format::manifest::Manifest::read(s.roots[0].inner.as_ref(), "ks", &cur.pointer.version)
            .await
            .unwrap();
        for r in &s.roots {
            for e in &m.shards {
                r.inner.delete(&e.path.as_str().into()).await.unwrap();
            }
        }
        assert_eq!(get(&s, &s.keys[0].0).await, (500, "data_loss".into()), "{roots} root(s)");
        let health = reqwest::get(format!("http://{}/v1/health?keyspace=ks&shards=true", s.addr)).await.unwrap();
        assert_eq!(health.status().as_u16(), 503, "{roots} root(s)");
        let body: serde_json::Value = health.json().await.unwrap();
        assert_eq!(body["status"], "RED", "{body}");
    }
}

/// The manifest of the version the pointer names, gone: data loss too, and health RED (it was a 404
/// `not_found` for the version, and health an error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_manifest_of_the_current_version_is_data_loss() {
    let s = served(1).await;
    let cur = pointer::read(s.roots[0].inner.as_ref(), "ks").await.unwrap().unwrap();
    let path = cairn_shared::format::layout::manifest_path("ks", &cur.pointer.version);
    s.roots[0].inner.delete(&path).await.unwrap();
    assert_eq!(get(&s, &s.keys[0].0).await, (500, "data_loss".into()));
    let health = reqwest::get(format!("http://{}/v1/health?shards=true", s.addr)).await.unwrap();
    assert_eq!(health.status().as_u16(), 503);
    let body: serde_json::Value = health.json().await.unwrap();
    assert_eq!(body["status"], "RED", "{body}");
}

/// JSON Lines and CSV could load keys with a space, which no lookup can name (requests refuse them).
#[tokio::test]
async fn keys_with_a_space_are_refused_at_ingest_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    for (name, body, line) in [
        ("in.jsonl", "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b c\",\"value\":\"2\"}\n", 2),
        ("in.csv", "key,value\na,1\nb,2\nc d,3\n", 4),
    ] {
        let input = dir.path().join(name);
        std::fs::write(&input, body).unwrap();
        let err = ingest(&input, "sp", &store, Some(1)).await.unwrap_err();
        let IngestError::BadInput(problems) = &err else { panic!("{name}: {err}") };
        assert_eq!(problems[0].line, line, "{name}: {err}");
        assert!(problems[0].message.contains("space"), "{name}: {err}");
        assert!(pointer::read(store.inner.as_ref(), "sp").await.unwrap().is_none(), "{name}: nothing published");
    }
}

/// A primary slower than the attempt timeout made readers take a lagging replica's pointer: V2 → V1 → V2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_over_to_a_lagging_replica_never_moves_a_reader_back() {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..2).map(|i| Store::open(dir.path().join(format!("r{i}")).to_str().unwrap()).unwrap()).collect();
    let mut published = Vec::new();
    for tag in ["one", "two"] {
        let input = dir.path().join(format!("{tag}.data"));
        std::fs::write(&input, format!("k {tag}\n")).unwrap();
        let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
        opts.replicas = roots[1..].to_vec();
        opts.shards = Some(1);
        cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
        published.push(pointer::read(roots[1].inner.as_ref(), "ks").await.unwrap().unwrap().pointer);
    }
    // The replica's copy lags: it still names version one (written as it was then: a copy never moves back).
    let lagging = serde_json::to_vec(&published[0]).unwrap();
    roots[1].inner.put(&cairn_shared::format::layout::pointer_path("ks"), lagging.into()).await.unwrap();
    assert_eq!(pointer::read(roots[1].inner.as_ref(), "ks").await.unwrap().unwrap().pointer, published[0]);
    let primary = Arc::new(FaultyStore::new(roots[0].inner.clone(), "\0never", usize::MAX));
    let failover = cairn_shared::stores::replicated::FailoverConfig {
        attempt_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let config = EngineConfig {
        pointer_ttl: Duration::from_millis(50),
        replicas: vec![roots[1].url.clone()],
        failover,
        ..Default::default()
    };
    let replica = roots[1].clone();
    let resolver: RootOpener = Arc::new(move |_: &str| Ok(replica.clone()));
    let engine =
        Engine::new(Store { url: roots[0].url.clone(), inner: primary.clone() }, config).with_root_opener(resolver);
    assert_eq!(engine.get("ks", "k").await.unwrap().as_deref(), Some(&b"two"[..]));
    primary.read_delay_us.store(1_000_000, SeqCst);
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(engine.get("ks", "k").await.unwrap().as_deref(), Some(&b"two"[..]), "moved back to version one");
    }
}
