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
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use cairn_shared::{Engine, Error, ErrorKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::request_metrics::RequestMetrics;

/// Request bodies above this are refused with 413.
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Keys per MGET.
pub const MAX_MGET_KEYS: usize = 1000;
pub const VERSION_HEADER: &str = "x-cairn-version";
/// Set on every error response to its machine-readable code (also in the JSON body), so clients can tell a
/// missing key from a missing keyspace without parsing the body.
pub const ERROR_HEADER: &str = "x-cairn-error";

/// The API without per-request logs (`cairn serve`: at 100k requests/s a log line each costs more than the
/// lookup).
pub fn router(engine: Arc<Engine>) -> Router {
    router_with(engine, Arc::default(), None)
}

/// The API with one JSON log line per request on stdout, in CloudWatch Embedded Metric Format (the Lambda).
pub fn router_with_access_log(engine: Arc<Engine>) -> Router {
    router_with(engine, Arc::default(), Some(crate::access_log::stdout_sink()))
}

/// The API counting its requests into `requests` (which `/metrics` reports), with an access log into `log`
/// if given.
pub fn router_with(engine: Arc<Engine>, requests: Arc<RequestMetrics>, log: Option<crate::access_log::Sink>) -> Router {
    let exposition = Arc::new(crate::metrics::Exposition::new(engine.clone(), requests.clone()));
    let mut r = routes().layer(axum::middleware::from_fn_with_state(requests, count_request));
    if let Some(sink) = log {
        let log = crate::access_log::AccessLog::new(engine.clone(), sink);
        r = r.layer(axum::middleware::from_fn_with_state(log, crate::access_log::log_request));
    }
    r.layer(Extension(exposition)).with_state(engine)
}

/// Every route, as the OpenAPI document names them (openapi.rs checks the two agree).
pub const ROUTES: [&str; 7] = [
    "/v1/health",
    "/v1/keyspaces",
    "/v1/keyspaces/{ks}",
    "/v1/keyspaces/{ks}/keys/{key}",
    "/v1/keyspaces/{ks}/mget",
    "/v1/openapi.json",
    "/metrics",
];

fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(ROUTES[0], get(health))
        .route(ROUTES[1], get(list_keyspaces))
        .route(ROUTES[2], get(keyspace_info))
        .route(ROUTES[3], get(get_key))
        .route(ROUTES[4], post(mget))
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

fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut r = (status, Json(json!({ "error": code, "message": message }))).into_response();
    r.headers_mut().insert(ERROR_HEADER, HeaderValue::from_static(code));
    r
}

/// Maps engine errors to statuses through their coarse kind.
/// A path that does not decode (not UTF-8 once percent-decoded) names no key or keyspace.
fn path_error(r: PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}

/// A query string that does not parse is a request error like any other: JSON, with its code.
fn query_error(r: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}

fn engine_error(e: Error) -> Response {
    let (status, code) = match (e.root(), e.kind()) {
        (Error::KeyspaceNotFound(_), _) => (StatusCode::NOT_FOUND, "keyspace_not_found"),
        (Error::InvalidKey(_), _) => (StatusCode::BAD_REQUEST, "invalid_key"),
        (Error::InvalidKeyspace { .. }, _) => (StatusCode::BAD_REQUEST, "invalid_keyspace"),
        (Error::TooLarge { .. }, _) => (StatusCode::PAYLOAD_TOO_LARGE, "response_too_large"),
        (_, ErrorKind::InvalidInput) => (StatusCode::BAD_REQUEST, "invalid_request"),
        (_, ErrorKind::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
        (_, ErrorKind::Conflict) => (StatusCode::CONFLICT, "conflict"),
        (_, ErrorKind::Corrupt) => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt_data"),
        (_, ErrorKind::Unavailable) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
        (_, ErrorKind::DataLoss) => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "request failed");
    }
    error(status, code, e.to_string())
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

#[derive(Deserialize)]
#[serde(untagged)]
enum MgetBody {
    List(Vec<String>),
    Object { keys: Vec<String> },
}

#[derive(Deserialize, Default)]
struct MgetQuery {
    /// `base64`: every value as a base64 string. Default: UTF-8 values as strings, others as {"base64": ..}.
    encoding: Option<String>,
}

async fn mget(
    State(engine): State<Arc<Engine>>,
    ks: Result<Path<String>, PathRejection>,
    q: Result<Query<MgetQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (Path(ks), Query(q)) = match (ks, q) {
        (Ok(ks), Ok(q)) => (ks, q),
        (Err(r), _) => return path_error(r),
        (_, Err(r)) => return query_error(r),
    };
    // The body is parsed whatever its Content-Type, so `curl -d '["k1","k2"]'` works.
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(r.status(), "body_too_large", format!("request body over {MAX_BODY_BYTES} bytes"));
        }
        Err(r) => return error(r.status(), "invalid_body", r.body_text()),
    };
    let keys = match serde_json::from_slice::<MgetBody>(&body) {
        Ok(MgetBody::List(k) | MgetBody::Object { keys: k }) => k,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_body", format!("expected a JSON list of keys: {e}")),
    };
    if keys.len() > MAX_MGET_KEYS {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_keys",
            format!("{} keys; at most {MAX_MGET_KEYS} per MGET", keys.len()),
        );
    }
    let all_base64 = match q.encoding.as_deref() {
        None | Some("auto") => false,
        Some("base64") => true,
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_encoding",
                format!("encoding {other:?}: use auto or base64"),
            );
        }
    };
    let b64 = |v: &[u8]| base64::engine::general_purpose::STANDARD.encode(v);
    match engine.mget(&ks, &keys).await {
        Ok(values) => {
            let out: Vec<Value> = values
                .iter()
                .map(|v| match v {
                    None => Value::Null,
                    Some(v) if all_base64 => Value::String(b64(v)),
                    Some(v) => match std::str::from_utf8(v) {
                        Ok(s) => Value::String(s.to_string()),
                        Err(_) => json!({ "base64": b64(v) }),
                    },
                })
                .collect();
            Json(out).into_response()
        }
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

#[derive(Deserialize, Default)]
struct HealthQuery {
    keyspace: Option<String>,
    #[serde(default)]
    deep: bool,
}

/// GREEN/YELLOW/RED per keyspace (all published keyspaces, or `?keyspace=`); `?deep=true` verifies checksums.
/// 200 unless some keyspace is RED (503), so load balancers and monitors can use the status code alone.
async fn health(State(engine): State<Arc<Engine>>, q: Result<Query<HealthQuery>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(r) => return query_error(r),
    };
    if q.deep && !engine.config().deep_health {
        return error(
            StatusCode::FORBIDDEN,
            "deep_health_disabled",
            "deep health reads every shard from every root; the operator enables it with CAIRN_DEEP_HEALTH=on \
             (or runs `cairn health --deep`)"
                .into(),
        );
    }
    let names = match q.keyspace {
        Some(k) => vec![k],
        None => match engine.list_keyspaces().await {
            Ok(list) => list,
            Err(e) => return engine_error(e),
        },
    };
    let mut reports = Vec::new();
    let mut status = cairn_shared::health::Status::Green;
    for name in names {
        let ks = match engine.keyspace(&name).await {
            Ok(k) => k,
            // The version the pointer names has lost its manifest: that keyspace is RED, not the request.
            Err(e) if e.kind() == ErrorKind::DataLoss => {
                status = cairn_shared::health::Status::Red;
                reports.push(json!({ "keyspace": name, "status": status, "error": e.to_string() }));
                continue;
            }
            Err(e) => return engine_error(e),
        };
        let roots = match engine.roots(&ks) {
            Ok(r) => r,
            Err(e) => return engine_error(e),
        };
        let manifest = match engine.full_manifest(&ks).await {
            Ok(m) => m,
            // A manifest group lost or corrupt: that keyspace is RED too.
            Err(e) if matches!(e.kind(), ErrorKind::DataLoss | ErrorKind::Corrupt) => {
                status = cairn_shared::health::Status::Red;
                reports.push(json!({ "keyspace": name, "status": status, "error": e.to_string() }));
                continue;
            }
            Err(e) => return engine_error(e),
        };
        let report = cairn_shared::health::check(&roots, &manifest, q.deep).await;
        status = status.max(report.status);
        reports.push(json!(report));
    }
    let code =
        if status == cairn_shared::health::Status::Red { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (
        code,
        Json(json!({ "status": status, "keyspaces": reports, "store": engine.store().url, "cache": engine.stats() })),
    )
        .into_response()
}
