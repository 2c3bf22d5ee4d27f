//! The shared cache tier (`CAIRN_SHARED_CACHE`, a redis-server on 127.0.0.1 that the test starts): three
//! engines with one tier fetch each object range from the store about once, not three times, and answer
//! byte for byte; a poisoned entry is caught by its checksum, not served, and replaced; a tier stopped
//! mid-run, or never reachable, costs speed only: every lookup is still answered.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, SharedCacheConfig};
use cairn_shared::stores::Store;
use cairn_tests::process::Served;
use cairn_tests::redis_server::Redis;
use cairn_tests::{example_data, read_dataset};

fn engine(store: &Store, url: &str) -> Engine {
    let mut shared = SharedCacheConfig::new(url);
    // Generous for a loaded CI machine: a timeout only decides speed, never an answer.
    shared.timeout = Duration::from_millis(500);
    let config = EngineConfig {
        shared_cache: Some(shared),
        data_cache_bytes: 64 << 10,
        metadata_cache_bytes: 1 << 20,
        ..Default::default()
    };
    Engine::new(store.clone(), config)
}

/// Looks every key up (each must answer its value) and returns the store GETs it cost.
async fn read_all(e: &Engine, rows: &[(String, Vec<u8>)]) -> u64 {
    let before = e.counters().object_gets;
    for (k, v) in rows {
        assert_eq!(e.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()), "{k}");
    }
    e.counters().object_gets - before
}

/// The first connection is made in the background: waits (bounded) until the engine has asked the tier,
/// so what follows counts the tier's effect.
async fn connected(e: &Engine, key: &str) {
    e.get("default", key).await.unwrap(); // its first read starts the connection
    for _ in 0..500 {
        if e.stats().shared_tier.unwrap().connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the engine never reached the shared tier: {:?}", e.stats().shared_tier);
}

/// Waits (bounded) until the tier's background writes have all been answered.
async fn settle(e: &Engine) {
    for _ in 0..600 {
        if e.stats().shared_tier.unwrap().writing == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the shared tier's writes did not finish in 30 s: {:?}", e.stats().shared_tier);
}

/// The example data ingested by the CLI into `DIR/store` (8 shards): the store's path.
fn ingested(dir: &std::path::Path) -> std::path::PathBuf {
    let store = dir.join("store");
    let data = example_data();
    let out = cairn_tests::process::cairn(
        &["ingest", data.to_str().unwrap(), "-k", "default", "--store", store.to_str().unwrap(), "--shards", "8"],
        None,
        &[],
    );
    assert!(out.status.success(), "{}", cairn_tests::process::text(&out.stderr));
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_share_one_tier_verify_its_entries_and_survive_its_outage() {
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let mut o = IngestOptions::new(example_data(), "default", store.clone());
    o.shards = Some(8);
    cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap();
    let rows: Vec<(String, Vec<u8>)> = read_dataset(&example_data()).into_iter().step_by(7).collect();

    let engines: Vec<Engine> = (0..3).map(|_| engine(&store, &redis.url())).collect();
    for e in &engines {
        connected(e, &rows[0].0).await;
    }
    let first = read_all(&engines[0], &rows).await;
    settle(&engines[0]).await;
    let second = read_all(&engines[1], &rows).await;
    let third = read_all(&engines[2], &rows).await;
    assert!(first > 50, "the first engine read from the store ({first} GETs)");
    assert!(
        second + third <= first / 10,
        "engines 2 and 3 found what engine 1 read in the shared tier: {first}, {second}, {third} store GETs"
    );
    assert!(engines[1].stats().shared_tier.unwrap().hits > 0);

    // A poisoned entry: right key, wrong bytes. Detected, not served, replaced.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("cairn:1:*").query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty());
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(b"poison".as_slice()).query_async(&mut conn).await.unwrap();
    }
    let fresh = engine(&store, &redis.url());
    connected(&fresh, &rows[0].0).await;
    read_all(&fresh, &rows).await;
    assert!(fresh.stats().shared_tier.unwrap().poisoned > 0, "{:?}", fresh.stats().shared_tier);
    settle(&fresh).await;
    let replaced: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(&keys).query_async(&mut conn).await.unwrap();
    assert!(replaced.iter().flatten().any(|v| v != b"poison"), "poisoned entries are overwritten by the store's bytes");

    // The tier stopped mid-run: every lookup is still answered (from the store).
    redis.stop();
    for e in engines.iter().chain([&fresh]) {
        read_all(e, &rows).await;
    }
    // And never reachable at all.
    let dead = engine(&store, &redis.url());
    read_all(&dead, &rows).await;
    assert!(dead.counters().object_gets > 0);
}

/// A node's `/metrics`.
async fn scrape(client: &reqwest::Client, node: &Served) -> String {
    client.get(format!("{}/metrics", node.url)).send().await.unwrap().text().await.unwrap()
}

/// GETs every row's key from `node`: each must answer its value, byte for byte.
async fn get_all(client: &reqwest::Client, node: &Served, rows: &[(String, Vec<u8>)]) {
    for (k, v) in rows {
        let r = client.get(format!("{}/v1/keyspaces/default/keys/{k}", node.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{k}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), v.as_slice(), "{k}");
    }
}

/// `name`'s samples in a `/metrics` exposition whose labels include `label`, summed.
fn metric(exposition: &str, name: &str, label: &str) -> u64 {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_with_one_tier_read_each_block_from_the_store_about_once() {
    let redis = Redis::start();
    let tmp = tempfile::tempdir().unwrap();
    let (store, data) = (ingested(tmp.path()), example_data());
    let env = [("CAIRN_SHARED_CACHE", redis.url()), ("CAIRN_SHARED_CACHE_TIMEOUT", "500ms".to_string())];
    let nodes: Vec<_> =
        (0..3).map(|_| cairn_tests::process::serve(tmp.path(), &["--store", store.to_str().unwrap()], &env)).collect();
    let client = reqwest::Client::new();
    let scrape = async |node: &Served| scrape(&client, node).await;
    let rows: Vec<(String, Vec<u8>)> = read_dataset(&data).into_iter().step_by(7).collect();
    let get_all = async |node: &Served, rows: &[(String, Vec<u8>)]| get_all(&client, node, rows).await;
    // A node connects to the tier in the background on a lookup that misses its memory: lookups of keys
    // outside `rows` until it is up (one attempt that failed on a loaded machine is retried by the next).
    let others: Vec<(String, Vec<u8>)> = read_dataset(&data).into_iter().skip(3).step_by(7).collect();
    for node in &nodes {
        let mut up = false;
        for other in others.chunks(1).take(1500) {
            get_all(node, other).await;
            if metric(&scrape(node).await, "cairn_cache_tier_up", "tier=\"shared\"") == 1 {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(up, "a node never reached the shared tier:\n{}", scrape(node).await);
    }
    let store_gets = async |node| metric(&scrape(node).await, "cairn_store_gets_total", "outcome=\"ok\"");
    let mut fetched = Vec::new();
    for node in &nodes {
        let before = store_gets(node).await;
        get_all(node, &rows).await;
        fetched.push(store_gets(node).await - before);
        // What it read is in the tier before the next node asks.
        for _ in 0..1500 {
            if metric(&scrape(node).await, "cairn_cache_tier_writes_in_flight", "tier=\"shared\"") == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(fetched[0] > 20, "the first node read the blocks from the store: {fetched:?}");
    assert!(
        fetched[1] + fetched[2] <= fetched[0] / 10,
        "nodes 2 and 3 found in the shared tier what node 1 read (store GETs per node: {fetched:?})"
    );
    let hits = metric(&scrape(&nodes[2]).await, "cairn_cache_hits_total", "cache=\"shared\"");
    assert!(hits > 0, "node 3 answered from the tier");
}

/// Runs a command that must succeed (certificate making).
fn run(cmd: &mut Command) {
    let out = cmd.output().expect("openssl (the OS package) makes the test's certificates");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a certificate for 127.0.0.1 it signed, in `dir`: (ca.pem, cert.pem, key.pem).
fn certificates(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let p = |n: &str| dir.join(n);
    let s = |p: std::path::PathBuf| p.to_str().unwrap().to_string();
    run(Command::new("openssl").args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]).args([
        "-subj",
        "/CN=cairn-test-ca",
        "-keyout",
        &s(p("ca.key")),
        "-out",
        &s(p("ca.pem")),
    ]));
    run(Command::new("openssl").args(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1"]).args([
        "-keyout",
        &s(p("key.pem")),
        "-out",
        &s(p("cert.csr")),
    ]));
    std::fs::write(p("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(Command::new("openssl").args(["x509", "-req", "-days", "2", "-CAcreateserial"]).args([
        "-in",
        &s(p("cert.csr")),
        "-CA",
        &s(p("ca.pem")),
        "-CAkey",
        &s(p("ca.key")),
        "-extfile",
        &s(p("san.ext")),
        "-out",
        &s(p("cert.pem")),
    ]));
    [p("ca.pem"), p("cert.pem"), p("key.pem")]
}

/// ElastiCache Serverless speaks TLS only, with AUTH where configured: a `rediss://` tier with a password,
/// the servers trusting its CA through `CAIRN_SHARED_CACHE_CA` (or `SSL_CERT_FILE`), is used; a wrong password
/// leaves the tier down and every lookup answered from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_tier_with_a_password_is_used_and_a_wrong_one_costs_speed_only() {
    let tmp = tempfile::tempdir().unwrap();
    let [ca, cert, key] = certificates(tmp.path());
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let redis = Redis::start_with(|port| {
        ["--port", "0", "--tls-port", &port.to_string(), "--tls-cert-file", &s(&cert), "--tls-key-file", &s(&key)]
            .into_iter()
            .map(String::from)
            .chain(["--tls-ca-cert-file".into(), s(&ca), "--tls-auth-clients".into(), "no".into()])
            .chain(["--requirepass".into(), "s3cret".into()])
            .collect()
    });
    let (store, data) = (ingested(tmp.path()), example_data());
    // The CA given as CAIRN_SHARED_CACHE_CA, or (the second node) as SSL_CERT_FILE, its fallback.
    let node_with = |password: &str, ca_var: &'static str| {
        let env = [
            ("CAIRN_SHARED_CACHE", format!("rediss://:{password}@127.0.0.1:{}", redis.port)),
            ("CAIRN_SHARED_CACHE_TIMEOUT", "500ms".to_string()),
            (ca_var, s(&ca)),
        ];
        cairn_tests::process::serve(tmp.path(), &["--store", store.to_str().unwrap()], &env)
    };
    let node = |password: &str| node_with(password, "CAIRN_SHARED_CACHE_CA");
    let client = reqwest::Client::new();
    let scrape = async |node: &Served| scrape(&client, node).await;
    let rows: Vec<(String, Vec<u8>)> = read_dataset(&data).into_iter().step_by(13).collect();
    let get_all = async |node: &Served, rows: &[(String, Vec<u8>)]| get_all(&client, node, rows).await;
    // Lookups of keys outside `rows` until the node is up (each miss retries a connection that failed).
    let others: Vec<(String, Vec<u8>)> = read_dataset(&data).into_iter().skip(5).step_by(13).collect();
    let up = async |node: &Served| {
        for other in others.chunks(1).take(1500) {
            get_all(node, other).await;
            if metric(&scrape(node).await, "cairn_cache_tier_up", "tier=\"shared\"") == 1 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    };
    // A node's first lookup connects it (in the background); what it reads once connected goes to the tier.
    let first = node("s3cret");
    get_all(&first, &rows[..1]).await;
    assert!(up(&first).await, "the TLS tier with the right password is reached:\n{}", scrape(&first).await);
    get_all(&first, &rows[1..]).await;
    for _ in 0..1500 {
        let m = scrape(&first).await;
        if metric(&m, "cairn_cache_tier_stored_total", "tier=\"shared\"") > 0
            && metric(&m, "cairn_cache_tier_writes_in_flight", "tier=\"shared\"") == 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = node_with("s3cret", "SSL_CERT_FILE");
    get_all(&second, &rows[..1]).await;
    assert!(up(&second).await);
    get_all(&second, &rows[1..]).await;
    let hits = metric(&scrape(&second).await, "cairn_cache_hits_total", "cache=\"shared\"");
    assert!(hits > 0, "the second node read entries the first wrote, over TLS");

    let wrong = node("wrong");
    get_all(&wrong, &rows).await;
    // Its connection attempts fail (counted as errors), and every lookup is answered meanwhile.
    for other in others.chunks(1).take(1500) {
        if metric(&scrape(&wrong).await, "cairn_cache_tier_errors_total", "tier=\"shared\"") > 0 {
            break;
        }
        get_all(&wrong, other).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    get_all(&wrong, &rows).await;
    let m = scrape(&wrong).await;
    assert!(metric(&m, "cairn_cache_tier_errors_total", "tier=\"shared\"") > 0, "the attempts failed:\n{m}");
    assert_eq!(metric(&m, "cairn_cache_tier_up", "tier=\"shared\""), 0, "a wrong password never connects");
    assert_eq!(metric(&m, "cairn_cache_hits_total", "cache=\"shared\""), 0);
}
