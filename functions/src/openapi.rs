//! The OpenAPI 3.1 description of the HTTP API (docs/openapi.json), served at `GET /v1/openapi.json`.
//! Written by hand next to the prose of docs/API.md, and kept from drifting by the tests below (every
//! route and method of the router is documented, every documented one is routed) and by schemathesis in
//! the test command (every generated request gets a documented status and a body matching the schema).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub async fn document() -> Response {
    let mut r = OPENAPI.into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use cairn_shared::config::EngineConfig;
    use cairn_shared::stores::Store;
    use tower::ServiceExt;

    use super::OPENAPI;
    use crate::routes::ROUTES;

    fn doc() -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON")
    }

    #[test]
    fn the_document_names_exactly_the_routes() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: BTreeSet<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(documented, ROUTES.iter().copied().collect::<BTreeSet<_>>());
    }

    /// Each documented method is routed (no 405 / no_route), and a method the document leaves out is not.
    #[tokio::test]
    async fn every_documented_method_is_routed_and_no_other() {
        let store = Store::open("memory://openapi-routes").unwrap();
        let router = crate::api::router(Arc::new(cairn_shared::Engine::new(store, EngineConfig::default())));
        let doc = doc();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let uri = path.replace("{ks}", "ks").replace("{key}", "k");
            for method in ["get", "head", "post", "put", "delete"] {
                let m: Method = method.to_uppercase().parse().unwrap();
                let body = if method == "post" { Body::from("[]") } else { Body::empty() };
                let req = Request::builder().method(m).uri(&uri).body(body).unwrap();
                let resp = router.clone().oneshot(req).await.unwrap();
                let routed = resp.status() != StatusCode::METHOD_NOT_ALLOWED
                    && resp.headers().get(crate::routes::ERROR_HEADER).is_none_or(|c| c != "no_route");
                // axum answers HEAD for every GET route.
                let documented = item.get(method).is_some() || (method == "head" && item.get("get").is_some());
                assert_eq!(routed, documented, "{method} {path}: {}", resp.status());
                if let Some(op) = item.get(method) {
                    let status = resp.status().as_u16().to_string();
                    assert!(op["responses"].get(&status).is_some(), "{method} {path} answered undocumented {status}");
                }
            }
        }
    }

    /// Found by schemathesis: a query string or path the extractors refused was answered in plain text,
    /// without the error code header, unlike every other error.
    #[tokio::test]
    async fn a_bad_query_string_or_path_is_a_json_error_with_its_code() {
        let store = Store::open("memory://openapi-rejections").unwrap();
        let router = crate::api::router(Arc::new(cairn_shared::Engine::new(store, EngineConfig::default())));
        for (method, uri) in [
            ("GET", "/v1/health?deep=maybe"),
            ("POST", "/v1/keyspaces/ks/mget?encoding=a&encoding=b"),
            ("GET", "/v1/keyspaces/ks/keys/%FF"),
            ("GET", "/v1/keyspaces/%FF"),
        ] {
            let body = if method == "POST" { Body::from("[]") } else { Body::empty() };
            let req = Request::builder().method(method).uri(uri).body(body).unwrap();
            let resp = router.clone().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(resp.headers().get(crate::routes::ERROR_HEADER).unwrap(), "invalid_request", "{uri}");
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("{uri}: not JSON"));
            assert_eq!(json["error"], "invalid_request");
        }
    }
}
