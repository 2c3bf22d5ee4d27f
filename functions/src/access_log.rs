//! One JSON log line per request (the Lambda): route, status, latency and what the request cost (object
//! GETs, bytes fetched, cache hits/misses, failovers, hedges, checksum failures), in CloudWatch Embedded
//! Metric Format, so CloudWatch Logs turns the same line into metrics with no agent (infra/template.yaml
//! alarms on them). Each line's cost is that request's own, exact under any concurrency. Keys are not
//! logged.

use std::io::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use cairn_shared::cost::Counters;
use serde_json::{Value, json};

/// Where finished lines go: stdout in the Lambda (its runtime ships stdout to CloudWatch Logs).
pub type Sink = Arc<dyn Fn(String) + Send + Sync>;

pub fn stdout_sink() -> Sink {
    Arc::new(|line: String| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    })
}

/// The metrics each line carries, with their CloudWatch units.
pub const EMF_METRICS: [(&str, &str); 11] = [
    ("Requests", "Count"),
    ("Errors", "Count"),
    ("ClientErrors", "Count"),
    ("Latency", "Milliseconds"),
    ("ObjectGets", "Count"),
    ("BytesFetched", "Bytes"),
    ("CacheHits", "Count"),
    ("CacheMisses", "Count"),
    ("Failovers", "Count"),
    ("Hedges", "Count"),
    ("ChecksumFailures", "Count"),
];

/// What one request did.
pub struct RequestRecord<'a> {
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub cost: Counters,
}

/// The log line for `r`: its fields, plus the `_aws` envelope naming which of them are metrics, under the
/// dimension sets {FunctionName} and {FunctionName, Route}.
pub fn emf_line(r: &RequestRecord, function: &str, namespace: &str, now_ms: u64) -> Value {
    let c = &r.cost;
    let metrics: Vec<Value> = EMF_METRICS.iter().map(|(name, unit)| json!({ "Name": name, "Unit": unit })).collect();
    json!({
        "_aws": {
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"], ["FunctionName", "Route"]],
                "Metrics": metrics,
            }],
        },
        "level": "INFO",
        "target": "cairn::access",
        "message": "request",
        "FunctionName": function,
        "Route": r.route,
        "method": r.method,
        "status": r.status,
        "latency_us": r.latency_us,
        "Requests": 1,
        "Errors": u8::from(r.status >= 500),
        "ClientErrors": u8::from((400..500).contains(&r.status)),
        "Latency": r.latency_us as f64 / 1000.0,
        "ObjectGets": c.object_gets,
        "BytesFetched": c.bytes_fetched,
        "CacheHits": c.cache_hits,
        "CacheMisses": c.cache_misses,
        "Failovers": c.failovers,
        "Hedges": c.hedges,
        "ChecksumFailures": c.checksum_failures,
    })
}

/// What the access-log middleware needs: where lines go, and how they are named.
#[derive(Clone)]
pub struct AccessLog {
    pub sink: Sink,
    function: Arc<str>,
    namespace: Arc<str>,
}

impl AccessLog {
    /// Lines named after the running function (`AWS_LAMBDA_FUNCTION_NAME`, else `cairn-query`).
    pub fn new(sink: Sink) -> Self {
        let function = std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "cairn-query".into());
        AccessLog { sink, function: function.into(), namespace: cairn_shared::config::metrics_namespace().into() }
    }
}

pub async fn log_request(State(log): State<AccessLog>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    // This request's own cost, whatever else runs at the same time (cairn_shared::cost).
    let (response, cost) = cairn_shared::cost::measure(next.run(req)).await;
    let record = RequestRecord {
        method: method.as_str(),
        route: &route,
        status: response.status().as_u16(),
        latency_us: started.elapsed().as_micros() as u64,
        cost,
    };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    (log.sink)(emf_line(&record, &log.function, &log.namespace, now_ms).to_string());
    response
}
