//! A SIGTERM that arrives once `cairn serve` has bound its port stops it, however soon. Found by review: the
//! server began listening for the signal only when its future was first polled, after "serving on" was
//! printed; a process that already handled SIGTERM (`serve FILE` does, while it ingests FILE) swallowed one
//! that came in between, and the server then ran on, deaf to it. (A test binary of its own: it signals
//! its own process.)

use std::sync::Arc;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigterm_between_bind_and_serving_stops_the_server() {
    // As `serve FILE`'s ingest leaves it: SIGTERM handled by the process, so it does not end it.
    let _earlier = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let engine = Arc::new(Engine::new(Store::open(dir.path().to_str().unwrap()).unwrap(), EngineConfig::default()));
    let (_, serving) = cairn_functions::server::bind(engine, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    // SAFETY: raise sends a signal to this process; its handler is tokio's.
    assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
    tokio::time::sleep(Duration::from_millis(100)).await; // the signal is handled before serving starts
    let stopped = tokio::time::timeout(Duration::from_secs(30), serving).await;
    assert!(stopped.is_ok(), "the server did not stop on a SIGTERM that came after it was bound");
}

/// `cairn serve` without FILE lists the store's keyspaces before it serves; a store that does not answer
/// held that listing for its whole timeout, and a SIGINT meanwhile (handled since the start, to be seen by
/// the server later) waited for it, then started the server, which stopped at once with status 0. The
/// listing is stopped now, as FILE's ingest is: status 130.
#[test]
fn a_signal_while_serve_lists_a_store_that_does_not_answer_stops_it_at_once() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let mut child = cairn_tests::process::cairn_command()
        .args(["serve", "--store", "s3://bucket/prefix", "--port", "0"])
        .envs([
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The listing's request arrives: serve is waiting on it (the connection is held, never answered).
    let (_held, _) = silent.accept().unwrap();
    // SAFETY: kill sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not end within 120 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "stopped by the signal, not by the listing ending: {status:?}");
}
