"""Service metrics (Prometheus) and the health endpoint.

One registry per service instance (not the global default), so tests and
several instances in one process do not share counters. ``serve`` exposes
``/metrics`` for Prometheus and ``/healthz`` for orchestrators: 200 with a
JSON status while healthy, 503 with the reason otherwise.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Event time to alert emission: sub-second for a healthy stream, minutes to days when replaying
# a backlog or a backfill (no observation may fall in +Inf only).
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                   4 * 3600.0, 12 * 3600.0, 86_400.0, 7 * 86_400.0, 30 * 86_400.0)


class ServiceMetrics:
    """The figures SRE watch: throughput per format, rejects, alerts, lag, latency, checkpoints."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("tokenwatch_events_in", "Canonical events read, per format", ["format"], registry=r)
        self.events_skipped = Counter(
            "tokenwatch_events_skipped", "Known-format events of unused types", ["format"], registry=r
        )
        self.dead_letters = Counter("tokenwatch_dead_letters", "Rejected input lines", ["format"], registry=r)
        self.repairs = Counter(
            "tokenwatch_fields_repaired",
            "Fields cut, replaced or dropped instead of refusing the record (the event was kept), per kind",
            ["kind"], registry=r,
        )
        self.alerts = Counter("tokenwatch_alerts", "Alerts emitted, per rule", ["rule"], registry=r)
        self.duplicates = Counter("tokenwatch_duplicate_events", "Redelivered events counted once", registry=r)
        self.late_events = Counter(
            "tokenwatch_late_events",
            "Events older than the watermark (the slowest source still delivering, minus the allowed "
            "lateness) when they arrived; still processed. The engine's late_events, as detect counts them",
            registry=r,
        )
        self.reordered_events = Counter(
            "tokenwatch_reordered_events",
            "Events out of order for their token, family, session or subject, held until the watermark passed them",
            registry=r,
        )
        self.source_lag = Gauge(
            "tokenwatch_source_event_time_lag_seconds",
            "How far each source's latest event time is behind the latest of any source (format/tenant; the "
            "largest over the owned partitions)", ["source"], registry=r,
        )
        self.consumer_lag = Gauge(
            "tokenwatch_consumer_lag", "Records behind the end of each assigned partition",
            ["topic", "partition"], registry=r,
        )
        self.alert_latency = Histogram(
            "tokenwatch_event_to_alert_seconds", "Wall-clock time from the triggering event's time to the alert",
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.checkpoint_seconds = Histogram(
            "tokenwatch_checkpoint_seconds", "Duration of a checkpoint (flush sinks, changelog, commit)",
            registry=r,
        )
        self.tracked_tokens = Gauge("tokenwatch_tracked_tokens", "Tokens held in state", registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Health:
    healthy: bool
    detail: dict[str, Any]


class MetricsServer:
    """A small HTTP server on its own thread; ``close`` stops it."""

    def __init__(self, metrics: ServiceMetrics, health: Callable[[], Health], host: str, port: int) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="tokenwatch-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(metrics: ServiceMetrics, health: Callable[[], Health]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's naming
            if self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics.exposition())
            elif self.path == "/healthz":
                state = health()
                body = json.dumps({"healthy": state.healthy, **state.detail}).encode()
                self._send(200 if state.healthy else 503, "application/json", body)
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return  # scrapes every few seconds would flood the service log

    return Handler
