//! Bounded work per request: an MGET's answer has a byte limit and a bounded number of reads in flight, the
//! process bounds its store reads, a slow client cannot hold a connection forever, connections are capped,
//! and the expensive deep health check is the operator's to enable. Each failed on the previous main.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cairn_functions::server::bind_with;
use cairn_shared::config::EngineConfig;
use cairn_shared::config::ServeConfig as ServeLimits;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, Error};
use cairn_tests::fault::FaultyStore;
use cairn_tests::{TestServer, example_data, ingest, read_dataset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn big_values(dir: &std::path::Path) -> (Store, Vec<String>) {
    let store = Store::open(dir.join("store").to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..40).map(|i| format!("big-{i:02}")).collect();
    let body: String = keys.iter().map(|k| format!("{k} {}\n", "v".repeat(300 << 10))).collect();
    std::fs::write(dir.join("big.data"), body).unwrap();
    ingest(&dir.join("big.data"), "big", &store, Some(4)).await.unwrap();
    (store, keys)
}

/// 40 values of 300 KiB: an MGET of all of them would build a 12 MiB answer (up to 4 GiB with 1,000 keys of
/// 4 MiB: a 1 GB Lambda dies). Over the limit it is refused; under it, answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mget_answer_over_the_byte_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, keys) = big_values(dir.path()).await;
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let err = engine.mget("big", &keys).await.unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit } if limit == 8 << 20), "{err}");
    assert_eq!(engine.mget("big", &keys[..20]).await.unwrap().len(), 20, "6 MiB is under the limit");

    let server = TestServer::start(store, EngineConfig::default()).await;
    let http = reqwest::Client::new();
    let r = http.post(server.url("/v1/keyspaces/big/mget")).json(&keys).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(r.headers()["x-cairn-error"], "response_too_large");
    let r = http.post(server.url("/v1/keyspaces/big/mget")).json(&keys[..3]).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A cold MGET of 1,000 keys started a read for every block at once; now 32 lookups are in flight per
/// MGET, and the process holds at most `max_concurrent_gets` store reads whatever the number of requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_reads_in_flight_are_bounded_per_request_and_per_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(64)).await.unwrap();
    let keys: Vec<String> = read_dataset(&example_data()).into_iter().take(1000).map(|(k, _)| k).collect();
    for (per_process, mgets, bound) in [(256, 1, 32 + 2), (8, 4, 8 + 2)] {
        let slow = Arc::new(FaultyStore::slow(store.inner.clone(), Duration::from_millis(5), Duration::ZERO));
        let config = EngineConfig { data_cache_bytes: 0, max_concurrent_gets: per_process, ..EngineConfig::default() };
        let engine = Engine::new(Store { url: store.url.clone(), inner: slow.clone() }, config);
        let answers = futures::future::join_all((0..mgets).map(|_| engine.mget("default", &keys))).await;
        assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|v| v.iter().all(Option::is_some))));
        let most = slow.max_in_flight.load(SeqCst);
        assert!(most <= bound, "{mgets} MGET(s), {per_process} reads per process: {most} reads in flight at once");
    }
}

async fn serve_limited(limits: ServeLimits) -> (std::net::SocketAddr, tempfile::TempDir, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let engine = Arc::new(Engine::new(store, EngineConfig::default()));
    let (addr, serving) = bind_with(engine, "127.0.0.1:0".parse().unwrap(), limits).await.unwrap();
    let task = tokio::spawn(async move {
        serving.await.unwrap();
    });
    (addr, dir, task)
}

/// Reads until the peer closes or `wait` passes; returns what came and whether it closed.
async fn read_for(tcp: &mut tokio::net::TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// `cairn serve` set no timer, so hyper's header-read timeout was off: a client sending half a request held
/// its connection (and a task) forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let limits = ServeLimits { header_timeout: Duration::from_millis(300), ..ServeLimits::default() };
    let (addr, _dir, _task) = serve_limited(limits).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v1/keyspaces HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let (_, closed) = read_for(&mut tcp, Duration::from_secs(3)).await;
    assert!(closed, "the connection is still open 3 s after a 300 ms header timeout");
}

/// Found by review: an MGET declaring a body over the limit, with `Expect: 100-continue`, was told to go on,
/// and its client uploaded a megabyte before the 413. The declared length is now judged before the body is
/// asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mget_declaring_a_body_over_the_limit_is_refused_before_it_is_sent() {
    let (addr, _dir, _task) = serve_limited(ServeLimits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head =
        "POST /v1/keyspaces/ks/mget HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n";
    tcp.write_all(head.as_bytes()).await.unwrap();
    let (got, _) = read_for(&mut tcp, Duration::from_secs(2)).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 413"), "{got}");
    assert!(got.contains("x-cairn-error: body_too_large"), "{got}");
}

/// Found by review: a request head could take up to 2 MiB of a connection's buffer (2.2 MB answered 200),
/// so 4,096 connections could hold 8 GiB in heads alone. A head over 64 KiB is refused (431).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_over_64_kib_is_refused() {
    let (addr, _dir, _task) = serve_limited(ServeLimits::default()).await;
    for (filler, status) in [(60 << 10, "HTTP/1.1 404"), (100 << 10, "HTTP/1.1 431")] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET /v1/keyspaces/ks HTTP/1.1\r\nHost: x\r\nX-Filler: {}\r\n\r\n", "a".repeat(filler));
        // Written in the background: a server that refuses early may stop reading.
        let (mut read, mut write) = tcp.split();
        let (_, (got, _)) = tokio::join!(write.write_all(head.as_bytes()), async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match tokio::time::timeout_at(deadline, read.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            (got, ())
        });
        let got = String::from_utf8_lossy(&got);
        assert!(got.starts_with(status), "a {filler}-byte header: {got}");
    }
}

/// Connections were unbounded. With a cap of 2, a third waits until one of the first two goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let limits = ServeLimits { max_connections: 2, header_timeout: Duration::from_secs(30), ..ServeLimits::default() };
    let (addr, _dir, _task) = serve_limited(limits).await;
    let request = b"GET /v1/keyspaces HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request).await.unwrap();
        let (got, _) = read_for(&mut tcp, Duration::from_millis(300)).await;
        assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
        held.push(tcp); // kept alive: it holds its slot
    }
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    third.write_all(request).await.unwrap();
    let (got, _) = read_for(&mut third, Duration::from_millis(500)).await;
    assert!(got.is_empty(), "a third connection was served past the limit: {}", String::from_utf8_lossy(&got));
    drop(held.pop());
    let (got, _) = read_for(&mut third, Duration::from_secs(3)).await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "once a slot is free: {}", String::from_utf8_lossy(&got));
}

/// `GET /v1/health?deep=true` read every shard of every keyspace from every root, for any caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_health_over_http_is_off_unless_the_operator_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(2)).await.unwrap();
    let off = TestServer::start(store.clone(), EngineConfig::default()).await;
    let r = reqwest::get(off.url("/v1/health?deep=true")).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-cairn-error"], "deep_health_disabled");
    assert_eq!(reqwest::get(off.url("/v1/health")).await.unwrap().status(), 200, "the cheap check stays open");
    let on = TestServer::start(store, EngineConfig { deep_health: true, ..Default::default() }).await;
    assert_eq!(reqwest::get(on.url("/v1/health?deep=true")).await.unwrap().status(), 200);
}
