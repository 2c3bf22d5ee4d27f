//! The shared cache tier against a server that misbehaves (found by review): a value far larger than any
//! entry was read whole into memory, a poisoned entry stayed to be read again while the tier
//! rested, a full server (writes refused) also stopped reads, and a server that stopped answering on the
//! tier's connection, while taking new ones, kept the tier dead until the process restarted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use cairn_shared::caches::shared_tier::SharedTier;
use cairn_shared::caches::tier::CacheTier;
use cairn_shared::config::SharedCacheConfig;
use cairn_tests::redis_server::Redis;

fn tier(url: &str) -> Arc<SharedTier> {
    let mut config = SharedCacheConfig::new(url);
    config.max_entry = 64 << 10;
    // Generous: this machine is loaded; only the frozen proxy below is meant to be late.
    config.timeout = Duration::from_secs(2);
    SharedTier::new(config).unwrap()
}

/// Asks until the tier answers `key` with something (bounded).
async fn until_hit(t: &SharedTier, key: &str) -> Option<Bytes> {
    for _ in 0..300 {
        if let Some(v) = t.get(key).await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn until_written(t: &SharedTier) {
    for _ in 0..400 {
        if t.stats().writing == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the tier's writes did not end: {:?}", t.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_poisoned_entry_is_not_kept() {
    let redis = Redis::start();
    let t = tier(&redis.url());
    assert_eq!(redis.command(&[b"SET", b"cairn:1:small", b"ok"]), "+OK");
    assert_eq!(until_hit(&t, "small").await.as_deref(), Some(&b"ok"[..]), "{:?}", t.stats());

    // 1 MiB under a key: sixteen times the largest entry this tier stores (another engine's limit may be
    // larger: left to it, not deleted, not counted as poisoned).
    let huge = vec![b'x'; 1 << 20];
    assert_eq!(redis.command(&[b"SET", b"cairn:1:huge", &huge]), "+OK");
    assert_eq!(t.get("huge").await, None, "a value larger than any entry is a miss");
    assert_eq!(t.stats().poisoned, 0);
    assert_eq!(redis.command(&[b"EXISTS", b"cairn:1:huge"]), ":1");

    // A server error (here a key of another type) rests the tier, but the connection answered: it is kept.
    let connections = || -> u64 {
        let info = redis.command(&[b"INFO", b"stats"]);
        let line = info.lines().find(|l| l.starts_with("total_connections_received:")).unwrap();
        line.split(':').nth(1).unwrap().trim().parse().unwrap()
    };
    assert_eq!(redis.command(&[b"RPUSH", b"cairn:1:list", b"x"]), ":1");
    let before = connections();
    for _ in 0..4 {
        assert_eq!(t.get("list").await, None);
        tokio::time::sleep(Duration::from_millis(1100)).await; // past the tier's rest after a failure
    }
    assert!(t.stats().errors >= 4, "{:?}", t.stats());
    // Beyond the INFO's own connection, none: the tier made no new one.
    assert_eq!(connections() - before, 1, "the tier reconnected after four server errors");
    // Errors that go on (as a client's failed reconnect, such as a refused AUTH, is returned for ever) do
    // get a new connection.
    for _ in 0..10 {
        assert_eq!(t.get("list").await, None);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(connections() - before > 2, "no new connection after fourteen errors in a row");

    // What the caller found wrong is deleted, whether or not its own write follows.
    t.poisoned("small");
    until_written(&t).await;
    assert_eq!(redis.command(&[b"EXISTS", b"cairn:1:small"]), ":0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_still_answers_reads() {
    let redis = Redis::start();
    let t = tier(&redis.url());
    assert_eq!(redis.command(&[b"SET", b"cairn:1:there", b"ok"]), "+OK");
    assert!(until_hit(&t, "there").await.is_some());
    // Writes refused from now on (out of memory, no eviction); reads still work.
    assert_eq!(redis.command(&[b"CONFIG", b"SET", b"maxmemory-policy", b"noeviction"]), "+OK");
    assert_eq!(redis.command(&[b"CONFIG", b"SET", b"maxmemory", b"1"]), "+OK");
    t.put("new", Bytes::from_static(b"refused"));
    until_written(&t).await;
    assert!(t.stats().errors > 0, "the write was refused: {:?}", t.stats());
    assert_eq!(t.get("there").await.as_deref(), Some(&b"ok"[..]), "a refused write does not stop reads");
}

/// A loopback proxy to `port` whose existing connections stop forwarding (both ways) once `frozen` is set;
/// connections made after that forward as usual.
async fn proxy(port: u16, frozen: Arc<AtomicBool>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let frozen = frozen.clone();
            let born_frozen = frozen.load(SeqCst);
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else { return };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pipe = |mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf| {
                    let frozen = frozen.clone();
                    async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 64 << 10];
                        loop {
                            let Ok(n) = from.read(&mut buf).await else { return };
                            if n == 0 {
                                return;
                            }
                            while frozen.load(SeqCst) && !born_frozen {
                                tokio::time::sleep(Duration::from_millis(20)).await; // holds what it read
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let up = tokio::spawn(pipe(cr, sw));
                let down = pipe(sr, cw);
                down.await;
                up.abort();
            });
        }
    });
    me
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stops_answering_on_the_tiers_connection_is_reconnected_to() {
    let redis = Redis::start();
    assert_eq!(redis.command(&[b"SET", b"cairn:1:k", b"v"]), "+OK");
    let frozen = Arc::new(AtomicBool::new(false));
    let port = proxy(redis.port, frozen.clone()).await;
    let mut config = SharedCacheConfig::new(format!("redis://127.0.0.1:{port}"));
    config.timeout = Duration::from_millis(300);
    let t = SharedTier::new(config).unwrap();
    assert!(until_hit(&t, "k").await.is_some(), "{:?}", t.stats());
    frozen.store(true, SeqCst);
    // The tier's connection no longer answers; a new one would. Lookups go on (each late one rests the
    // tier a second); within 30 s one must be answered again.
    let mut answered = false;
    for _ in 0..150 {
        if t.get("k").await.is_some() {
            answered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered, "the tier never made a new connection: {:?}", t.stats());
}
