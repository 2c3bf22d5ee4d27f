//! How the API answers what it cannot: JSON errors with a machine-readable code (also in a header), and
//! engine errors mapped to statuses through their coarse kind.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_shared::{Error, ErrorKind};
use serde_json::json;

use crate::routes::ERROR_HEADER;

pub(crate) fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    let mut r = (status, Json(json!({ "error": code, "message": message }))).into_response();
    r.headers_mut().insert(ERROR_HEADER, HeaderValue::from_static(code));
    r
}

/// Maps engine errors to statuses through their coarse kind.
/// A path that does not decode (not UTF-8 once percent-decoded) names no key or keyspace.
pub(crate) fn path_error(r: PathRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}

/// A query string that does not parse is a request error like any other: JSON, with its code.
pub(crate) fn query_error(r: QueryRejection) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request", r.body_text())
}

pub(crate) fn engine_error(e: Error) -> Response {
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
