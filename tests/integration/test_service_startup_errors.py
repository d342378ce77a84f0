"""`tokenwatch run` start-up failures an operator fixes in a setting: one line naming the
setting, a distinct exit code (pipeline/exit_codes.py), no traceback — against the real
broker and the real OpenSearch-API server (osmem)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pipeline import exit_codes
from tests.integration.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
HASH_KEY = "integration-test-token-hash-key-0123456789"


def _config(path: Path, bootstrap: str, es_url: str, flavour: str = "opensearch") -> Path:
    name = f"startup-{uuid.uuid4().hex[:8]}"
    path.write_text(f"""
[kafka]
bootstrap_servers = ["{bootstrap}"]
group_id = "{name}-group"
request_timeout_ms = 3000
session_timeout_ms = 6000
heartbeat_interval_ms = 1000

[kafka.topics]
input = ["{name}"]
dead_letter = "{name}.dlq"
alerts = "{name}.alerts"
revocations = "{name}.revocations"
changelog_prefix = "{name}.changelog"

[elasticsearch]
hosts = ["{es_url}"]
flavour = "{flavour}"
index_prefix = "{name}"
retry_backoff_s = 0.05
""", encoding="utf-8")
    return path


def _created(config: Path) -> Path:
    """The config, with its input topic created (the service never creates it)."""
    from pipeline.config import load_settings
    from pipeline.kafka.topics import ensure_topics

    ensure_topics(load_settings(config).kafka, 1)
    return config


def _run(config: Path, port: int = 0, **popen: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY,
           "TOKENWATCH_SERVICE__METRICS_PORT": str(port)}
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _finish(proc: subprocess.Popen[str], timeout_s: float = 60.0) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=timeout_s)
    lines = err.splitlines()
    assert not any("Traceback" in line for line in lines), err
    return proc.returncode, [line for line in lines if line.startswith("tokenwatch")]


def test_a_missing_broker_is_one_line_naming_bootstrap_servers(tmp_path: Path, osmem_clone: Any) -> None:
    dead = free_port()
    code, said = _finish(_run(_config(tmp_path / "tw.toml", f"127.0.0.1:{dead}", osmem_clone.url)))
    assert code == exit_codes.KAFKA_UNREACHABLE
    assert said == [f"tokenwatch run: cannot reach Kafka at 127.0.0.1:{dead} (kafka.bootstrap_servers): "
                    "KafkaTimeoutError"]


def test_a_metrics_port_in_use_is_one_line_naming_metrics_port(
    tmp_path: Path, kafka_bootstrap: str, osmem_clone: Any
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, said = _finish(_run(_created(_config(tmp_path / "tw.toml", kafka_bootstrap, osmem_clone.url)), port))
    assert code == exit_codes.PORT_IN_USE
    assert said == [f"tokenwatch run: cannot listen on 127.0.0.1:{port} (service.metrics_host / "
                    "service.metrics_port): Address already in use; another tokenwatch run on this host? "
                    "give each instance its own port (0: any free port)"]


def test_the_wrong_flavour_stops_at_once_with_the_fix(tmp_path: Path, kafka_bootstrap: str, osmem_clone: Any) -> None:
    """osmem speaks the OpenSearch API: the Elasticsearch client's versioned media type gets
    HTTP 406. The service used to retry that forever."""
    config = _created(_config(tmp_path / "tw.toml", kafka_bootstrap, osmem_clone.url, flavour="elasticsearch"))
    code, said = _finish(_run(config))
    assert code == exit_codes.ELASTICSEARCH_REFUSED
    host = osmem_clone.url.rstrip("/")
    assert len(said) == 1 and said[0].startswith(f"tokenwatch run: {host}")
    assert said[0].endswith('refuses the elasticsearch client (HTTP 406 Not Acceptable): the server speaks another '
                            'API; set [elasticsearch] flavour = "opensearch" (elasticsearch.flavour)')


def test_the_flavour_refusal_comes_before_any_kafka_client(tmp_path: Path, osmem_clone: Any) -> None:
    """With no broker at all the refusal is still what is said: the sinks are tried before
    Kafka is (closing just-built Kafka clients let kafka-python's network thread log a
    traceback of its own, seen in CI)."""
    dead = free_port()
    config = _config(tmp_path / "tw.toml", f"127.0.0.1:{dead}", osmem_clone.url, flavour="elasticsearch")
    code, said = _finish(_run(config), timeout_s=30)
    assert code == exit_codes.ELASTICSEARCH_REFUSED
    assert len(said) == 1 and said[0].endswith('set [elasticsearch] flavour = "opensearch" (elasticsearch.flavour)')


def test_sigterm_while_elasticsearch_is_down_at_start_exits_cleanly(tmp_path: Path, kafka_bootstrap: str) -> None:
    proc = _run(_created(_config(tmp_path / "tw.toml", kafka_bootstrap, f"http://127.0.0.1:{free_port()}")))
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    seen = []
    while time.monotonic() < deadline:  # wait until it says it is waiting for the sink
        line = proc.stderr.readline()
        seen.append(line)
        if "sink unavailable at start" in line:
            break
    else:
        raise AssertionError("".join(seen))
    proc.send_signal(signal.SIGTERM)
    code, _ = _finish(proc)
    assert code == exit_codes.OK


def test_a_missing_input_topic_is_refused_and_never_created(
    tmp_path: Path, kafka_bootstrap: str, osmem_clone: Any
) -> None:
    from pipeline.config import load_settings
    from pipeline.kafka.topics import existing_topics

    config = _config(tmp_path / "tw.toml", kafka_bootstrap, osmem_clone.url)
    kafka = load_settings(config).kafka
    code, said = _finish(_run(config))
    assert code == exit_codes.NOT_FOUND
    assert said == [f"tokenwatch run: input topic {kafka.topics.input[0]} does not exist on {kafka_bootstrap} "
                    "(kafka.topics.input); correct the name, or create it: tokenwatch produce --create-topics N"]
    assert kafka.topics.input[0] not in existing_topics(kafka)


def test_state_is_never_restored_onto_another_input_topic(
    tmp_path: Path, kafka_bootstrap: str, osmem_clone: Any
) -> None:
    """The changelog records which input topics it holds the state of: pointed at
    another topic with the same changelog_prefix, the service refuses instead of
    restoring the first topic's tokens onto the second's partitions."""
    from pipeline.cli.main import main
    from pipeline.config import load_settings

    first = _config(tmp_path / "first.toml", kafka_bootstrap, osmem_clone.url)
    kafka = load_settings(first).kafka
    sample = ROOT / "pipeline" / "data" / "sample.jsonl"
    assert main(["produce", "--input", str(sample), "--topic", kafka.topics.input[0],
                 "--bootstrap", kafka_bootstrap, "--create-topics", "1"]) == 0
    proc = _run(first)
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # until a checkpoint wrote state to the changelog
        line = proc.stderr.readline()
        if '"message": "checkpoint"' in line and '"state_records": 0' not in line:
            break
    proc.send_signal(signal.SIGTERM)
    assert _finish(proc)[0] == exit_codes.OK

    other = f"{kafka.topics.input[0]}-other"
    assert main(["produce", "--input", str(sample), "--topic", other, "--bootstrap", kafka_bootstrap,
                 "--create-topics", "1"]) == 0
    second = tmp_path / "second.toml"
    second.write_text(first.read_text().replace(f'input = ["{kafka.topics.input[0]}"]', f'input = ["{other}"]')
                      .replace(f'group_id = "{kafka.group_id}"', f'group_id = "{kafka.group_id}-2"'))
    code, said = _finish(_run(second))
    assert code == exit_codes.CONFIG
    assert said == [f"tokenwatch run: changelog {kafka.topics.changelog('state')} holds the state of input topics "
                    f"[{kafka.topics.input[0]}], not of [{other}] (kafka.topics.input); give these topics their own "
                    "kafka.topics.changelog_prefix, or correct kafka.topics.input"]
