"""Scrapes a cairn /metrics endpoint twice, as Prometheus does (OpenMetrics) and as older tools do (text
0.0.4), and parses each with prometheus_client's parsers, which reject malformed expositions. Checks that
the families an operator's queries use are there and that the requests counter is non-zero.
usage: check-metrics.py URL"""
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

url = sys.argv[1]


def scrape(accept):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["Content-Type"], r.read().decode()


kind, om = scrape("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
assert kind.startswith("application/openmetrics-text"), kind
families = {f.name: f for f in parse_openmetrics(om)}
kind, text = scrape(None)
assert kind.startswith("text/plain; version=0.0.4"), kind
text_families = {f.name for f in parse_text(text)}

needed = {
    "cairn_http_requests": "counter",
    "cairn_http_request_duration_seconds": "histogram",
    "cairn_cache_hits": "counter",
    "cairn_cache_evictions": "counter",
    "cairn_store_gets": "counter",
    "cairn_store_get_duration_seconds": "histogram",
    "cairn_replica_failovers": "counter",
    "cairn_replica_hedges": "counter",
    "cairn_checksum_failures": "counter",
    "cairn_hot_shards": "gauge",
    "cairn_keyspace_version": "info",
}
for name, kind in needed.items():
    assert name in families, f"{name} missing from the OpenMetrics exposition"
    assert families[name].type == kind, f"{name} is a {families[name].type}, not a {kind}"
    # The text parser names counters without _total and infos by their sample name.
    assert name in text_families or f"{name}_info" in text_families, f"{name} missing from the text exposition"
served = sum(s.value for s in families["cairn_http_requests"].samples if s.name == "cairn_http_requests_total")
assert served > 0, "no request counted"
versions = [s.labels for s in families["cairn_keyspace_version"].samples]
assert any(v.get("keyspace") == "default" for v in versions), versions
print(f"/metrics: {len(families)} families parse as OpenMetrics and as text 0.0.4; {int(served)} requests counted")
