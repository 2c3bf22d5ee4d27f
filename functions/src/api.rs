//! Routes (docs/API.md is the reference):
//!
//! - `GET  /v1/keyspaces/{ks}/keys/{key}` → 200 the value's bytes; 404 absent; 400 bad keyspace/key
//! - `POST /v1/keyspaces/{ks}/mget` (JSON list of keys, or `{"keys": [...]}`) → JSON list, null if absent
//! - `GET  /v1/keyspaces/{ks}` → version, shards, keys, bytes, cache stats
//! - `GET  /v1/keyspaces` → the published keyspaces
//! - `GET  /v1/health` → liveness and cache stats
//! - `GET  /v1/ready`, `GET /v1/live` → readiness (keyspaces loaded, not draining) and liveness probes
//! - `GET  /v1/openapi.json` → the OpenAPI 3.1 description of all of them (docs/openapi.json)

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use bytes::Bytes;
use cairn_shared::Engine;
use cairn_shared::query::LoadedVersion;
use serde_json::json;

use crate::answer::{engine_error, error, path_error};
use crate::mget::Limits;
use crate::readiness::Readiness;
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
    router_for(engine, Arc::default(), Some(crate::access_log::stdout_sink()), limits, Readiness::ready())
}

/// The API counting its requests into `requests` (which `/metrics` reports), with an access log into `log`
/// if given.
pub fn router_with(engine: Arc<Engine>, requests: Arc<RequestMetrics>, log: Option<crate::access_log::Sink>) -> Router {
    router_for(engine, requests, log, Limits::default(), Readiness::ready())
}

/// [`router_with`], with a deployment's limits.
pub fn router_for(
    engine: Arc<Engine>,
    requests: Arc<RequestMetrics>,
    log: Option<crate::access_log::Sink>,
    limits: Limits,
    readiness: Arc<Readiness>,
) -> Router {
    let exposition = Arc::new(crate::metrics::Exposition::new(engine.clone(), requests.clone()));
    let mut r = routes().layer(axum::middleware::from_fn_with_state(requests, count_request));
    if let Some(sink) = log {
        let log = crate::access_log::AccessLog::new(sink);
        r = r.layer(axum::middleware::from_fn_with_state(log, crate::access_log::log_request));
    }
    r.layer(Extension(exposition)).layer(Extension(limits)).layer(Extension(readiness)).with_state(engine)
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
        .route(ROUTES[7], get(crate::readiness::ready))
        .route(ROUTES[8], get(crate::readiness::live))
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
    match get_value(&engine, &ks, &key).await {
        Ok((value, version)) => value_response(Body::from(value), version),
        Err(response) => response,
    }
}

/// The single-key answer, shared by the router and `cairn serve`'s fast path (server.rs) so both stay
/// byte-for-byte the same: the value and its version header, or the error response.
pub(crate) async fn get_value(engine: &Engine, ks: &str, key: &str) -> Result<(Bytes, Option<HeaderValue>), Response> {
    let found = match engine.get_warm(ks, key, found) {
        Some(warm) => warm,
        None => match engine.keyspace(ks).await {
            Ok(v) => engine.lookup(&v, key).await.map(|value| found(&v, value)),
            Err(e) => Err(e),
        },
    };
    match found {
        Ok(Some(answer)) => Ok(answer),
        Ok(None) => Err(error(StatusCode::NOT_FOUND, "key_not_found", "key not found".into())),
        Err(e) => Err(engine_error(e)),
    }
}

/// A found value with its version's header value.
fn found(v: &LoadedVersion, value: Option<Bytes>) -> Option<(Bytes, Option<HeaderValue>)> {
    Some((value?, version_header(v)))
}

/// The `x-cairn-version` value of `v`, made once per thread and version (not parsed per response, and no
/// reference count shared between threads); None for a version name no header can carry (left out).
fn version_header(v: &LoadedVersion) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u64, Option<HeaderValue>)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((uid, h)) if *uid == v.uid() => h.clone(),
        _ => {
            let h = HeaderValue::from_str(&v.manifest().version).ok();
            *last = Some((v.uid(), h.clone()));
            h
        }
    })
}

/// A 200 answer of `body` with the value's headers.
pub(crate) fn value_response<B>(body: B, version: Option<HeaderValue>) -> Response<B> {
    static VERSION: HeaderName = HeaderName::from_static(VERSION_HEADER);
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.reserve(2);
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Some(version) = version {
        h.insert(VERSION.clone(), version);
    }
    r
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
