"""One answer under any real arrival order (issue 18), `tokenwatch run` side, against the real
broker: the demo world delivered in event-time order, with each source's usual delay, with Okta
two hours late and as per-format files one after another (``tests.one_answer_world``) is
produced to a 3-partition topic and read by the service (in-process, the Kafka sink); the
alerts topic then holds exactly the alert ids `tokenwatch detect` writes for the same lines, every
injected attack caught, and the service's late-events metric equals what the partitions' engines
counted."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.kafka.config import KafkaConfig, KafkaTopics, consumer_kwargs, producer_kwargs
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics
from pipeline.service.config import ServiceConfig
from pipeline.service.partitions import STATE_STORE
from pipeline.service.runner import Service
from pipeline.sinks.kafka import KafkaSink
from pipeline.synthetic.world.score import score
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY
from tests.one_answer_world import DELIVERIES, deliver, detect, enricher, settings, world

HASHER = make_token_hasher(TEST_HASH_KEY)
PARTITIONS = 3


class _AckedProducer(KafkaProducer):
    """Notes each partition's acknowledged end offset (Tansu reports end offsets short)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ends: dict[int, int] = {}
        self._lock = threading.Lock()

    def _ack(self, metadata: Any) -> None:
        with self._lock:
            self.ends[metadata.partition] = max(self.ends.get(metadata.partition, 0), metadata.offset + 1)

    def send(self, *args: Any, **kwargs: Any) -> Any:
        return super().send(*args, **kwargs).add_callback(self._ack)


class _DrainedService(Service):
    """The service, setting ``drained`` once every produced offset is committed (nothing of the
    input is left in an engine's reorder buffer: a checkpoint commits only below it)."""

    def __init__(self, *args: Any, ends: dict[int, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drained = threading.Event()
        committed: dict[int, int] = {}
        commit = self.consumer.commit

        def noting_commit(offsets: Any = None) -> None:
            commit(offsets)
            for tp, meta in (offsets or {}).items():
                committed[tp.partition] = getattr(meta, "offset", meta)
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                self.drained.set()

        self.consumer.commit = noting_commit
        self.engines: dict[int, Any] = {}

    def checkpoint(self, *args: Any, **kwargs: Any) -> bool:
        self.engines.update((number, state.engine) for number, state in self.states.items())  # run() drops them
        return super().checkpoint(*args, **kwargs)


def _kafka(bootstrap: str, name: str) -> KafkaConfig:
    topics = KafkaTopics(input=[name], dead_letter=f"{name}.dlq", alerts=f"{name}.alerts",
                         revocations=f"{name}.revocations", changelog_prefix=f"{name}.changelog")
    return KafkaConfig(bootstrap_servers=[bootstrap], topics=topics, group_id=f"{name}-group",
                       session_timeout_ms=6000, heartbeat_interval_ms=1000)


def _alerts_on_topic(kafka: KafkaConfig) -> dict[str, dict[str, Any]]:
    """The alerts topic, latest version per alert id (updates reuse the key)."""
    consumer = KafkaConsumer(**consumer_kwargs(kafka, group=False))
    try:
        consumer.assign([TopicPartition(kafka.topics.alerts, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        found: dict[str, dict[str, Any]] = {}
        quiet = 0
        while quiet < 3:
            batches = consumer.poll(timeout_ms=300)
            quiet = 0 if batches else quiet + 1
            for records in batches.values():
                for record in records:
                    found[record.key.decode()] = orjson.loads(record.value)
        return found
    finally:
        consumer.close()


def _run(bootstrap: str, lines: list[bytes]) -> tuple[dict[str, dict[str, Any]], _DrainedService]:
    name = f"one-{uuid.uuid4().hex[:8]}"
    kafka = _kafka(bootstrap, name)
    ensure_topics(kafka, PARTITIONS, changelog_stores=(STATE_STORE,))
    producer = _AckedProducer(**producer_kwargs(kafka))
    try:
        summary = produce(iter(lines), name, kafka, hash_token=HASHER, producer=producer)
    finally:
        producer.close()
    assert summary.failed == 0 and summary.produced == len(lines)
    config = settings().model_copy(update={
        "kafka": kafka, "service": ServiceConfig(metrics_port=0, checkpoint_interval_s=0.5)})
    service = _DrainedService(config, config.service, HASHER, [KafkaSink(kafka)], enricher(),
                              ends=dict(producer.ends))
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    try:
        assert service.drained.wait(timeout=90), "the service did not commit every produced offset"
    finally:
        service.stop()
        thread.join(timeout=60)
    assert not thread.is_alive()
    return _alerts_on_topic(kafka), service


@pytest.mark.parametrize("how", DELIVERIES)
def test_run_gives_the_alert_ids_detect_gives(kafka_bootstrap: str, how: str) -> None:
    lines = deliver(how)
    started = time.monotonic()
    on_topic, service = _run(kafka_bootstrap, lines)
    detected, summary = detect(lines, HASHER)
    assert sorted(on_topic) == sorted(alert["alert"]["id"] for alert in detected)
    result = score(list(on_topic.values()), world().labels)
    assert [o.label.attack for o in result.outcomes if not o.caught] == [] and result.false_positives == []
    # The metric is the engines' own count: what `detect` reports for each partition's stream.
    late = sum(engine.counters["late_events"] for engine in service.engines.values())
    assert service.metrics.late_events._value.get() == late  # noqa: SLF001 -- prometheus_client has no public getter
    assert (late > 0) is (how != "in_order")
    # Events read, per format, reach the metric (counted per record, moved once a loop turn).
    read = sum(sample.value for metric in service.metrics.events_in.collect() for sample in metric.samples
               if sample.name == "tokenwatch_events_in_total")
    assert read == summary.events
    assert time.monotonic() - started < 60
