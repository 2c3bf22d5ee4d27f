//! Slow clients cannot hold the server (issue 29, serving defect 4). Only the request headers had a
//! timeout: a client that trickled a request body, or never read its response, held a connection (one of
//! `CAIRN_MAX_CONNECTIONS`) for ever, and with all of them held no new client got an answer. Now reading a
//! body and writing a response are bounded too (`CAIRN_BODY_TIMEOUT`, `CAIRN_WRITE_TIMEOUT`).

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use cairn_tests::process::{self, text};

fn data(dir: &std::path::Path, n: usize, value: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let body: String = keys.iter().map(|k| format!("{k} {}\n", "v".repeat(value))).collect();
    std::fs::write(dir.join("d.data"), body).unwrap();
    keys
}

fn limits(extra: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CAIRN_MAX_CONNECTIONS", "2".to_string()),
        ("CAIRN_HEADER_TIMEOUT", "2s".to_string()),
        ("CAIRN_BODY_TIMEOUT", "1s".to_string()),
        ("CAIRN_WRITE_TIMEOUT", "1s".to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// A GET that must be answered while the slow clients hold their connections (60 s: far past any timeout
/// above; without them it is never answered).
fn answered(url: &str, key: &str) {
    use std::io::Read;
    let mut s = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(s, "GET /v1/keyspaces/default/keys/{key} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
    let mut head = [0u8; 12];
    let got = s.read_exact(&mut head);
    assert!(got.is_ok(), "a new client got no answer while slow clients held the server: {got:?}");
    assert_eq!(&head, b"HTTP/1.1 200", "{}", text(&head));
}

#[test]
fn clients_that_trickle_a_body_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let keys = data(dir.path(), 100, 10);
    let served = process::serve(dir.path(), &["d.data"], &limits(&[]));
    let addr = served.url.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        let head = "POST /v1/keyspaces/default/mget HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[";
        s.write_all(head.as_bytes()).unwrap();
        slow.push(s); // and nothing more
    }
    std::thread::sleep(Duration::from_millis(200));
    answered(&served.url, &keys[0]);
    drop(slow);
}

#[test]
fn clients_that_never_read_their_response_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // 1,000 values of 32 KiB: a 32 MB answer, far more than the sockets buffer.
    let keys = data(dir.path(), 1_000, 32 << 10);
    let served = process::serve(dir.path(), &["d.data"], &limits(&[("CAIRN_MGET_MAX_BYTES", "64MiB")]));
    let addr = served.url.trim_start_matches("http://").to_string();
    let body = serde_json::to_vec(&keys).unwrap();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let head = format!(
            "POST /v1/keyspaces/default/mget HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&body).unwrap();
        stuck.push(s); // never read
    }
    std::thread::sleep(Duration::from_millis(500));
    answered(&served.url, &keys[0]);
    drop(stuck);
}

/// The same through the plain-GET loop (functions/src/plain_get.rs), which writes its answers itself:
/// pipelined GETs of 32 KiB values whose answers are never read.
#[test]
fn clients_that_never_read_their_plain_gets_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let keys = data(dir.path(), 1_000, 32 << 10);
    let served = process::serve(dir.path(), &["d.data"], &limits(&[]));
    let addr = served.url.trim_start_matches("http://").to_string();
    let gets: String =
        keys.iter().map(|k| format!("GET /v1/keyspaces/default/keys/{k} HTTP/1.1\r\nhost: x\r\n\r\n")).collect();
    let mut stuck = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(&addr).unwrap();
        // Fails once the server gives up on the connection, if it has not all been sent by then.
        let _ = s.write_all(gets.as_bytes());
        stuck.push(s); // never read
    }
    std::thread::sleep(Duration::from_millis(500));
    answered(&served.url, &keys[0]);
    drop(stuck);
}
