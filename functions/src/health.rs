//! `GET /v1/health`: what load balancers and probes call, unauthenticated, every few seconds. It answers from
//! what the engine already holds — the versions it serves, how full its caches are — with no store request
//! and a bounded body: `{"status": "ok", ...}`.
//!
//! The per-shard report (every copy of every shard of every keyspace, HEAD or `deep` read each: work
//! proportional to the whole store) is `?shards=true` (with `&deep=true` to verify checksums), and only where
//! an operator enabled it (`CAIRN_DEEP_HEALTH=on`); `cairn health` is the same report from the command line.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_shared::versions::health::{Status, check_version};
use cairn_shared::{Engine, ErrorKind};
use serde::Deserialize;
use serde_json::json;

use crate::answer::{engine_error, error, query_error};

/// Keyspaces a probe's answer lists at most (it says how many there are).
const LISTED: usize = 64;

#[derive(Deserialize, Default)]
pub(crate) struct HealthQuery {
    keyspace: Option<String>,
    #[serde(default)]
    shards: bool,
    #[serde(default)]
    deep: bool,
}

pub(crate) async fn health(
    State(engine): State<Arc<Engine>>,
    q: Result<Query<HealthQuery>, QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(r) => return query_error(r),
    };
    if !(q.shards || q.deep) {
        return probe(&engine);
    }
    if !engine.config().deep_health {
        return error(
            StatusCode::FORBIDDEN,
            "deep_health_disabled",
            "the per-shard report reads every shard of every root; the operator enables it with \
             CAIRN_DEEP_HEALTH=on (or runs `cairn health`)"
                .into(),
        );
    }
    shard_report(&engine, q).await
}

/// The cheap answer: the versions served and the caches' fill, from memory.
fn probe(engine: &Engine) -> Response {
    let served = engine.served();
    let listed: Vec<_> = served
        .iter()
        .take(LISTED)
        .map(|k| json!({ "keyspace": k.keyspace, "version": k.version, "keys": k.keys }))
        .collect();
    let stats = engine.stats();
    let caches: Vec<_> = stats
        .caches
        .iter()
        .map(|c| json!({ "name": c.name, "bytes": c.bytes, "capacity_bytes": c.capacity_bytes }))
        .collect();
    Json(json!({
        "status": "ok",
        "keyspaces_served": served.len(),
        "keyspaces": listed,
        "caches": caches,
    }))
    .into_response()
}

/// GREEN/YELLOW/RED per keyspace (all published keyspaces, or `?keyspace=`), every shard's copies listed;
/// 503 when some keyspace is RED.
async fn shard_report(engine: &Engine, q: HealthQuery) -> Response {
    let names = match q.keyspace {
        Some(k) => vec![k],
        None => match engine.list_keyspaces().await {
            Ok(list) => list,
            Err(e) => return engine_error(e),
        },
    };
    let mut reports = Vec::new();
    let mut status = Status::Green;
    for name in names {
        let ks = match engine.keyspace(&name).await {
            Ok(k) => k,
            // The version the pointer names has lost its manifest: that keyspace is RED, not the request.
            Err(e) if e.kind() == ErrorKind::DataLoss => {
                status = Status::Red;
                reports.push(json!({ "keyspace": name, "status": Status::Red, "error": e.to_string() }));
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
                status = Status::Red;
                reports.push(json!({ "keyspace": name, "status": Status::Red, "error": e.to_string() }));
                continue;
            }
            Err(e) => return engine_error(e),
        };
        // Every layer the version stacks on: a lookup needs them all.
        let report = check_version(&roots, &manifest, q.deep).await;
        status = status.max(report.status);
        reports.push(json!(report));
    }
    let code = if status == Status::Red { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
    (code, Json(json!({ "status": status, "keyspaces": reports, "store": engine.store().url }))).into_response()
}
