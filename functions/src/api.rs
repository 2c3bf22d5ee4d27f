//! Routes (docs/API.md is the reference):
//!
//! - `GET  /v1/keyspaces/{ks}/keys/{key}` → 200 the value's bytes; 404 absent; 400 bad keyspace/key
//! - `POST /v1/keyspaces/{ks}/mget` (JSON list of keys, or `{"keys": [...]}`) → JSON list, null if absent
//! - `GET  /v1/keyspaces/{ks}` → version, shards, keys, bytes, cache stats
//! - `GET  /v1/keyspaces` → the published keyspaces
//! - `GET  /v1/health` → liveness and cache stats
//! - `GET  /v1/openapi.json` → the OpenAPI 3.1 description of all of them (docs/openapi.json)

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use cairn_shared::Engine;
use serde_json::json;

use crate::answer::{engine_error, error, path_error};
use crate::mget::Limits;
use crate::request_metrics::RequestMetrics;
pub use crate::routes::{ERROR_HEADER, MAX_BODY_BYTES, MAX_MGET_KEYS, ROUTES, VERSION_HEADER};

/// The API without per-request logs (`cairn serve`: at 100k requests/s a log line each costs more than the
/// lookup).
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, Arc::default(), None)
}

/// The Lambda's API: one JSON log line per request on stdout, in CloudWatch Embedded Metric Format, and
/// answers bounded by what a function URL returns.
pub fn router_with_access_log(engine: Arc<Engine>) -> Router {
    let limits = Limits { function_url: true, body_timeout: None };
    router_for(engine, Arc::default(), Some(crate::access_log::stdout_sink()), limits)
}

/// The API counting its requests into `requests` (which `/metrics` reports), with an access log into `log`
/// if given.
pub fn router_with(engine: Arc<Engine>, requests: Arc<RequestMetrics>, log: Option<crate::access_log::Sink>) -> Router {
    router_for(engine, requests, log, Limits::default())
}

/// [`router_with`], with a deployment's limits.
pub fn router_for(
    engine: Arc<Engine>,
    requests: Arc<RequestMetrics>,
    log: Option<crate::access_log::Sink>,
    limits: Limits,
) -> Router {
    let exposition = Arc::new(crate::metrics::Exposition::new(engine.clone(), requests.clone()));
    let mut r = routes().layer(axum::middleware::from_fn_with_state(requests, count_request));
    if let Some(sink) = log {
        let log = crate::access_log::AccessLog::new(sink);
        r = r.layer(axum::middleware::from_fn_with_state(log, crate::access_log::log_request));
    }
    r.layer(Extension(exposition)).layer(Extension(limits)).with_state(engine)
}

fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(ROUTES[0], get(crate::health::health))
        .route(ROUTES[1], get(list_keyspaces))
        .route(ROUTES[2], get(keyspace_info))
        .route(ROUTES[3], get(get_key))
        .route(ROUTES[4], post(crate::mget::mget))
        .route(ROUTES[5], get(crate::openapi::document))
        .route(ROUTES[6], get(crate::metrics::scrape))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no_route", "no such route; see docs/API.md".into()) })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Counts every request the router answers by its route pattern and status.
async fn count_request(
    State(requests): State<Arc<RequestMetrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(crate::request_metrics::UNMATCHED, |p| RequestMetrics::route_index(p.as_str()));
    let response = next.run(req).await;
    requests.record(route, response.status().as_u16(), started.elapsed());
    response
}

async fn get_key(State(engine): State<Arc<Engine>>, p: Result<Path<(String, String)>, PathRejection>) -> Response {
    let Path((ks, key)) = match p {
        Ok(p) => p,
        Err(r) => return path_error(r),
    };
    get_value(&engine, &ks, &key).await
}

/// The single-key answer, shared by the router and `cairn serve`'s fast path (server.rs) so both stay
/// byte-for-byte the same.
pub(crate) async fn get_value(engine: &Engine, ks: &str, key: &str) -> Response {
    let keyspace = match engine.keyspace(ks).await {
        Ok(k) => k,
        Err(e) => return engine_error(e),
    };
    match engine.lookup(&keyspace, key).await {
        Ok(Some(value)) => {
            let mut r = Response::new(axum::body::Body::from(value));
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
            if let Ok(v) = HeaderValue::from_str(&keyspace.manifest.version) {
                h.insert(VERSION_HEADER, v);
            }
            r
        }
        Ok(None) => error(StatusCode::NOT_FOUND, "key_not_found", "key not found".into()),
        Err(e) => engine_error(e),
    }
}

async fn keyspace_info(State(engine): State<Arc<Engine>>, p: Result<Path<String>, PathRejection>) -> Response {
    let Path(ks) = match p {
        Ok(p) => p,
        Err(r) => return path_error(r),
    };
    match engine.info(&ks).await {
        Ok(info) => Json(info).into_response(),
        Err(e) => engine_error(e),
    }
}

async fn list_keyspaces(State(engine): State<Arc<Engine>>) -> Response {
    match engine.list_keyspaces().await {
        Ok(list) => Json(json!({ "keyspaces": list })).into_response(),
        Err(e) => engine_error(e),
    }
}
