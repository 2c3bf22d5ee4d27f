//! `cairn serve` answers plain single-key GETs in a loop of its own and hands a connection to hyper at the
//! first request that is anything else (functions/src/plain_get.rs). What a client must not be able to tell:
//! every answer is byte-for-byte hyper's (the date aside), pipelined requests are answered in order across
//! the hand-off, hostile bytes never take the server down, and the limits still hold (an idle connection is
//! closed at the header timeout and at a stop).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cairn_functions::server::bind_until;
use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, ServeConfig};
use cairn_shared::stores::Store;
use cairn_tests::{example_data, ingest, read_dataset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous: every wait below normally ends in milliseconds; this only bounds a failure.
const PATIENCE: Duration = Duration::from_secs(30);

struct Served {
    addr: SocketAddr,
    rows: Vec<(String, Vec<u8>)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    serving: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn served(limits: ServeConfig) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "ex", &store, Some(4)).await.unwrap();
    let engine = Arc::new(Engine::new(store, EngineConfig::default()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let stop = async move {
        let _ = rx.await;
    };
    let (addr, serving) = bind_until(engine, "127.0.0.1:0".parse().unwrap(), limits, stop).await.unwrap();
    let serving = tokio::spawn(async move { serving.await.unwrap() });
    Served { addr, rows: read_dataset(&example_data()), stop: Some(tx), serving, _dir: dir }
}

/// One HTTP/1.1 answer: its head (date line removed) and body.
#[derive(Debug, PartialEq)]
struct Answer {
    head: String,
    body: Vec<u8>,
}

impl Answer {
    fn status(&self) -> u16 {
        self.head[9..12].parse().unwrap()
    }
}

/// Reads one answer from `tcp`, `pending` holding bytes read past the previous one.
async fn answer(tcp: &mut TcpStream, pending: &mut Vec<u8>) -> Answer {
    answer_to(tcp, pending, false).await
}

/// [`answer`], of a HEAD request (`head`: no body follows its head).
async fn answer_to(tcp: &mut TcpStream, pending: &mut Vec<u8>, head: bool) -> Answer {
    let mut buf = [0u8; 8192];
    let end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "closed before an answer; had {:?}", String::from_utf8_lossy(pending));
        pending.extend_from_slice(&buf[..n]);
    };
    let head_only = head;
    let head = String::from_utf8(pending[..end].to_vec()).unwrap();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.trim().parse().unwrap());
    let len = if head_only { 0 } else { len };
    while pending.len() < end + len {
        let n = tokio::time::timeout(PATIENCE, tcp.read(&mut buf)).await.expect("a body in time").unwrap();
        assert!(n > 0, "closed inside a body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending[end..end + len].to_vec();
    pending.drain(..end + len);
    let head = head.lines().filter(|l| !l.starts_with("date: ")).collect::<Vec<_>>().join("\n");
    Answer { head, body }
}

/// Sends `request` on a connection of its own (the plain loop's, if it is a plain GET).
async fn fresh(addr: SocketAddr, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    answer_to(&mut tcp, &mut Vec::new(), request.starts_with("HEAD")).await
}

/// Sends `request` on a connection already handed to hyper by a request the plain loop does not serve.
async fn through_hyper(addr: SocketAddr, request: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut pending = Vec::new();
    tcp.write_all(b"GET /v1/live HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(answer(&mut tcp, &mut pending).await.status(), 200);
    tcp.write_all(request.as_bytes()).await.unwrap();
    answer_to(&mut tcp, &mut pending, request.starts_with("HEAD")).await
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_byte_for_byte_what_hyper_answers() {
    let s = served(ServeConfig::default()).await;
    let (key, value) = &s.rows[7];
    let requests = [
        get(&format!("/v1/keyspaces/ex/keys/{key}")),
        get(&format!("/v1/keyspaces/ex/keys/{key}?ignored=1")),
        get("/v1/keyspaces/ex/keys/no-such-key"),
        get("/v1/keyspaces/nope/keys/k"),
        get("/v1/keyspaces/ex/keys/has%20space"),
        get("/v1/keyspaces/Bad.Name~/keys/k"),
        get(&format!("/v1/keyspaces/ex/keys/{}", "k".repeat(5000))),
        get("/v1/keyspaces/ex/keys/a/b"),
        get("/v1/nowhere"),
        format!("HEAD /v1/keyspaces/ex/keys/{key} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for request in &requests {
        let plain = fresh(s.addr, request).await;
        let hyper = through_hyper(s.addr, request).await;
        assert_eq!(plain, hyper, "{request:?}");
    }
    let found = fresh(s.addr, &requests[0]).await;
    assert_eq!((found.status(), &found.body), (200, value));
    assert!(found.head.contains("\nx-cairn-version: "), "{}", found.head);
    assert_eq!(fresh(s.addr, &requests[2]).await.status(), 404);
    // A HEAD's answer has no body: the next answer on the connection starts right after its head.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(format!("{}{}", requests.last().unwrap(), requests[0]).as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    assert_eq!(answer_to(&mut tcp, &mut pending, true).await.status(), 200);
    assert_eq!(answer(&mut tcp, &mut pending).await.body, *value);
}

/// One write of 50 GETs, an MGET with a body, 50 more GETs and a route of the router's: every answer comes,
/// in order, on one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_off() {
    let s = served(ServeConfig::default()).await;
    let key_of = |i: usize| if i % 7 == 3 { format!("absent-{i}") } else { s.rows[i * 13].0.clone() };
    let mut batch = String::new();
    for i in 0..50 {
        batch += &get(&format!("/v1/keyspaces/ex/keys/{}", key_of(i)));
    }
    let mget = format!(r#"["{}","absent"]"#, s.rows[1].0);
    batch += &format!(
        "POST /v1/keyspaces/ex/mget HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{mget}",
        mget.len()
    );
    for i in 50..100 {
        batch += &get(&format!("/v1/keyspaces/ex/keys/{}", key_of(i)));
    }
    batch += &get("/v1/ready");
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(batch.as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    let check = |i: usize, a: Answer| match s.rows.iter().find(|(k, _)| *k == key_of(i)) {
        Some((_, v)) => assert_eq!((a.status(), &a.body), (200, v), "request {i}"),
        None => assert_eq!(a.status(), 404, "request {i}"),
    };
    for i in 0..50 {
        check(i, answer(&mut tcp, &mut pending).await);
    }
    let m = answer(&mut tcp, &mut pending).await;
    let list: Vec<Option<String>> = serde_json::from_slice(&m.body).unwrap();
    assert_eq!(list, vec![Some(String::from_utf8(s.rows[1].1.clone()).unwrap()), None]);
    for i in 50..100 {
        check(i, answer(&mut tcp, &mut pending).await);
    }
    assert_eq!(answer(&mut tcp, &mut pending).await.status(), 200);
}

/// Damaged copies of a plain GET, each on its own connection and followed by the end of the stream: each is
/// answered or closed, never hangs or panics the server, and a good request is still answered after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_bytes_never_take_the_server_down() {
    // A panic in a connection's task would only end that task: count them.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        default(info)
    }));
    let s = served(ServeConfig::default()).await;
    let good = get(&format!("/v1/keyspaces/ex/keys/{}", s.rows[0].0)).into_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..20 {
        let mut clients = Vec::new();
        for _ in 0..20 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 5 {
                    0 => bytes[at] = next() as u8,
                    1 => bytes.truncate(at.max(1)),
                    2 => bytes.insert(at, [b'\r', b'\n', b' ', b':', 0, 0xff][next() as usize % 6]),
                    3 => bytes.splice(at..at, std::iter::repeat_n(b'a', (next() % 40_000) as usize)).for_each(drop),
                    _ => bytes.extend_from_slice(&good[..(next() as usize % good.len())]),
                }
            }
            let addr = s.addr;
            clients.push(tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.unwrap();
                // The server may answer and close before reading everything: a failed write is an answer.
                let _ = tcp.write_all(&bytes).await;
                let _ = tcp.shutdown().await;
                let mut sink = Vec::new();
                tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut sink))
                    .await
                    .unwrap_or_else(|_| {
                        panic!("round {round}: {:?} held its connection", String::from_utf8_lossy(&bytes))
                    })
                    .ok();
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        assert!(!s.serving.is_finished(), "the server stopped at round {round}");
        assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a panic by round {round}");
    }
    let a = fresh(s.addr, std::str::from_utf8(&good).unwrap()).await;
    assert_eq!((a.status(), &a.body), (200, &s.rows[0].1));
}

/// An idle keep-alive connection of the plain loop is closed once the header timeout passes (a client
/// cannot hold a connection slot by saying nothing), and at a stop, which then does not wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_at_the_header_timeout_and_at_a_stop() {
    let request = |s: &Served| get(&format!("/v1/keyspaces/ex/keys/{}", s.rows[0].0));
    let closes = |mut tcp: TcpStream| async move {
        let mut sink = Vec::new();
        tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut sink)).await.is_ok()
    };

    let short = ServeConfig { header_timeout: Duration::from_millis(200), ..ServeConfig::default() };
    let s = served(short).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(request(&s).as_bytes()).await.unwrap();
    assert_eq!(answer(&mut tcp, &mut Vec::new()).await.status(), 200);
    assert!(closes(tcp).await, "an idle connection outlived the header timeout");

    let long = ServeConfig {
        header_timeout: Duration::from_secs(3600),
        drain_timeout: Duration::from_secs(3600),
        ..ServeConfig::default()
    };
    let mut s = served(long).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(request(&s).as_bytes()).await.unwrap();
    assert_eq!(answer(&mut tcp, &mut Vec::new()).await.status(), 200);
    s.stop.take().unwrap().send(()).unwrap();
    assert!(closes(tcp).await, "an idle connection stayed open through a stop");
    tokio::time::timeout(PATIENCE, &mut s.serving).await.expect("the stop waited for an idle connection").unwrap();
}

/// A head sent a byte at a time, each well within the header timeout: the timeout bounds the whole head,
/// as hyper's does, so the client cannot hold its connection by trickling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trickled_a_byte_at_a_time_is_cut_off_at_the_header_timeout() {
    let limits = ServeConfig { header_timeout: Duration::from_millis(500), ..ServeConfig::default() };
    let s = served(limits).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(b"GET /v1/keyspaces/ex/keys/k HTTP/1.1\r\nX-Slow: ").await.unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = [0u8; 64];
    // Ends when the server closes (a read of 0 or an error) or after PATIENCE; one byte each 100 ms.
    let closed = loop {
        if started.elapsed() > PATIENCE {
            break false;
        }
        if tcp.write_all(b"a").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(_)) => panic!("an answer to half a head"),
            Err(_) => {}
        }
    };
    assert!(closed, "a trickled head held its connection for {PATIENCE:?} past a 500 ms header timeout");
}

/// A request the plain loop does not serve, whose head was half read when the stop began, is handed to
/// hyper after the drain started: it is answered (with `connection: close`), not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_handed_to_hyper_during_a_stop_is_answered() {
    let long = ServeConfig { drain_timeout: Duration::from_secs(3600), ..ServeConfig::default() };
    let mut s = served(long).await;
    let body = format!(r#"["{}"]"#, s.rows[3].0);
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    // A plain GET and half the next head in one write: the GET's answer shows the loop has read both.
    let first = get(&format!("/v1/keyspaces/ex/keys/{}", s.rows[0].0));
    tcp.write_all(format!("{first}POST /v1/keyspaces/ex/mget HTTP/1.1\r\nHost: x\r\n").as_bytes()).await.unwrap();
    let mut pending = Vec::new();
    assert_eq!(answer(&mut tcp, &mut pending).await.status(), 200);
    s.stop.take().unwrap().send(()).unwrap();
    // The listener closes after the drain signal is sent: once a connect is refused, the loop has seen it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while TcpStream::connect(s.addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "the listener stayed open through a stop");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rest = format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    tcp.write_all(rest.as_bytes()).await.unwrap();
    let a = answer(&mut tcp, &mut pending).await;
    assert_eq!(a.status(), 200, "{}", a.head);
    assert!(a.head.contains("\nconnection: close"), "{}", a.head);
    let list: Vec<Option<String>> = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(list, vec![Some(String::from_utf8(s.rows[3].1.clone()).unwrap())]);
    tokio::time::timeout(PATIENCE, &mut s.serving).await.expect("the stop did not end").unwrap();
}
