//! `GET /metrics`: Prometheus text (0.0.4), or OpenMetrics 1.0 when the scraper asks for it in `Accept` (as
//! Prometheus does), encoded by prometheus-client. Every figure is read at scrape time from counters the
//! request path already keeps ([`RequestMetrics`], the engine's telemetry), so serving the endpoint adds
//! nothing to a lookup. docs/OPERATIONS.md lists the metrics.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_shared::Engine;
use cairn_shared::histogram::HistogramSnapshot;
use cairn_shared::stores::metered::Outcome;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::request_metrics::RequestMetrics;

pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a router's `/metrics` reads: its engine and its request counts.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(engine: Arc<Engine>, requests: Arc<RequestMetrics>) -> Self {
        let mut registry = Registry::with_prefix("cairn");
        registry.register_collector(Box::new(Figures { engine, requests }));
        Exposition { registry }
    }

    /// The exposition text in OpenMetrics (`openmetrics`) or Prometheus text format.
    pub fn encode(&self, openmetrics: bool) -> String {
        let mut out = String::with_capacity(16 << 10);
        let done = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        done.expect("writing to a String cannot fail");
        out
    }
}

pub async fn scrape(Extension(exposition): Extension<Arc<Exposition>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = exposition.encode(openmetrics);
    let kind = if openmetrics { OPENMETRICS } else { PROMETHEUS_TEXT };
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body).into_response()
}

struct Figures {
    engine: Arc<Engine>,
    requests: Arc<RequestMetrics>,
}

impl std::fmt::Debug for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Figures")
    }
}

/// One metric family: its descriptor, then one sample per label set.
fn family<'a, S: EncodeLabelSet + 'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    samples: impl IntoIterator<Item = (S, Sample<'a>)>,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    for (labels, sample) in samples {
        sample.encode(&mut m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family without labels.
fn single(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    kind: MetricType,
    sample: Sample,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, kind)?;
    sample.encode(&mut m)
}

enum Sample<'a> {
    Counter(u64),
    Gauge(i64),
    Histogram(&'a HistogramSnapshot),
}

impl Sample<'_> {
    fn encode(self, m: &mut MetricEncoder) -> Result<(), std::fmt::Error> {
        match self {
            Sample::Counter(v) => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
            Sample::Gauge(v) => m.encode_gauge(&v),
            Sample::Histogram(h) => m.encode_histogram::<NoLabelSet>(h.sum_seconds(), h.count(), &h.bounded(), None),
        }
    }
}

fn gauge(v: u64) -> Sample<'static> {
    Sample::Gauge(v.min(i64::MAX as u64) as i64)
}

impl Collector for Figures {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use MetricType::{Counter, Gauge, Histogram};
        let e = &mut enc;
        e.encode_descriptor("build", "The running build.", None, MetricType::Info)?
            .encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;

        let routes = self.requests.snapshot();
        family(
            e,
            "http_requests",
            "HTTP requests answered, by route (its pattern) and status.",
            None,
            Counter,
            routes.iter().flat_map(|r| {
                r.statuses.iter().map(|(code, n)| ([("route", r.route), ("code", code.as_str())], Sample::Counter(*n)))
            }),
        )?;
        family(
            e,
            "http_request_duration",
            "Time from a request's headers parsed to its response ready, by route.",
            Some(&Unit::Seconds),
            Histogram,
            routes
                .iter()
                .filter(|r| r.latency.count() > 0)
                .map(|r| ([("route", r.route)], Sample::Histogram(&r.latency))),
        )?;

        let t = self.engine.telemetry();
        let caches = || t.caches.iter();
        let per_cache = |f: fn(&cairn_shared::caches::counted::CacheStats) -> Sample<'static>| {
            caches().map(move |c| ([("cache", c.name)], f(c)))
        };
        family(e, "cache_hits", "Lookups a cache answered.", None, Counter, per_cache(|c| Sample::Counter(c.hits)))?;
        family(
            e,
            "cache_misses",
            "Lookups a cache could not answer.",
            None,
            Counter,
            per_cache(|c| Sample::Counter(c.misses)),
        )?;
        family(
            e,
            "cache_evictions",
            "Entries removed to keep a cache within its capacity.",
            None,
            Counter,
            per_cache(|c| Sample::Counter(c.evictions)),
        )?;
        family(e, "cache_entries", "Entries a cache holds.", None, Gauge, per_cache(|c| gauge(c.entries)))?;
        family(
            e,
            "cache",
            "Bytes a cache holds, as weighed.",
            Some(&Unit::Bytes),
            Gauge,
            per_cache(|c| gauge(c.bytes)),
        )?;
        family(
            e,
            "cache_capacity",
            "Bytes a cache may hold.",
            Some(&Unit::Bytes),
            Gauge,
            per_cache(|c| gauge(c.capacity_bytes)),
        )?;

        family(
            e,
            "store_gets",
            "Object-store GET requests, by root and outcome (ok, not_found, error).",
            None,
            Counter,
            t.roots.iter().flat_map(|r| {
                Outcome::ALL.iter().map(move |o| {
                    ([("root", r.root.as_str()), ("outcome", o.label())], Sample::Counter(r.gets[*o as usize]))
                })
            }),
        )?;
        family(
            e,
            "store_heads",
            "Object-store HEAD requests (metadata only), by root and outcome (ok, not_found, error).",
            None,
            Counter,
            t.roots.iter().flat_map(|r| {
                Outcome::ALL.iter().map(move |o| {
                    ([("root", r.root.as_str()), ("outcome", o.label())], Sample::Counter(r.heads[*o as usize]))
                })
            }),
        )?;
        family(
            e,
            "store_get",
            "Bytes object-store GETs returned, by root.",
            Some(&Unit::Bytes),
            Counter,
            t.roots.iter().map(|r| ([("root", r.root.as_str())], Sample::Counter(r.bytes))),
        )?;
        family(
            e,
            "store_get_duration",
            "Object-store GET latency until the response headers, by root.",
            Some(&Unit::Seconds),
            Histogram,
            t.roots.iter().map(|r| ([("root", r.root.as_str())], Sample::Histogram(&r.latency))),
        )?;

        let tiers = || t.tiers.iter();
        for (name, help, f) in [
            (
                "cache_tier_errors",
                "Cache tier reads that failed or timed out (answered by the next tier or the store), and failed writes.",
                (|s| s.errors) as fn(&cairn_shared::caches::tier::TierStats) -> u64,
            ),
            ("cache_tier_poisoned", "Cache tier entries that failed verification (never served; replaced).", |s| {
                s.poisoned
            }),
            ("cache_tier_stored", "Entries written to a cache tier.", |s| s.stored),
        ] {
            family(e, name, help, None, Counter, tiers().map(|(n, s)| ([("tier", *n)], Sample::Counter(f(s)))))?;
        }
        family(
            e,
            "cache_tier_up",
            "Whether a cache tier is usable now (a shared tier: connected; a disk tier: its directory held and listed).",
            None,
            Gauge,
            tiers().map(|(n, s)| ([("tier", *n)], gauge(u64::from(s.connected)))),
        )?;
        family(
            e,
            "cache_tier_writes_in_flight",
            "Cache tier writes started in the background and not done yet.",
            None,
            Gauge,
            tiers().map(|(n, s)| ([("tier", *n)], gauge(s.writing))),
        )?;
        let s = &t.switches;
        for (name, help, v) in [
            ("version_switches_warmed", "Version switches warmed before readers moved to the new version.", s.warmed),
            ("version_switch_warm_timeouts", "Warmed switches cut short by CAIRN_WARM_SWITCH_TIMEOUT.", s.timed_out),
            ("version_switch_warm_keys", "Keys looked up in new versions while warming switches.", s.keys),
        ] {
            single(e, name, help, None, Counter, Sample::Counter(v))?;
        }

        let r = &t.replicas;
        for (name, help, v) in [
            ("replica_reads", "Reads of replicated keyspaces (each may try several copies).", r.reads),
            (
                "replica_failovers",
                "Further copies tried after one failed, timed out or failed verification.",
                r.failovers,
            ),
            ("replica_hedges", "Second requests sent because the first copy was slow.", r.hedges),
            ("replica_hedge_wins", "Reads answered by a copy other than the first tried.", r.hedge_wins),
            ("replica_failed_reads", "Reads no copy could answer (every copy failed or was missing).", r.failed_reads),
            ("checksum_failures", "Bytes read that failed checksum verification (never served).", t.checksum_failures),
            ("engine_object_gets", "Store reads the engine made (pointers, manifests, shards).", t.object_gets),
            ("hot_arena_heap_fallbacks", "Hot shards that found no room in the arena.", t.hot_arena.heap_fallbacks),
        ] {
            single(e, name, help, None, Counter, Sample::Counter(v))?;
        }
        single(
            e,
            "engine_read",
            "Bytes the engine read from stores.",
            Some(&Unit::Bytes),
            Counter,
            Sample::Counter(t.bytes_fetched),
        )?;
        single(e, "hot_shards", "Shards held whole in memory.", None, Gauge, gauge(t.hot_shards))?;
        single(
            e,
            "hot_arena_used",
            "Bytes of the hot-shard arena in use.",
            Some(&Unit::Bytes),
            Gauge,
            gauge(t.hot_arena.used_bytes),
        )?;
        single(
            e,
            "hot_arena_reserved",
            "Bytes of address space reserved for hot shards.",
            Some(&Unit::Bytes),
            Gauge,
            gauge(t.hot_arena.reserved_bytes),
        )?;

        {
            let mut m = e.encode_descriptor(
                "keyspace_version",
                "The version each keyspace is answered from.",
                None,
                MetricType::Info,
            )?;
            for k in &t.keyspaces {
                m.encode_info(&[("keyspace", k.keyspace.as_str()), ("version", k.version.as_str())])?;
            }
        }
        let ks = || t.keyspaces.iter();
        family(
            e,
            "keyspace_pointer_seq",
            "Sequence number of the pointer served (grows with each publish and rollback).",
            None,
            Gauge,
            ks().map(|k| ([("keyspace", k.keyspace.as_str())], gauge(k.seq))),
        )?;
        family(
            e,
            "keyspace_keys",
            "Keys in the version served.",
            None,
            Gauge,
            ks().map(|k| ([("keyspace", k.keyspace.as_str())], gauge(k.keys))),
        )?;
        family(
            e,
            "keyspace",
            "Bytes of the version served.",
            Some(&Unit::Bytes),
            Gauge,
            ks().map(|k| ([("keyspace", k.keyspace.as_str())], gauge(k.bytes))),
        )?;
        Ok(())
    }
}
