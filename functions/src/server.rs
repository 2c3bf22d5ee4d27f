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
    bind_until(engine, addr, limits, shutdown()).await
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
    let requests = Arc::new(crate::request_metrics::RequestMetrics::default());
    let api = crate::mget::Limits { function_url: false, body_timeout: Some(limits.body_timeout) };
    let readiness = Readiness::starting(&limits.warm_keyspaces);
    tokio::spawn(crate::readiness::load(engine.clone(), readiness.clone(), Duration::from_secs(1)));
    let router = crate::router_for(engine.clone(), requests.clone(), None, api, readiness.clone());
    let app = Arc::new(App { router, engine, requests });
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
    let mut http = hyper::server::conn::http1::Builder::new();
    http.writev(false)
        .max_buf_size(2 << 20)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    // A connection handed to hyper once the stop has begun answers its request with `connection: close`,
    // even one hyper finishes in the first poll, before a graceful shutdown could reach it.
    let mut closing = http.clone();
    closing.keep_alive(false);
    let http = Arc::new((http, closing));
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
            let plain = crate::plain_get::PlainGets {
                engine: &app.engine,
                requests: &app.requests,
                header_timeout,
                draining: draining.clone(),
            };
            if let Some(io) = crate::plain_get::serve(io, plain).await {
                let service = hyper::service::service_fn(|req| app.clone().handle(req));
                let builder = if *draining.borrow() { &http.1 } else { &http.0 };
                hyper_until_drained(builder.serve_connection(TokioIo::new(io), service), draining).await;
            }
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

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
