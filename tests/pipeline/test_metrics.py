"""Metrics and health endpoints answer over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from pipeline.metrics import Health, MetricsServer, ServiceMetrics


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served():
    metrics = ServiceMetrics()
    state = {"health": Health(True, {"partitions": 3})}
    server = MetricsServer(metrics, lambda: state["health"], "127.0.0.1", 0).start()
    yield metrics, state, server.port
    server.close()


def test_metrics_endpoint_exposes_counters_and_histograms(served) -> None:
    metrics, _, port = served
    metrics.events_in.labels("okta").inc(3)
    metrics.alerts.labels("replay.refresh_reuse").inc()
    metrics.alert_latency.observe(0.12)
    status, body = _get(port, "/metrics")
    text = body.decode()
    assert status == 200
    assert 'tokenwatch_events_in_total{format="okta"} 3.0' in text
    assert 'tokenwatch_alerts_total{rule="replay.refresh_reuse"} 1.0' in text
    assert 'tokenwatch_event_to_alert_seconds_bucket{le="0.25"} 1.0' in text


def test_health_endpoint_reports_503_with_the_reason_when_unhealthy(served) -> None:
    _, state, port = served
    status, body = _get(port, "/healthz")
    assert status == 200 and json.loads(body) == {"healthy": True, "partitions": 3}
    state["health"] = Health(False, {"reason": "elasticsearch unavailable for 45 s"})
    status, body = _get(port, "/healthz")
    assert status == 503 and json.loads(body)["reason"] == "elasticsearch unavailable for 45 s"
    assert _get(port, "/nope")[0] == 404


def test_instances_do_not_share_counters() -> None:
    a, b = ServiceMetrics(), ServiceMetrics()
    a.dead_letters.labels("gateway").inc()
    assert b"tokenwatch_dead_letters_total{format=\"gateway\"} 1.0" not in b.exposition()
