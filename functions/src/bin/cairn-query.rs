//! The query Lambda: built once per execution environment (config, store client, caches), then the same
//! router as `cairn serve` answers function URL events. Caches survive warm invocations.

use std::sync::Arc;
use std::time::Instant;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::store::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    cairn_functions::telemetry::init(true);
    let t0 = Instant::now();
    let url =
        std::env::var("CAIRN_STORE").map_err(|_| "CAIRN_STORE must name the store root, e.g. s3://bucket/prefix")?;
    let store = Store::open(&url)?;
    let engine = Arc::new(Engine::new(store, EngineConfig::from_env()?));
    tracing::info!(init_ms = t0.elapsed().as_secs_f64() * 1e3, store = %url, "cairn-query initialised");
    lambda_http::run(cairn_functions::router(engine)).await
}
