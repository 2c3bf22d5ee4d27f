//! One structured log line per request: route, status, latency, and what the request cost (object GETs,
//! bytes fetched, cache hits/misses). Exact in Lambda (one request per instance at a time); under
//! `cairn serve`'s concurrency the cost fields may include overlapping requests. Keys are not logged.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_shared::Engine;

pub async fn log_request(State(engine): State<Arc<Engine>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let before = engine.counters();
    let method = req.method().clone();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    let cost = engine.counters() - before;
    tracing::info!(
        target: "cairn::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        object_gets = cost.object_gets,
        bytes_fetched = cost.bytes_fetched,
        cache_hits = cost.cache_hits,
        cache_misses = cost.cache_misses,
        "request"
    );
    response
}
