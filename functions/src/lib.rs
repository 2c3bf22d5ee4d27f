//! cairn's HTTP API. One axum [`Router`](axum::Router) over a shared [`Engine`](cairn_shared::Engine):
//! `cairn serve` runs it on a TCP listener, the `cairn-query` Lambda hands it to lambda_http (function URL
//! events), so both answer byte-for-byte the same.

pub mod access_log;
mod answer;
pub mod api;
mod deadline_io;
mod health;
pub mod lambda;
pub mod metrics;
pub mod mget;
mod mget_answer;
mod mget_body;
pub mod openapi;
mod plain_get;
mod prefixed_io;
pub mod readiness;
pub mod request_metrics;
pub mod routes;
pub mod server;
pub mod telemetry;

pub use api::{router, router_for, router_with, router_with_access_log};
#[doc(hidden)]
pub use plain_get::plain_get_head;
