//! The query Lambda. Everything is built once per execution environment, before the first event: config
//! from the environment (same `CAIRN_*` variables as the CLI), the store client, the caches, and — for the
//! keyspaces named in `CAIRN_WARM_KEYSPACES` — the pointer and manifest. Then the same router as
//! `cairn serve` answers function URL events, with one JSON log line per request. Caches survive warm
//! invocations.

use std::sync::Arc;
use std::time::Instant;

use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, LambdaConfig, LogConfig};
use cairn_shared::stores::Store;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    cairn_functions::telemetry::init(&LogConfig::from_env()?, true);
    let t0 = Instant::now();
    let lambda = LambdaConfig::from_env()?;
    let store = Store::open(&lambda.store)?;
    let engine = Arc::new(Engine::new(store, EngineConfig::from_env()?));
    let clients_ms = t0.elapsed().as_secs_f64() * 1e3;
    let warm = &lambda.warm_keyspaces;
    for ks in warm {
        if let Err(e) = engine.keyspace(ks).await {
            tracing::warn!(keyspace = %ks, error = %e, "could not preload keyspace");
        }
    }
    tracing::info!(
        init_ms = t0.elapsed().as_secs_f64() * 1e3,
        clients_ms,
        warmed = warm.len(),
        store = %lambda.store,
        "cairn-query initialised"
    );
    lambda_http::run(cairn_functions::router_with_access_log(engine)).await
}
