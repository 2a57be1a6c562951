#!/usr/bin/env python3
"""The exporter a user might write instead: Python's prometheus_client.

A custom collector that, on every scrape, fetches the pool's three
documents (status, health and native metrics, concurrently as the Rust
exporter does), exports every connection as the same families and labels
(`endpoint`, `connection_id`), and passes the native text through. It is
the peer column of scripts/bench-wrk.sh, run there in a virtualenv:

    python3 -m venv target/bench/venv
    target/bench/venv/bin/pip install prometheus_client
    target/bench/venv/bin/python benches/python_peer.py POOL_URL PORT

It serves /metrics on 127.0.0.1:PORT with prometheus_client's own HTTP
server (which gzips when asked, as the Rust exporter does), with the
process collector the library registers by default.
"""

import json
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import start_http_server
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read()


class PoolCollector(Collector):
    def __init__(self, base):
        self.base = base.rstrip("/")
        self.executor = ThreadPoolExecutor(3)

    def collect(self):
        docs = self.executor.map(
            fetch,
            [f"{self.base}/status/connections", f"{self.base}/healthz", f"{self.base}/metrics"],
        )
        status_body, health_body, native = list(docs)
        status = json.loads(status_body)
        health = json.loads(health_body)
        endpoint = status.get("endpoint", "")
        yield GaugeMetricFamily("secure_channel_up", "1 if the pool answered.", value=1)
        active = GaugeMetricFamily(
            "secure_channel_pool_active_connections", "Open connections.", labels=["endpoint"]
        )
        active.add_metric([endpoint], status.get("active_connections", 0))
        yield active
        errors = CounterMetricFamily(
            "secure_channel_connection_errors", "Errors per connection.",
            labels=["endpoint", "connection_id"],
        )
        reconnects = CounterMetricFamily(
            "secure_channel_connection_reconnects", "Reconnects per connection.",
            labels=["endpoint", "connection_id"],
        )
        p95 = GaugeMetricFamily(
            "secure_channel_connection_p95_latency_seconds", "p95 latency per connection.",
            labels=["endpoint", "connection_id"],
        )
        last = GaugeMetricFamily(
            "secure_channel_connection_last_activity_timestamp_seconds",
            "Last activity per connection.",
            labels=["endpoint", "connection_id"],
        )
        for conn in status.get("connections", []):
            labels = [endpoint, str(conn["connection_id"])]
            errors.add_metric(labels, conn.get("errors", 0))
            reconnects.add_metric(labels, conn.get("reconnects", 0))
            if conn.get("p95_latency_ms") is not None:
                p95.add_metric(labels, conn["p95_latency_ms"] / 1000.0)
            activity = conn.get("last_activity")
            if isinstance(activity, dict):
                last.add_metric(
                    labels,
                    activity["secs_since_epoch"] + activity["nanos_since_epoch"] / 1e9,
                )
        yield from (errors, reconnects, p95, last)
        healthy = GaugeMetricFamily(
            "secure_channel_pool_healthy", "1 if the pool says it is healthy.", labels=["endpoint"]
        )
        healthy.add_metric([endpoint], 1 if health.get("pool_healthy") else 0)
        yield healthy
        # The native text passed through, as prometheus_client can: parsed
        # into families and re-encoded.
        yield from text_string_to_metric_families(native.decode("utf-8", "replace"))


def main():
    base, port = sys.argv[1], int(sys.argv[2])
    collector = PoolCollector(base)
    REGISTRY.register(collector)
    server, thread = start_http_server(port, addr="127.0.0.1")
    print(f"listening address=127.0.0.1:{port}", file=sys.stderr, flush=True)
    thread.join()


if __name__ == "__main__":
    main()
