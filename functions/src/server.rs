//! `cairn serve`: the router on a TCP listener, HTTP/1.1 keep-alive with TCP_NODELAY, each response written
//! as one buffer (no vectored writes: one syscall and no iovec work per small answer), and a graceful stop
//! on Ctrl-C/SIGTERM: it answers not ready (readiness.rs), closes its listener (new connections are
//! refused), lets requests in flight finish within `CAIRN_DRAIN_TIMEOUT`, then returns, so the process exits
//! 0. What one client may hold is bounded
//! ([`ServeConfig`]): its request headers and body must arrive in time, and a response it stops reading
//! ends its connection (deadline_io.rs).
//!
//! A connection starts in the plain-GET loop (plain_get.rs), which answers single-key GETs without hyper,
//! and moves to hyper at the first request that loop does not recognise exactly. Through hyper, single-key
//! GETs still skip the axum router: routing cloned a boxed service per request (an allocation made on one
//! worker and freed on the other: docs/benchmark-notes.md, "Figures behind the code"). Both call the same
//! [`get_value`](crate::api::get_value) as the router's handler; anything the fast paths do not recognise
//! exactly (other methods, percent-escapes, extra segments) goes through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use cairn_shared::Engine;
use cairn_shared::config::ServeConfig;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::readiness::Readiness;

/// Binds `addr` (port 0 picks a free port) and returns the bound address with the serving future.
pub async fn bind(
    engine: Arc<Engine>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    bind_with(engine, addr, ServeConfig::default()).await
}

/// [`bind`] with explicit limits.
pub async fn bind_with(
    engine: Arc<Engine>,
    addr: SocketAddr,
    limits: ServeConfig,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    bind_until(engine, addr, limits, shutdown_signal()).await
}

/// [`bind_with`], stopping (not ready, listener closed, requests in flight drained) when `stop` completes
/// instead of on a signal.
pub async fn bind_until(
    engine: Arc<Engine>,
    addr: SocketAddr,
    limits: ServeConfig,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (app, readiness) = App::new(engine.clone(), &limits);
    tokio::spawn(crate::readiness::load(engine, readiness.clone(), Duration::from_secs(1)));
    Ok((local, serve(listener, app, limits, readiness, stop)))
}

/// A response body: a found value as it is (not boxed), or whatever the router answered.
type Answer = Either<Full<Bytes>, Body>;

struct App {
    engine: Arc<Engine>,
    router: axum::Router,
    /// The router counts what it answers; the fast path counts here, into the same figures.
    requests: Arc<crate::request_metrics::RequestMetrics>,
}

impl App {
    /// The app and the readiness it answers, which the caller loads.
    fn new(engine: Arc<Engine>, limits: &ServeConfig) -> (Arc<App>, Arc<Readiness>) {
        let requests = Arc::new(crate::request_metrics::RequestMetrics::default());
        let api = crate::mget::Limits { function_url: false, body_timeout: Some(limits.body_timeout) };
        let readiness = Readiness::starting(&limits.warm_keyspaces);
        let router = crate::router_for(engine.clone(), requests.clone(), None, api, readiness.clone());
        (Arc::new(App { router, engine, requests }), readiness)
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Result<Response<Answer>, std::convert::Infallible> {
        if req.method() == Method::GET
            && let Some((ks, key)) = single_key(req.uri().path())
        {
            let started = std::time::Instant::now();
            let response = match crate::api::get_value(&self.engine, ks, key).await {
                Ok((value, version)) => crate::api::value_response(Either::Left(Full::new(value)), version),
                Err(response) => response.map(Either::Right),
            };
            self.requests.record(crate::routes::GET_ROUTE, response.status().as_u16(), started.elapsed());
            return Ok(response);
        }
        Ok(self.router.clone().oneshot(req).await?.map(Either::Right))
    }
}

/// `/v1/keyspaces/{ks}/keys/{key}` with both segments non-empty and free of `%` (escaped paths take the
/// router, which decodes them).
fn single_key(path: &str) -> Option<(&str, &str)> {
    let (ks, key) = crate::routes::single_key_segments(path)?;
    let plain = |s: &str| !s.is_empty() && !s.contains(['/', '%']);
    (plain(ks) && plain(key)).then_some((ks, key))
}

async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    limits: ServeConfig,
    readiness: Arc<Readiness>,
    stop: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let http = Arc::new(hyper_builders(limits.header_timeout));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (drain, draining) = tokio::sync::watch::channel(false);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (write_timeout, header_timeout) = (limits.write_timeout, limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let (app, http, draining) = (app.clone(), http.clone(), draining.clone());
        // Taken now, before any drain: the stop waits for this connection (until it drops this) however it
        // is served.
        let in_flight = graceful.watcher();
        tokio::spawn(async move {
            let io = crate::deadline_io::DeadlineIo::new(tcp, write_timeout);
            connection(io, app, http, draining, header_timeout).await;
            drop(in_flight);
            drop(permit);
        });
    }
    let _ = drain.send(true); // plain-GET loops and connections handed to hyper
    readiness.drain();
    drop(listener);
    tracing::info!(grace = ?limits.drain_timeout, "stopping: not ready, listener closed, draining requests in flight");
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace = ?limits.drain_timeout, "requests still in flight after the drain timeout: stopping anyway");
    }
    Ok(())
}

/// The most a connection buffers: a request head longer than this is refused (431), and an answer is
/// written from at most this much buffered at once. With `CAIRN_MAX_CONNECTIONS` connections, heads hold at
/// most that many times this.
pub const MAX_BUFFER: usize = 64 << 10;

/// hyper's connection settings: one for connections it serves until the stop, one for those handed to it
/// once the stop has begun, which answer their request with `connection: close`, even one hyper finishes in
/// the first poll, before a graceful shutdown could reach it.
fn hyper_builders(header_timeout: Duration) -> (http1::Builder, http1::Builder) {
    let mut http = http1::Builder::new();
    http.writev(false)
        .max_buf_size(MAX_BUFFER)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut closing = http.clone();
    closing.keep_alive(false);
    (http, closing)
}

/// One connection's life: the plain-GET loop, then hyper if that loop hands it over.
async fn connection<T>(
    io: T,
    app: Arc<App>,
    http: Arc<(http1::Builder, http1::Builder)>,
    draining: tokio::sync::watch::Receiver<bool>,
    header_timeout: Duration,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let plain = crate::plain_get::PlainGets {
        engine: &app.engine,
        requests: &app.requests,
        header_timeout,
        draining: draining.clone(),
    };
    let Some((io, head_due)) = crate::plain_get::serve(io, plain).await else { return };
    // A head still arriving keeps the deadline it had in the loop, not a new header timeout from hyper; the
    // connection's later heads get hyper's own, as usual.
    let taken = std::sync::atomic::AtomicBool::new(false);
    let service = hyper::service::service_fn(|req| {
        taken.store(true, std::sync::atomic::Ordering::Relaxed);
        app.clone().handle(req)
    });
    let builder = if *draining.borrow() { &http.1 } else { &http.0 };
    let served = hyper_until_drained(builder.serve_connection(TokioIo::new(io), service), draining);
    tokio::pin!(served);
    if let Some(due) = head_due {
        // hyper first on every wake: a head already waiting is read before the deadline is looked at, as
        // hyper itself and the loop do.
        tokio::select! {
            biased;
            _ = &mut served => return,
            _ = tokio::time::sleep_until(due) => {}
        }
        if !taken.load(std::sync::atomic::Ordering::Relaxed) {
            return; // closed, as hyper closes a connection whose head is late
        }
    }
    served.await;
}

/// Serves a connection handed over by the plain-GET loop, shutting it down gracefully once the server
/// drains. hyper closes a connection whose shutdown comes before it has read anything, and this one's
/// request was already read from the socket (it waits in front, prefixed_io.rs): so hyper is polled once
/// first, which takes that request in, and a shutdown then answers it with `connection: close`.
async fn hyper_until_drained<C>(conn: C, mut draining: tokio::sync::watch::Receiver<bool>)
where
    C: hyper_util::server::graceful::GracefulConnection,
{
    tokio::pin!(conn);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(conn.as_mut().poll(cx))).await;
    if first.is_ready() {
        return;
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = draining.wait_for(|d| *d) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// SIGINT or SIGTERM, listened for from this call on, not from the future's first poll: a process that
/// already handles them (`cairn serve FILE` does while it ingests) would otherwise swallow one that arrives
/// before the server runs, and serve on, deaf to it. Must be called within a tokio runtime.
#[cfg(unix)]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut int, mut term) = (
        signal(SignalKind::interrupt()).expect("SIGINT handler"),
        signal(SignalKind::terminate()).expect("SIGTERM handler"),
    );
    async move {
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    }
}

/// Ctrl-C, listened for from the first poll (no earlier handler to race on these platforms).
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::time::Instant;

    const TIMEOUT: Duration = Duration::from_secs(10);

    /// A connection as the server serves it, over an in-memory pipe: the client's end, and the task serving
    /// the other one.
    fn connected() -> (DuplexStream, tokio::task::JoinHandle<()>) {
        let limits = ServeConfig { header_timeout: TIMEOUT, ..ServeConfig::default() };
        let store = cairn_shared::stores::Store::open("memory://large-head").unwrap();
        let (app, _) = App::new(Arc::new(Engine::new(store, Default::default())), &limits);
        let (drain, draining) = tokio::sync::watch::channel(false);
        std::mem::forget(drain); // never drains
        let (client, server) = tokio::io::duplex(64 << 10);
        let http = Arc::new(hyper_builders(TIMEOUT));
        (client, tokio::spawn(connection(server, app, http, draining, TIMEOUT)))
    }

    /// Sends a head of `GET /v1/live` with a header of `pad` bytes, the first 10 KiB now and the rest (past
    /// the 16 KiB the loop reads before it hands the connection to hyper) after `wait`; then its end if `end`.
    async fn large_head(client: &mut DuplexStream, wait: Duration, pad: usize, end: bool) {
        client.write_all(b"GET /v1/live HTTP/1.1\r\nhost: x\r\nx-big: ").await.unwrap();
        client.write_all(&vec![b'a'; 10 << 10]).await.unwrap();
        tokio::time::sleep(wait).await;
        client.write_all(&vec![b'a'; pad - (10 << 10)]).await.unwrap();
        // Read by the loop before the head ends, so that hyper gets it unfinished.
        tokio::time::sleep(Duration::from_millis(1)).await;
        if end {
            client.write_all(b"\r\n\r\n").await.unwrap();
        }
    }

    /// Reads one answer's head and body (by its content-length).
    async fn answer(client: &mut DuplexStream) -> String {
        let mut got = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&got).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len =
                    text.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |n| n.parse().unwrap());
                if got.len() >= end + 4 + len {
                    return text;
                }
            }
            let mut buf = [0u8; 4096];
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before an answer: {text}");
            got.extend_from_slice(&buf[..n]);
        }
    }

    /// A head still arriving when it passes 16 KiB goes from the plain-GET loop to hyper, whose own header
    /// timeout used to start again there: the head could take up to twice `CAIRN_HEADER_TIMEOUT`. It keeps
    /// the deadline it had. Virtual time: the instant the connection ends is exact.
    #[tokio::test(start_paused = true)]
    async fn a_large_head_handed_to_hyper_keeps_its_deadline() {
        let (mut client, served) = connected();
        let started = Instant::now();
        large_head(&mut client, TIMEOUT * 9 / 10, 18 << 10, false).await;
        let _ = client.read_to_end(&mut Vec::new()).await; // until the server lets go of its end
        served.await.unwrap();
        let took = started.elapsed();
        assert!(took >= TIMEOUT && took <= TIMEOUT + Duration::from_millis(5), "closed {took:?} after the head began");
    }

    /// A head whose last bytes are already waiting when the loop hands it over, at its deadline: hyper reads
    /// them before the deadline is looked at, as the loop would have. The wait used to pick between the two
    /// at random, so about half such connections were dropped unanswered.
    #[tokio::test(start_paused = true)]
    async fn a_head_complete_at_its_deadline_is_answered() {
        for round in 0..16 {
            let (mut client, served) = connected();
            client.write_all(b"GET /v1/live HTTP/1.1\r\nhost: x\r\nx-big: ").await.unwrap();
            client.write_all(&vec![b'a'; 10 << 10]).await.unwrap();
            tokio::time::sleep(TIMEOUT).await;
            // More than the loop reads at once: it hands over an unfinished head, the rest in the pipe.
            let mut rest = vec![b'a'; 40 << 10];
            rest.extend_from_slice(b"\r\n\r\n");
            client.write_all(&rest).await.unwrap();
            assert!(answer(&mut client).await.starts_with("HTTP/1.1 200"), "round {round}");
            drop(client);
            served.await.unwrap();
        }
    }

    /// ...and only that head: one that arrives in time is answered, and the connection's next head, sent
    /// after that deadline, gets the whole header timeout again.
    #[tokio::test(start_paused = true)]
    async fn after_a_large_head_the_connection_keeps_the_whole_header_timeout() {
        let (mut client, served) = connected();
        large_head(&mut client, TIMEOUT * 9 / 10, 18 << 10, true).await;
        assert!(answer(&mut client).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(TIMEOUT / 2).await;
        client.write_all(b"GET /v1/live HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        assert!(answer(&mut client).await.starts_with("HTTP/1.1 200"));
        drop(client);
        served.await.unwrap();
    }
}
