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
