"""Elasticsearch unavailable when `tokenwatch run` starts: nothing is consumed or
committed, /healthz says 503 with the reason; once a server listens on that port
every expected alert lands exactly once and the offsets are committed."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition
from osmem_server import OsmemServer

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.kafka.config import KafkaConfig, consumer_kwargs
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics
from pipeline.synthetic.sample import scenario_of, scenarios
from schemas.redaction import make_token_hasher
from tests.integration.servers import OutageProxy, free_port
from tests.integration.test_service_run import (
    HASH_KEY,
    KNOWN_FALSE_POSITIVES,
    KNOWN_MISSED,
    SAMPLE,
    _caught,
    _config,
    _es_alerts,
    _results,
    _start,
    _write_config,
)

PARTITIONS = 3


def _health(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:  # not listening yet
        return None


def _wait_paused_on_elasticsearch(proc: subprocess.Popen[bytes], metrics_port: int, log_path: Path,
                                  timeout_s: float) -> None:
    """Wait until /healthz answers 503 paused, naming Elasticsearch as the reason."""
    deadline = time.monotonic() + timeout_s
    health = None
    while time.monotonic() < deadline and proc.poll() is None:
        health = _health(metrics_port)
        if health is not None and health[0] == 503 and health[1].get("paused"):
            break
        time.sleep(0.1)
    assert health is not None and health[0] == 503, (health, log_path.read_text()[-3000:])
    assert "elasticsearch" in health[1]["paused"]


def _committed(kafka: KafkaConfig, topic: str) -> dict[int, int | None]:
    """The group's committed offsets, read without joining the group."""
    consumer = KafkaConsumer(**consumer_kwargs(kafka))
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        consumer.close()


def test_elasticsearch_down_pauses_then_every_alert_lands_once(kafka_bootstrap: str, tmp_path: Path) -> None:
    name = f"bp-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, PARTITIONS)
    lines = SAMPLE.read_bytes().splitlines()
    assert produce(iter(lines), name, kafka, hash_token=make_token_hasher(HASH_KEY.encode())).failed == 0

    es_port, metrics_port = free_port(), free_port()
    es_url = f"http://127.0.0.1:{es_port}"
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, es_url, prefix)
    log_path = tmp_path / "service.log"
    proc = _start(config_path, log_path, {"TOKENWATCH_SERVICE__METRICS_PORT": str(metrics_port),
                                          "TOKENWATCH_SERVICE__BACKPRESSURE_BACKOFF_S": "0.2",
                                          "TOKENWATCH_SERVICE__BACKPRESSURE_BACKOFF_MAX_S": "0.5"})
    server: OsmemServer | None = None
    try:
        # Unhealthy, with the reason, while nothing listens on the Elasticsearch port.
        _wait_paused_on_elasticsearch(proc, metrics_port, log_path, 20)
        time.sleep(1.5)  # a while down: still nothing consumed past, nothing committed
        still = _health(metrics_port)
        assert still is not None and still[0] == 503, still
        assert _committed(kafka, name) == {p: None for p in range(PARTITIONS)}

        server = OsmemServer.start(addr=f"127.0.0.1:{es_port}")
        client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[es_url], flavour="opensearch")))
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if _caught([h["_source"] for h in _es_alerts(client, prefix)]):
                break
            time.sleep(0.3)
        healthy = _health(metrics_port)
        assert healthy is not None and healthy[0] == 200, (healthy, log_path.read_text()[-3000:])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_path.read_text()[-3000:]

        hits = _es_alerts(client, prefix)
        sources = [h["_source"] for h in hits]
        raised = _results(sources)
        for s in scenarios():
            if s.name not in KNOWN_MISSED | KNOWN_FALSE_POSITIVES:
                assert raised[s.name] == set(s.expected), s.name
        ids = [h["_id"] for h in hits]
        assert len(ids) == len(set(ids)) and ids == [s["alert"]["id"] for s in sources]
        pairs = [(scenario_of(s["token"].get("id"), scenarios()).name, s["rule"]["id"]) for s in sources]
        assert len(pairs) == len(set(pairs)), sorted(pairs)
        # Everything consumed is committed once the sink is back (the final checkpoint at SIGTERM).
        committed = _committed(kafka, name)
        assert sum(o or 0 for o in committed.values()) == len([line for line in lines if line.strip()])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if server is not None:
            server.close()


def test_elasticsearch_lost_mid_stream_pauses_commits_and_resumes_without_loss(
    kafka_bootstrap: str, osmem_clone: Any, tmp_path: Path
) -> None:
    """The link to Elasticsearch drops after the first alerts landed: consumption pauses, no
    offset moves while it is down, and once it is back every alert is there exactly once."""
    name = f"bpm-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, PARTITIONS)
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    half = len(lines) // 2
    hasher = make_token_hasher(HASH_KEY.encode())
    proxy = OutageProxy(int(osmem_clone.url.rsplit(":", 1)[1])).up()
    es_url = f"http://127.0.0.1:{proxy.port}"
    metrics_port = free_port()
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, es_url, prefix)
    log_path = tmp_path / "service.log"
    proc = _start(config_path, log_path, {"TOKENWATCH_SERVICE__METRICS_PORT": str(metrics_port),
                                          "TOKENWATCH_SERVICE__BACKPRESSURE_BACKOFF_S": "0.2",
                                          "TOKENWATCH_SERVICE__BACKPRESSURE_BACKOFF_MAX_S": "0.5"})
    direct = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
    try:
        assert produce(iter(lines[:half]), name, kafka, hash_token=hasher).failed == 0
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not _es_alerts(direct, prefix):
            time.sleep(0.2)
        assert _es_alerts(direct, prefix), log_path.read_text()[-3000:]
        _wait_committed(kafka, name, half)

        proxy.down()
        assert produce(iter(lines[half:]), name, kafka, hash_token=hasher).failed == 0
        _wait_paused_on_elasticsearch(proc, metrics_port, log_path, 30)
        held = _committed(kafka, name)
        time.sleep(1.5)  # a while down: nothing committed past what Elasticsearch holds
        assert _committed(kafka, name) == held
        assert sum(o or 0 for o in held.values()) < len(lines)

        proxy.up()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if _caught([h["_source"] for h in _es_alerts(direct, prefix)]):
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.down()

    hits = _es_alerts(direct, prefix)
    sources = [h["_source"] for h in hits]
    raised = _results(sources)
    for s in scenarios():
        if s.name not in KNOWN_MISSED | KNOWN_FALSE_POSITIVES:
            assert raised[s.name] == set(s.expected), s.name
    ids = [h["_id"] for h in hits]
    assert len(ids) == len(set(ids))
    pairs = [(scenario_of(s["token"].get("id"), scenarios()).name, s["rule"]["id"]) for s in sources]
    assert len(pairs) == len(set(pairs)), sorted(pairs)
    assert sum(o or 0 for o in _committed(kafka, name).values()) == len(lines)


def _wait_committed(kafka: KafkaConfig, topic: str, records: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(o or 0 for o in _committed(kafka, topic).values()) >= records:
            return
        time.sleep(0.2)
    raise AssertionError(f"{records} records not committed after {timeout_s}s: {_committed(kafka, topic)}")
