//! `POST /v1/keyspaces/{ks}/mget`: a JSON list of keys (or `{"keys": [...]}`) → a JSON list of values, null
//! where absent. Bounded on every side: the body's size and the time it may take to arrive
//! (`CAIRN_BODY_TIMEOUT` on `cairn serve`), the keys per request, and the answer's size as it leaves — the
//! encoded JSON (`CAIRN_MGET_MAX_BYTES`), and on the Lambda also what the function URL returns: the runtime
//! sends the body as a JSON string, escaped again, and refuses a payload over 6 MB with an opaque 502.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cairn_shared::Engine;
use http_body_util::BodyExt;
use serde::Deserialize;

use crate::answer::{engine_error, error, path_error, query_error};
use crate::routes::{MAX_BODY_BYTES, MAX_MGET_KEYS};

/// The most a function URL returns, buffered: the Lambda response payload, envelope included.
pub const FUNCTION_URL_PAYLOAD: usize = 6 << 20;
/// Room kept in it for the envelope: status, headers, the JSON around the body.
const ENVELOPE: usize = 16 << 10;

/// How a deployment bounds its answers and requests.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Answers go out through a Lambda function URL.
    pub function_url: bool,
    /// A request body must arrive within this (`cairn serve`; the Lambda receives whole events).
    pub body_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
pub(crate) struct MgetQuery {
    /// `base64`: every value as a base64 string. Default: UTF-8 values as strings, others as {"base64": ..}.
    encoding: Option<String>,
}

pub(crate) async fn mget(
    State(engine): State<Arc<Engine>>,
    limits: Option<axum::Extension<Limits>>,
    ks: Result<Path<String>, PathRejection>,
    q: Result<Query<MgetQuery>, QueryRejection>,
    body: axum::body::Body,
) -> Response {
    let limits = limits.map(|l| l.0).unwrap_or_default();
    let (Path(ks), Query(q)) = match (ks, q) {
        (Ok(ks), Ok(q)) => (ks, q),
        (Err(r), _) => return path_error(r),
        (_, Err(r)) => return query_error(r),
    };
    let body = match read_body(body, limits.body_timeout).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // The body is parsed whatever its Content-Type, so `curl -d '["k1","k2"]'` works.
    let keys = match crate::mget_body::MgetBody::parse(&body) {
        Ok(b) if b.count > MAX_MGET_KEYS => {
            let why = format!("{} keys; at most {MAX_MGET_KEYS} per MGET", b.count);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "too_many_keys", why);
        }
        Ok(b) => b.keys,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_body", format!("expected a JSON list of keys: {e}")),
    };
    drop(body);
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
    let values = match engine.mget(&ks, &keys).await {
        Ok(v) => v,
        Err(e) => return engine_error(e),
    };
    let size = crate::mget_answer::size(&values, all_base64);
    let cap = engine.config().mget_max_bytes;
    let too_large = |limit: String| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "response_too_large",
            format!("the answer would be {limit}; ask for fewer keys"),
        )
    };
    if size.json as u64 > cap {
        return too_large(format!("{} bytes, more than the {cap} one MGET answers", size.json));
    }
    if limits.function_url {
        let payload = size.escaped + ENVELOPE;
        if payload > FUNCTION_URL_PAYLOAD {
            return too_large(format!(
                "{payload} bytes as the function URL sends it, more than its {FUNCTION_URL_PAYLOAD}"
            ));
        }
    }
    let encoded = crate::mget_answer::write(&values, all_base64, size.json);
    drop(values);
    let mut r = Json(()).into_response();
    *r.body_mut() = axum::body::Body::from(encoded);
    r
}

/// The body, read within `timeout` and [`MAX_BODY_BYTES`], or the answer that refuses it. A body declared
/// longer than that is refused before it is asked for, so a client that sent `Expect: 100-continue` is
/// not told to upload it.
async fn read_body(body: axum::body::Body, timeout: Option<Duration>) -> Result<Bytes, Response> {
    let too_large =
        || error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", format!("request body over {MAX_BODY_BYTES} bytes"));
    if hyper::body::Body::size_hint(&body).lower() > MAX_BODY_BYTES as u64 {
        return Err(too_large());
    }
    let read = http_body_util::Limited::new(body, MAX_BODY_BYTES).collect();
    let collected = match timeout {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(r) => r,
            Err(_) => {
                let why = format!("the request body did not arrive within {t:?}");
                return Err(error(StatusCode::REQUEST_TIMEOUT, "body_timeout", why));
            }
        },
        None => read.await,
    };
    match collected {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => {
            Err(error(StatusCode::BAD_REQUEST, "invalid_body", format!("the request body could not be read: {e}")))
        }
    }
}
