"""README "Run the service: a trial on one machine", step by step against the same binaries
(Tansu, osmem) on free ports: demo world → produce the directory → run with
pipeline/data/service.toml → /healthz → the analyst CLI and frames read what it wrote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from pipeline.analyst.explore import alerts_frame, events_frame
from pipeline.cli.main import main
from pipeline.config import load_settings
from tests.integration.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TRIAL = ROOT / "pipeline" / "data" / "service.toml"
HASH_KEY = "trial-token-hash-key-0123456789abcdef0123456789"


def _healthz(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
        return json.loads(answer.read())


def test_the_readme_trial_runs_as_written(kafka_bootstrap: str, osmem_clone: Any, tmp_path: Path,
                                          monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setenv("TOKENWATCH_TOKEN_HASH_KEY", HASH_KEY)
    topic, port = f"trial-{uuid.uuid4().hex[:8]}", free_port()
    config = tmp_path / "service.toml"  # the trial file, pointed at this test's servers and topic
    config.write_text(
        TRIAL.read_text().replace("127.0.0.1:9092", kafka_bootstrap).replace("http://127.0.0.1:9200", osmem_clone.url)
        .replace("tokenwatch.events", topic).replace("metrics_port = 9464", f"metrics_port = {port}")
        .replace('group_id = "tokenwatch-trial"', f'group_id = "{topic}"')
        + f'\n[kafka.topics]\ninput = ["{topic}"]\nalerts = "{topic}.alerts"\ndead_letter = "{topic}.dlq"\n'
        f'revocations = "{topic}.revocations"\nchangelog_prefix = "{topic}.changelog"\n'
    )
    out = tmp_path / "demo-output"
    assert main(["demo", "--size", "20", "--duration", "6h", "--seed", "5", "--output-dir", str(out)]) == 0
    assert main(["produce", "--input", str(out / "events"), "--topic", topic, "--bootstrap", kafka_bootstrap,
                 "--create-topics", "3"]) == 0
    capsys.readouterr()
    expected_alerts = len((out / "alerts.jsonl").read_bytes().splitlines())

    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY}
    log = tmp_path / "service.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config)],
                                cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        health: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                health = _healthz(port)
            except OSError:
                health = {}
            if health.get("alerts", 0) >= expected_alerts:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        assert health.get("healthy") is True and sorted(health["partitions"]) == [0, 1, 2], health
        assert health["alerts"] >= expected_alerts, (health, log.read_text()[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]

    assert main(["alerts", "list", "--config", str(config), "--json", "--limit", "1000"]) == 0
    listed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    settings = load_settings(config)
    assert len(listed) == health["alerts"] == len(alerts_frame(settings))
    assert len(events_frame(settings=settings)) > 1000  # the lineage timeline and map have data
