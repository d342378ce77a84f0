"""`tokenwatch run` checkpoints once its input is caught up (``service.checkpoint_idle_s``), on
the real broker (Tansu): when the traffic pauses, every processed offset is committed and
the alerts reach the sinks flushed only at checkpoints (Elasticsearch's kind) within about a
second, not at the next ``checkpoint_interval_s``. Set to that interval, it is off: nothing
is committed until the periodic or the final checkpoint."""

from __future__ import annotations

import time
import uuid

from kafka import KafkaProducer

from pipeline.cli.demo import DEMO_CONFIG
from pipeline.config import Settings, load_settings
from pipeline.kafka.config import KafkaConfig, producer_kwargs
from pipeline.kafka.produce import produce
from pipeline.service.config import ServiceConfig
from pipeline.sinks.base import MemorySink
from tests.integration.test_service_poison import (
    HASHER,
    PARTITIONS,
    _alerts,
    _committed,
    _next_offsets,
    _service,
    _topics,
)
from tests.integration.test_service_run import SAMPLE, _caught, _config

LONG_S = 120.0  # the periodic checkpoint: never within a test
QUIET_S = 1.0


def _settings(kafka: KafkaConfig, idle_s: float) -> Settings:
    config = ServiceConfig(metrics_port=0, poll_timeout_ms=100, checkpoint_interval_s=LONG_S,
                           checkpoint_records=1_000_000, checkpoint_idle_s=idle_s)
    settings = load_settings(DEMO_CONFIG)
    # The last events of a burst wait in the reorder buffer until their partition has been quiet
    # this long: their records are committed by the idle checkpoint after that.
    engine = settings.engine.model_copy(update={"allowed_lateness_s": QUIET_S})
    return settings.model_copy(update={"kafka": kafka, "service": config, "engine": engine})


def _wait_committed(kafka: KafkaConfig, name: str, want: dict[int, int], timeout_s: float) -> dict[int, int | None]:
    deadline = time.monotonic() + timeout_s
    committed = _committed(kafka, name, PARTITIONS)
    while committed != want and time.monotonic() < deadline:
        time.sleep(0.3)
        committed = _committed(kafka, name, PARTITIONS)
    return committed


def _processed(running: object) -> int:
    states = list(running.service.states.values())  # type: ignore[attr-defined]  # one C call: the loop may add one
    return sum(state.records for state in states)


def test_a_pause_in_the_traffic_commits_every_offset_and_flushes_the_alerts(kafka_bootstrap: str) -> None:
    name = f"idle-{uuid.uuid4().hex[:8]}"
    kafka = _config(kafka_bootstrap, name)
    _topics(kafka, PARTITIONS)
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    half = len(lines) // 2
    assert produce(iter(lines[:half]), name, kafka, hash_token=HASHER).failed == 0
    checkpointed = MemorySink(name="checkpointed", flush_early=False)  # Elasticsearch's kind: flushed at checkpoints
    with _service(_settings(kafka, idle_s=0.3), [checkpointed]) as running:
        first = _next_offsets(kafka, name, half)
        assert _wait_committed(kafka, name, first, 30) == first, running.error
        assert checkpointed.flushes >= 1 and _alerts(checkpointed)
        # A second burst after the pause: committed again, not only the first time.
        assert produce(iter(lines[half:]), name, kafka, hash_token=HASHER).failed == 0
        every = _next_offsets(kafka, name, len(lines))
        assert _wait_committed(kafka, name, every, 30) == every, running.error
        # Every alert of the sample is in the sink flushed only at checkpoints, while it runs.
        assert _caught(_alerts(checkpointed))
        assert running.thread.is_alive(), running.error


def test_a_partition_written_in_transactions_reads_as_caught_up(kafka_bootstrap: str) -> None:
    """A transactional producer (Kafka Connect or Flink exactly-once upstream) leaves a commit
    marker after its records: the high watermark counts it, the consumer never hands it over.
    Taken as lag, it kept the idle checkpoint off for every partition of the member."""
    name = f"idle-tx-{uuid.uuid4().hex[:8]}"
    kafka = _config(kafka_bootstrap, name)
    _topics(kafka, PARTITIONS)
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    options = {**producer_kwargs(kafka), "acks": "all", "enable_idempotence": True, "transactional_id": f"tx-{name}"}
    producer = KafkaProducer(**options)
    try:
        producer.init_transactions()
        producer.begin_transaction()
        for number, line in enumerate(lines):
            producer.send(name, value=line, partition=number % PARTITIONS)
        producer.commit_transaction()
    finally:
        producer.close(timeout=10)
    every = _next_offsets(kafka, name, len(lines))  # the records', not the markers'
    checkpointed = MemorySink(name="checkpointed", flush_early=False)
    with _service(_settings(kafka, idle_s=0.3), [checkpointed]) as running:
        assert _wait_committed(kafka, name, every, 30) == every, running.error
        # (Sent round-robin, not by the key rule: not every attack is caught; what was raised is flushed.)
        assert _alerts(checkpointed) and len(_alerts(checkpointed)) == running.service.counts["alerts"]


def test_an_idle_delay_of_the_checkpoint_interval_waits_for_the_periodic_or_final_checkpoint(
        kafka_bootstrap: str) -> None:
    name = f"idle-off-{uuid.uuid4().hex[:8]}"
    kafka = _config(kafka_bootstrap, name)
    _topics(kafka, PARTITIONS)
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    assert produce(iter(lines), name, kafka, hash_token=HASHER).failed == 0
    every = _next_offsets(kafka, name, len(lines))
    checkpointed = MemorySink(name="checkpointed", flush_early=False)
    with _service(_settings(kafka, idle_s=LONG_S), [checkpointed]) as running:
        deadline = time.monotonic() + 30
        while _processed(running) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processed(running) == len(lines), running.error
        time.sleep(2.0)  # idle, well past the 0.3 s the test above commits within
        assert _committed(kafka, name, PARTITIONS) == dict.fromkeys(range(PARTITIONS))
        assert checkpointed.flushes == 0
    assert _committed(kafka, name, PARTITIONS) == every  # the final checkpoint
    assert _caught(_alerts(checkpointed))
