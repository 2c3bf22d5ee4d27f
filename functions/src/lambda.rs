//! Function URL events (payload format 2.0) in and out as JSON, through the same adapter `lambda_http::run`
//! uses. The binary does not need it (the runtime does this); tests and `cargo lambda invoke`-style
//! debugging call it to exercise the exact event → router → response path in-process.

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent, Service};

/// Runs one function URL event (JSON) through `router`; returns the Lambda response as JSON.
pub async fn handle_event(router: Router, event: serde_json::Value) -> Result<serde_json::Value, String> {
    let request: LambdaRequest = serde_json::from_value(event).map_err(|e| format!("not a function URL event: {e}"))?;
    let mut adapter = Adapter::from(router);
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await
        .map_err(|e| format!("handler failed: {e:?}"))?;
    serde_json::to_value(response).map_err(|e| e.to_string())
}
