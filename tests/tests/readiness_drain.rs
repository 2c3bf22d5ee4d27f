//! Readiness and drain, as a load balancer or Kubernetes sees them: `GET /v1/ready` answers 503 until the
//! keyspaces to serve are loaded (a store that does not answer keeps it there) and 200 after, while
//! `GET /v1/live` answers 200 throughout; a stop (SIGTERM) refuses new connections at once and answers every
//! request already accepted, a slow one included, then the process exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, ServeConfig};
use cairn_shared::stores::Store;
use cairn_tests::fault::FaultyStore;
use cairn_tests::{example_data, ingest, process, read_dataset};

async fn status(client: &reqwest::Client, url: String) -> (u16, String) {
    let r = client.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Polls `cond` every 10 ms for at most 60 s (a bound against hangs, not a timing claim).
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..6000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: not within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_its_keyspaces_load_and_a_stop_answers_what_it_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store").to_str().unwrap()).unwrap();
    ingest(&example_data(), "default", &store, Some(4)).await.unwrap();
    let (key, value) = read_dataset(&example_data()).swap_remove(17);

    let faulty = Arc::new(FaultyStore::new(store.inner.clone(), "\0never", usize::MAX));
    faulty.hang_reads(Some("keyspace=default/")); // the store does not answer
    let engine =
        Arc::new(Engine::new(Store { inner: faulty.clone(), url: store.url.clone() }, EngineConfig::default()));
    let limits = ServeConfig { warm_keyspaces: vec!["default".into()], ..Default::default() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr, serving) = cairn_functions::server::bind_until(engine, "127.0.0.1:0".parse().unwrap(), limits, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let server = tokio::spawn(serving);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}{p}");

    eventually("the keyspace load reaches the store", async || faulty.reads_in_flight() > 0).await;
    let (code, body) = status(&client, url("/v1/ready")).await;
    assert_eq!(code, 503, "not ready while the keyspace loads: {body}");
    assert!(body.contains("starting") && body.contains("default"), "{body}");
    assert_eq!(status(&client, url("/v1/live")).await.0, 200, "live without the store");

    faulty.hang_reads(None);
    eventually("ready once the store answers", async || status(&client, url("/v1/ready")).await.0 == 200).await;

    // A request in flight (its shard read hangs) when the stop comes.
    faulty.hang_reads(Some("/shard="));
    let slow = {
        let (client, url) = (reqwest::Client::new(), url(&format!("/v1/keyspaces/default/keys/{key}")));
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap())
        })
    };
    eventually("the lookup reaches the shard", async || faulty.reads_in_flight() > 0).await;
    stop.send(()).unwrap();
    eventually("new connections are refused", async || tokio::net::TcpStream::connect(addr).await.is_err()).await;
    // A server that did not wait for what is in flight would be done by now (the listener is closed).
    for _ in 0..50 {
        assert!(!server.is_finished(), "the server waits for the request in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    faulty.hang_reads(None);
    let (code, body) = slow.await.unwrap();
    assert_eq!((code, body.as_ref()), (200, value.as_slice()), "the request accepted before the stop is answered");
    server.await.unwrap().unwrap();
}

/// One keep-alive connection's GETs until the server closes it. Returns false when the connection could
/// not be made (the server stopped accepting).
fn client_loop(port: u16, rows: &[(String, Vec<u8>)], ok: &AtomicU64, broken: &AtomicU64) -> bool {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    for (k, v) in rows.iter().cycle().skip(ok.load(Ordering::Relaxed) as usize % rows.len()) {
        if tcp.write_all(format!("GET /v1/keyspaces/default/keys/{k} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).is_err()
        {
            return true; // closed before this request was sent: not accepted
        }
        match read_response(&mut tcp) {
            Response::Whole(200, body) if &body == v => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Response::Whole(code, body) => {
                eprintln!("{k}: {code} {}", String::from_utf8_lossy(&body));
                broken.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Response::NotAccepted => return true,
            Response::Cut => {
                broken.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
    }
    true
}

enum Response {
    Whole(u16, Vec<u8>),
    /// The connection closed before any byte of a response: the request was not taken.
    NotAccepted,
    /// A response that started and did not finish.
    Cut,
}

fn read_response(tcp: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) if buf.is_empty() => return Response::NotAccepted,
            Ok(0) | Err(_) => return Response::Cut,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let code: u16 = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        match tcp.read(&mut chunk) {
            Ok(0) | Err(_) => return Response::Cut,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Response::Whole(code, body)
}

#[test]
fn sigterm_under_load_answers_every_accepted_request_refuses_new_ones_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    let data = example_data();
    let mut served = process::serve(
        tmp.path(),
        &[data.to_str().unwrap(), "--store", store.to_str().unwrap()],
        &[("CAIRN_DRAIN_TIMEOUT", "20s".into())],
    );
    let port: u16 = served.url.rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    let rows = Arc::new(read_dataset(&data));
    let (ok, broken, stopped) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (rows, ok, broken, stopped) = (rows.clone(), ok.clone(), broken.clone(), stopped.clone());
            std::thread::spawn(move || {
                // Reconnects after a close until connecting fails (or the test is over).
                while client_loop(port, &rows, &ok, &broken) && !stopped.load(Ordering::Relaxed) {}
            })
        })
        .collect();
    for _ in 0..6000 {
        if ok.load(Ordering::Relaxed) >= 500 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = ok.load(Ordering::Relaxed);
    assert!(before >= 500, "the load ran ({before} answers)");
    // A request certainly in flight at the signal: its head sent with `Expect: 100-continue`, and the server's
    // "100 Continue" read back (sent once the handler asks for the body), its body not sent yet.
    let (k, v) = &rows[3];
    let body = format!("[\"{k}\"]");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/keyspaces/default/mget HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Expect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        assert_eq!(slow.read(&mut byte).unwrap(), 1, "the server answers the head");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{}", String::from_utf8_lossy(&interim));
    // SAFETY: a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(served.pid() as i32, libc::SIGTERM) }, 0);
    let mut refused = false;
    for _ in 0..6000 {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            refused = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(refused, "new connections are refused after SIGTERM");
    slow.write_all(body.as_bytes()).unwrap();
    match read_response(&mut slow) {
        Response::Whole(200, got) => {
            let want = format!("[{}]", serde_json::to_string(&String::from_utf8_lossy(v)).unwrap());
            assert_eq!(String::from_utf8_lossy(&got), want, "the request in flight at the signal is answered whole");
        }
        Response::Whole(code, got) => panic!("in flight at the signal: {code} {}", String::from_utf8_lossy(&got)),
        _ => panic!("the request in flight at the signal was dropped"),
    }
    let status = served.exit_within(Duration::from_secs(60)).expect("cairn serve exits after SIGTERM");
    stopped.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(status.code(), Some(0), "exit status after a drain");
    assert_eq!(broken.load(Ordering::Relaxed), 0, "every request accepted was answered whole and right");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "no new connection after the stop");
}
