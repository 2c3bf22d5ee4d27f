//! `cairn serve`: the router on a TCP listener, with TCP_NODELAY and a graceful stop on Ctrl-C/SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::serve::ListenerExt;
use cairn_shared::Engine;
use tokio::net::TcpListener;

/// Binds `addr` (port 0 picks a free port) and returns the bound address with the serving future.
pub async fn bind(
    engine: Arc<Engine>,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, impl std::future::Future<Output = std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = crate::router(engine);
    Ok((local, async move { axum::serve(listener, app).with_graceful_shutdown(shutdown()).await }))
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
