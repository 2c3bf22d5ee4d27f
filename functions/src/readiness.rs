//! `GET /v1/ready` and `GET /v1/live`: what a load balancer or Kubernetes asks before sending traffic and
//! before restarting a process. Both answer from one atomic, with no store request, so a probe every second
//! costs nothing.
//!
//! Ready means every keyspace the process was told to serve first (`CAIRN_WARM_KEYSPACES`) has its pointer,
//! manifest top level and manifest groups loaded; a process given none is ready once it listens. After
//! SIGTERM it is not ready again (draining), so the load balancer stops sending while requests in flight
//! finish. Live means the process answers HTTP at all: it never depends on the store, so a store outage
//! does not get every pod restarted.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_shared::Engine;

const STARTING: u8 = 0;
const READY: u8 = 1;
const DRAINING: u8 = 2;

#[derive(Debug)]
pub struct Readiness {
    state: AtomicU8,
    /// Keyspaces not loaded yet (what a not-ready answer names).
    pending: Mutex<Vec<String>>,
}

impl Readiness {
    /// Ready from the start (the Lambda: its init has run before any request).
    pub fn ready() -> Arc<Readiness> {
        Arc::new(Readiness { state: AtomicU8::new(READY), pending: Mutex::default() })
    }

    /// Not ready until [`load`] has loaded `keyspaces` (ready at once when there are none).
    pub fn starting(keyspaces: &[String]) -> Arc<Readiness> {
        let state = if keyspaces.is_empty() { READY } else { STARTING };
        Arc::new(Readiness { state: AtomicU8::new(state), pending: Mutex::new(keyspaces.to_vec()) })
    }

    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) == READY
    }

    /// Not ready for good: the process is stopping.
    pub fn drain(&self) {
        self.state.store(DRAINING, Ordering::Release);
    }

    fn loaded(&self, ks: &str) {
        let mut pending = self.pending.lock().expect("pending keyspaces");
        pending.retain(|k| k != ks);
        if pending.is_empty() {
            let _ = self.state.compare_exchange(STARTING, READY, Ordering::AcqRel, Ordering::Acquire);
        }
    }
}

/// Loads each keyspace in `readiness`'s list (pointer, manifest top level and groups), retrying one that
/// fails (a slow or unreachable store, a keyspace not published yet) every `retry`, until all are loaded.
pub async fn load(engine: Arc<Engine>, readiness: Arc<Readiness>, retry: Duration) {
    let keyspaces = readiness.pending.lock().expect("pending keyspaces").clone();
    for ks in keyspaces {
        loop {
            match engine.load_keyspace(&ks).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(keyspace = %ks, error = %e, "not ready: keyspace not loaded; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        }
        tracing::info!(keyspace = %ks, "keyspace loaded");
        readiness.loaded(&ks);
    }
}

pub async fn ready(Extension(readiness): Extension<Arc<Readiness>>) -> Response {
    let (status, body) = match readiness.state.load(Ordering::Acquire) {
        READY => (StatusCode::OK, serde_json::json!({ "status": "ready" })),
        DRAINING => (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "draining" })),
        _ => {
            let pending = readiness.pending.lock().expect("pending keyspaces").clone();
            (StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({ "status": "starting", "loading": pending }))
        }
    };
    json(status, body)
}

pub async fn live() -> Response {
    json(StatusCode::OK, serde_json::json!({ "status": "live" }))
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(r: &Arc<Readiness>) -> (u16, String) {
        let response = ready(Extension(r.clone())).await;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn starting_then_ready_then_draining_for_good() {
        let r = Readiness::starting(&["a".to_string(), "b".to_string()]);
        assert_eq!(answer(&r).await, (503, r#"{"loading":["a","b"],"status":"starting"}"#.to_string()));
        r.loaded("a");
        assert_eq!(answer(&r).await.0, 503, "b is still loading");
        r.loaded("b");
        assert_eq!(answer(&r).await, (200, r#"{"status":"ready"}"#.to_string()));
        r.drain();
        assert_eq!(answer(&r).await, (503, r#"{"status":"draining"}"#.to_string()));
        r.loaded("b");
        assert!(!r.is_ready(), "a load finishing after the stop does not make it ready again");
        assert!(Readiness::starting(&[]).is_ready(), "nothing to load: ready at once");
    }
}
