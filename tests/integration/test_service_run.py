"""`tokenwatch run` end to end against real servers (Tansu broker, osmem).

The bundled sample (with the demo configuration) plus garbage lines is
produced to a 3-partition topic; the service runs as a subprocess (TOML config
+ environment for the secrets) and is stopped with SIGTERM once the expected
alerts are in Elasticsearch.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition

from pipeline.cli.demo import DEMO_CONFIG, scenario_report
from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.es.templates import template_name
from pipeline.ingest.normalize import Normalizer
from pipeline.kafka.config import KafkaConfig, KafkaTopics, consumer_kwargs
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics
from pipeline.synthetic.sample import scenario_of, scenarios
from schemas.redaction import make_token_hasher

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "pipeline" / "data" / "sample.jsonl"
HASH_KEY = "integration-test-token-hash-key-0123456789"
GARBAGE = [b"this is not json", b"[1, 2, 3]", b'{"no": "known format"}']


def _config(bootstrap: str, name: str) -> KafkaConfig:
    topics = KafkaTopics(input=[name], dead_letter=f"{name}.dlq", alerts=f"{name}.alerts",
                         revocations=f"{name}.revocations", changelog_prefix=f"{name}.changelog")
    return KafkaConfig(bootstrap_servers=[bootstrap], topics=topics, group_id=f"{name}-group",
                       session_timeout_ms=6000, heartbeat_interval_ms=1000)


def _write_config(path: Path, kafka: KafkaConfig, es_url: str, prefix: str) -> None:
    topics = kafka.topics
    path.write_text(DEMO_CONFIG.read_text() + f"""
[kafka]
bootstrap_servers = ["{kafka.bootstrap_servers[0]}"]
group_id = "{kafka.group_id}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000

[kafka.topics]
input = ["{topics.input[0]}"]
dead_letter = "{topics.dead_letter}"
alerts = "{topics.alerts}"
revocations = "{topics.revocations}"
changelog_prefix = "{topics.changelog_prefix}"

[elasticsearch]
hosts = ["{es_url}"]
flavour = "opensearch"
index_prefix = "{prefix}"
retry_backoff_s = 0.05
""")


def _start(config_path: Path, log_path: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY,
           "TOKENWATCH_SERVICE__METRICS_PORT": "0", "TOKENWATCH_SERVICE__CHECKPOINT_INTERVAL_S": "0.5",
           **(extra_env or {})}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config_path)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _es_alerts(client: Elasticsearch, prefix: str) -> list[dict[str, Any]]:
    index = f"{prefix}-alerts-*"
    try:
        client.indices.refresh(index=index)
        return client.search(index=index, query={"match_all": {}}, size=1000)["hits"]["hits"]
    except Exception:  # noqa: BLE001 -- the index does not exist yet
        return []


def _read_topic(config: KafkaConfig, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = KafkaConsumer(**consumer_kwargs(config, group=False))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions or ())])
        consumer.seek_to_beginning()
        records: list[Any] = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


# What the service does not yet get right on the sample (issue 4 is open):
# - privileged-scope-held-before: the per-CLIENT history of privileged scopes is kept per
#   partition, and the shared client "portal" first held orders:admin in a scenario whose
#   subject hashes to another partition; client-level history needs global state, like
#   revocations. (Per-subject history is fine: a subject's lines share one partition.)
KNOWN_MISSED: set[str] = set()
KNOWN_FALSE_POSITIVES = {"privileged-scope-held-before"}


def _results(sources: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Scenario name -> rule ids raised."""
    all_scenarios = scenarios()
    raised: dict[str, set[str]] = {s.name: set() for s in all_scenarios}
    for source in sources:
        scenario = scenario_of(source["token"].get("id"), all_scenarios)
        raised[scenario.name if scenario else "?"].add(source["rule"]["id"])
    return raised


def _caught(sources: list[dict[str, Any]]) -> bool:
    raised = _results(sources)
    return all(raised[s.name] == set(s.expected) for s in scenarios()
               if s.is_attack and s.name not in KNOWN_MISSED)


def run_until(proc: subprocess.Popen[bytes], done: Callable[[], bool], log_path: Path, wait_s: float = 45,
              stop_s: float = 20) -> None:
    """Let the service run until ``done()`` (or ``wait_s``), then stop it with SIGTERM: it must
    still be running then and exit 0 (its log's tail is the failure message). Killed on any failure."""
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and proc.poll() is None:
            if done():
                break
            time.sleep(0.5)
        assert proc.poll() is None, log_path.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=stop_s) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_run_detects_the_sample_and_dead_letters_garbage(kafka_bootstrap: str, osmem_clone: Any,
                                                          tmp_path: Path) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    hasher = make_token_hasher(HASH_KEY.encode())
    lines = SAMPLE.read_bytes().splitlines()
    summary = produce(iter(lines + GARBAGE), name, kafka, hash_token=hasher)
    assert summary.failed == 0

    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    log_path = tmp_path / "service.log"
    proc = _start(config_path, log_path)
    client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
    run_until(proc, lambda: _caught([h["_source"] for h in _es_alerts(client, prefix)]), log_path)
    hits = _es_alerts(client, prefix)
    sources = [h["_source"] for h in hits]
    text = scenario_report(sources).text
    raised = _results(sources)
    for s in scenarios():
        if s.name in KNOWN_MISSED or s.name in KNOWN_FALSE_POSITIVES:
            continue
        assert raised[s.name] == set(s.expected), text
    # Exactly once: one document per (scenario, rule), its _id the alert id.
    ids = [h["_id"] for h in hits]
    assert ids == [s["alert"]["id"] for s in sources]
    pairs = [(scenario_of(s["token"].get("id"), scenarios()).name, s["rule"]["id"]) for s in sources]
    assert len(pairs) == len(set(pairs)) == len(set(ids)), text

    # The alerts topic holds the same alerts (latest version per key).
    records = _read_topic(kafka, kafka.topics.alerts, len(ids))
    on_topic = {r.key.decode(): orjson.loads(r.value) for r in records}
    assert set(on_topic) == set(ids)

    # Garbage: on the dead-letter topic redacted, with the original's hash, reason and source offset.
    dead = _read_topic(kafka, kafka.topics.dead_letter, len(GARBAGE))
    assert sorted(orjson.loads(r.value)["raw_sha256"] for r in dead) == sorted(
        hashlib.sha256(line).hexdigest() for line in GARBAGE
    )
    for record in dead:
        headers = dict(record.headers)
        assert headers["tokenwatch.value"] == b"redacted"
        assert headers["tokenwatch.reason"]
        assert headers["tokenwatch.source.topic"] == name.encode()
        assert int(headers["tokenwatch.source.offset"]) >= 0

    # ... and in the dead-letters index, with the source offset (raw bytes stay on Kafka only).
    index = f"{template_name(prefix, 'dead_letter')}-*"
    client.indices.refresh(index=index)
    es_dead = client.search(index=index, query={"match_all": {}}, size=100)["hits"]["hits"]
    assert len(es_dead) == len(GARBAGE)
    assert all(h["_source"]["reason"] and h["_source"]["source_record"]["topic"] == name for h in es_dead)
    assert all("raw_original" not in h["_source"] for h in es_dead)

    log_lines = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]
    assert any(entry["message"] == "checkpoint" for entry in log_lines)
    # The service's own count (as /healthz and tokenwatch_alerts report it) equals the alert
    # documents the sinks hold: an alert staged open and closed later is one alert.
    [stopped] = [entry for entry in log_lines if entry["message"] == "stopped"]
    assert stopped["alerts"] == len(ids)


def _wait_for_log(log_path: Path, message: str, count: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        found = [line for line in log_path.read_bytes().splitlines() if f'"message": "{message}"'.encode() in line]
        if len(found) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {count}x {message!r} in the log:\n{log_path.read_text()[-3000:]}")


def test_kill_9_mid_stream_then_restart_gives_each_alert_once(kafka_bootstrap: str, osmem_clone: Any,
                                                              tmp_path: Path, monkeypatch: Any) -> None:
    name = f"svc-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    hasher = make_token_hasher(HASH_KEY.encode())
    assert produce(iter(SAMPLE.read_bytes().splitlines()), name, kafka, hash_token=hasher).failed == 0
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    log_path = tmp_path / "service.log"
    # Small polls and frequent checkpoints, so the kill lands between checkpoints mid-stream.
    monkeypatch.setenv("TOKENWATCH_KAFKA__MAX_POLL_RECORDS", "4")
    monkeypatch.setenv("TOKENWATCH_SERVICE__CHECKPOINT_RECORDS", "4")
    first = _start(config_path, log_path)
    try:
        _wait_for_log(log_path, "checkpoint", 3, first, 30)
        first.kill()  # SIGKILL: no final checkpoint
        first.wait()
        second = _start(config_path, log_path)
        client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and second.poll() is None:
            if _caught([h["_source"] for h in _es_alerts(client, prefix)]):
                break
            time.sleep(0.5)
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, log_path.read_text()[-3000:]
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    sources = [h["_source"] for h in _es_alerts(client, prefix)]
    text = scenario_report(sources).text
    raised = _results(sources)
    for s in scenarios():
        if s.name not in KNOWN_MISSED | KNOWN_FALSE_POSITIVES:
            assert raised[s.name] == set(s.expected), text
    pairs = [(scenario_of(s["token"].get("id"), scenarios()).name, s["rule"]["id"]) for s in sources]
    assert len(pairs) == len(set(pairs)), sorted(pairs)
    restored = [orjson.loads(line) for line in log_path.read_bytes().splitlines()
                if b'"partition restored"' in line]
    assert any(entry["records"] > 0 for entry in restored), "the restart restored no state from the changelog"


def test_the_analyst_tools_read_what_the_service_wrote(kafka_bootstrap: str, osmem_clone: Any, tmp_path: Path,
                                                       capsys: Any) -> None:
    """With the Elasticsearch store ([store] backend = "elasticsearch") and [elasticsearch]
    index_events, `tokenwatch alerts list` and the notebooks' frames read the running
    service's alerts and events (before: an empty table, exit 0, and empty lineage)."""
    from pipeline.analyst.explore import alerts_frame, events_frame
    from pipeline.cli.main import main
    from pipeline.config import load_settings

    name = f"svc-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    hasher = make_token_hasher(HASH_KEY.encode())
    lines = SAMPLE.read_bytes().splitlines()
    assert produce(iter(lines), name, kafka, hash_token=hasher).failed == 0
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    text = config_path.read_text()
    config_path.write_text(text.replace("[elasticsearch]\n", "[elasticsearch]\nindex_events = true\n")
                           + '\n[store]\nbackend = "elasticsearch"\n')
    proc = _start(config_path, tmp_path / "service.log")
    client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and proc.poll() is None:
            if _caught([h["_source"] for h in _es_alerts(client, prefix)]):
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ids = sorted(h["_id"] for h in _es_alerts(client, prefix))
    assert ids

    assert main(["alerts", "list", "--config", str(config_path), "--json", "--limit", "1000"]) == 0
    listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(doc["alert"]["id"] for doc in listed) == ids

    settings = load_settings(config_path)
    client.indices.refresh(index=f"{template_name(prefix, 'event')}-*")
    events = events_frame(settings=settings)
    normalizer = Normalizer(hasher)
    expected = {e.event_id for line in lines for e in normalizer.normalize(line, "x").events}
    assert set(events["event_id"]) == expected
    assert sorted(alerts_frame(settings)["alert_id"]) == ids
