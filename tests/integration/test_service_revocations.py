"""Revocations are global: a revocation read on one partition protects every partition.

The IdP's revocation names the user (keyed by subject → one partition), the
gateway's later use names only the token (keyed by token → another partition).
Partition state alone cannot connect them; the revocations topic does. The
benign twin (a token that was not revoked, used the same way on the same
partition) raises nothing.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.kafka.config import producer_kwargs
from pipeline.kafka.topics import ensure_topics
from tests.integration.test_service_run import _config, _es_alerts, _read_topic, _start, _write_config

IP_HOME = "79.200.1.10"


def _line(event_id: str, kind: str, minute: int, token: str, **extra: Any) -> bytes:
    doc: dict[str, Any] = {
        "canonical_version": 1, "event_id": event_id, "kind": kind,
        "time": f"2026-11-23T05:{minute:02d}:00Z", "source": "idp" if kind != "used" else "gateway",
        "tenant": "t", "network": {"ip": IP_HOME, "user_agent": "Mozilla/5.0"},
        "token": {"id": token, "type": "access",
                  "issued_at": "2026-11-23T05:00:00Z", "expires_at": "2026-11-23T06:00:00Z"},
        **extra,
    }
    return orjson.dumps(doc)


def test_revocation_on_one_partition_catches_use_on_another(kafka_bootstrap: str, osmem_clone: Any,
                                                             tmp_path: Path) -> None:
    name = f"rv-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    user = {"subject": {"id": "u-1", "kind": "user"}, "client_id": "portal", "scopes": ["openid"]}
    idp_partition, gateway_partition = 0, 2
    idp_lines = [
        _line("e1", "issued", 0, "tok-stolen", **user),
        _line("e2", "issued", 0, "tok-kept", **user),
        _line("e3", "revoked", 10, "tok-stolen", revocation={"target": "token", "actor": "helpdesk"}, **user),
    ]
    gateway_lines = [  # names only the token: keyed by token, lands elsewhere
        _line("e4", "used", 20, "tok-stolen", outcome={"result": "success"}),
        _line("e5", "used", 20, "tok-kept", outcome={"result": "success"}),
    ]
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    producer = KafkaProducer(**producer_kwargs(kafka))
    for line in idp_lines:
        producer.send(name, key=b"u-1", value=line, partition=idp_partition)
    producer.flush()
    # The gateway lines come later in wall time too, as they would in production.
    proc = _start(config_path, tmp_path / "run.log")
    try:
        revocations = _read_topic(kafka, kafka.topics.revocations, 1)
        assert [orjson.loads(r.value)["event_id"] for r in revocations] == ["e3"]
        for line in gateway_lines:
            producer.send(name, key=b"token", value=line, partition=gateway_partition)
        producer.flush()
        client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
        deadline = time.monotonic() + 30
        sources: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not sources:
            sources = [h["_source"] for h in _es_alerts(client, prefix)]
            time.sleep(0.3)
        time.sleep(2)  # the benign twin was processed with it; give a false alert time to show
        sources = [h["_source"] for h in _es_alerts(client, prefix)]
    finally:
        producer.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, (tmp_path / "run.log").read_text()[-3000:]
    assert [(s["rule"]["id"], s["token"]["id"]) for s in sources] == [
        ("post_revocation_use.after_revocation", "tok-stolen")
    ], (tmp_path / "run.log").read_text()[-3000:]
    assert "e3" in {e["event_id"] for e in sources[0]["evidence"]}
