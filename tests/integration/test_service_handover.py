"""Two `tokenwatch run` instances in one consumer group: SIGTERM one mid-stream, the
other takes its partitions over, restores their state from the changelog and still
detects an attack whose events straddle the handover; no alert is duplicated.

Also the rebalance commit: the survivor's revoke checkpoint (kafka-python runs the
listener on its IO thread) must commit, not fail.
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics
from pipeline.synthetic.sample import scenario_of, scenarios
from schemas.redaction import make_token_hasher
from tests.integration.test_service_backpressure import _committed
from tests.integration.test_service_run import (
    HASH_KEY,
    KNOWN_FALSE_POSITIVES,
    KNOWN_MISSED,
    SAMPLE,
    _caught,
    _config,
    _es_alerts,
    _read_topic,
    _results,
    _start,
    _write_config,
)

STRADDLING = "refresh-reuse"  # issue, issue, refresh | handover | refresh of the same token again
CUT = 3


def _log(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.startswith(b"{")]


def _owned(path: Path) -> set[int]:
    """Partitions an instance owns now, replayed from its log (eager rebalances revoke all)."""
    owned: set[int] = set()
    for entry in _log(path):
        if entry["message"] in ("partitions revoked", "partitions lost"):
            owned -= {int(p) for p in str(entry["partitions"]).split(",") if p}
        elif entry["message"] == "partition restored":
            owned.add(int(entry["partition"]))
    return owned


def _wait(condition: Any, timeout_s: float, what: str, *logs: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}:\n" + "\n".join(p.read_text()[-2000:] for p in logs))


def test_sigterm_one_of_two_instances_hands_its_partitions_over(kafka_bootstrap: str, osmem_clone: Any,
                                                                 tmp_path: Path) -> None:
    name = f"ho-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    hasher = make_token_hasher(HASH_KEY.encode())
    lines = SAMPLE.read_bytes().splitlines()
    assert all(STRADDLING.encode() in line for line in lines[:CUT + 1])
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    logs = {"a": tmp_path / "a.log", "b": tmp_path / "b.log"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for key, path in logs.items():
            procs[key] = _start(config_path, path)
        _wait(lambda: all(_owned(p) for p in logs.values())
              and _owned(logs["a"]) | _owned(logs["b"]) == {0, 1, 2}
              and not _owned(logs["a"]) & _owned(logs["b"]), 30, "both instances to own partitions", *logs.values())

        assert produce(iter(lines[:CUT]), name, kafka, hash_token=hasher).failed == 0
        [partition] = {r.partition for r in _read_topic(kafka, name, CUT)}
        # Its owner has processed (and checkpointed) the first half of the attack.
        _wait(lambda: (_committed(kafka, name)[partition] or 0) >= CUT, 20, "the first half to be committed",
              *logs.values())
        owner = next(k for k, p in logs.items() if partition in _owned(p))
        survivor = "b" if owner == "a" else "a"
        procs[owner].send_signal(signal.SIGTERM)
        assert procs[owner].wait(timeout=20) == 0, logs[owner].read_text()[-3000:]

        assert produce(iter(lines[CUT:]), name, kafka, hash_token=hasher).failed == 0
        client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and procs[survivor].poll() is None:
            if _caught([h["_source"] for h in _es_alerts(client, prefix)]):
                break
            time.sleep(0.3)
        procs[survivor].send_signal(signal.SIGTERM)
        assert procs[survivor].wait(timeout=20) == 0, logs[survivor].read_text()[-3000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    hits = _es_alerts(client, prefix)
    sources = [h["_source"] for h in hits]
    raised = _results(sources)
    assert raised[STRADDLING] == {"replay.refresh_reuse"}, raised
    for s in scenarios():
        if s.name not in KNOWN_MISSED | KNOWN_FALSE_POSITIVES:
            assert raised[s.name] == set(s.expected), s.name
    ids = [h["_id"] for h in hits]
    assert len(ids) == len(set(ids)) and ids == [s["alert"]["id"] for s in sources]
    pairs = [(scenario_of(s["token"].get("id"), scenarios()).name, s["rule"]["id"]) for s in sources]
    assert len(pairs) == len(set(pairs)), sorted(pairs)

    survivor_log = _log(logs[survivor])
    takeover = [e for e in survivor_log if e["message"] == "partition restored" and e["partition"] == partition]
    assert takeover and takeover[-1]["records"] > 0, "the survivor restored no state of the handed-over partition"
    # The survivor's revoke (when the other left) checkpointed and committed on the rebalance.
    revokes = [e for e in survivor_log if e["message"] == "partitions revoked"]
    assert any(e.get("checkpointed", 0) > 0 for e in revokes), revokes
    for path in logs.values():
        text = path.read_text()
        assert "checkpoint on revoke failed" not in text and "Cannot block" not in text, text[-3000:]
