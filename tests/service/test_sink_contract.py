"""The sink contract, once for every sink in ``pipeline.sinks.SINKS`` (and the background
wrapper the service puts around a slow one), as tests/store/contract.py does for the stores.

Each sink runs against its real destination where one runs here: the Kafka sink against the
test broker (Tansu), the memory sink in process; Elasticsearch answers from the scripted
bulk server of tests/pipeline/test_sink_base.py (its real-server cases are in
tests/integration/test_elasticsearch_sink.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.config import Settings
from pipeline.es.config import ElasticsearchConfig
from pipeline.es.templates import template_name
from pipeline.kafka.config import KafkaConfig, KafkaTopics, consumer_kwargs
from pipeline.kafka.topics import ensure_topics
from pipeline.sinks import DOC_KINDS, SINKS, ElasticsearchSink, KafkaSink, MemorySink, Sink
from pipeline.sinks.background import BackgroundSink
from tests.integration.conftest import kafka_bootstrap  # noqa: F401 -- the real broker, as in tests/integration
from tests.pipeline.test_sink_base import ScriptedES, bulk_ok

Key = tuple[str, str]

DOCUMENTS: dict[str, dict[str, Any]] = {
    "alert": {"@timestamp": "2026-11-24T09:00:00Z", "alert": {"id": "a1", "count": 1}, "rule": {"id": "replay.x"}},
    "event": {"@timestamp": "2026-11-24T09:00:00Z", "note": "an indexed event"},
    "dead_letter": {"reason": "unknown format", "format": "unknown", "origin": "in:0:7",
                    "ingested_at": "2026-11-24T09:00:00Z", "raw_bytes": 9, "raw_sha256": "ab" * 32,
                    "source_record": {"topic": "in", "partition": 0, "offset": 7}},
    "action": {"@timestamp": "2026-11-24T09:00:00Z", "action": {"id": "act-1", "state": "planned"}},
}
ORIGINAL = b'{"tok":1}'


class Harness(Protocol):
    sink: Sink

    def written(self) -> dict[Key, dict[str, Any]]:
        """What the destination holds, by (kind, id)."""

    def original(self, doc_id: str) -> bytes | None:
        """The original record bytes the destination holds for a dead letter (None: none)."""


class MemoryHarness:
    def __init__(self, sink: MemorySink | None = None) -> None:
        self.memory = sink or MemorySink()
        self.sink: Sink = self.memory

    def written(self) -> dict[Key, dict[str, Any]]:
        return dict(self.memory.documents)

    def original(self, doc_id: str) -> bytes | None:
        return self.memory.originals.get(("dead_letter", doc_id))


class BackgroundHarness(MemoryHarness):
    def __init__(self) -> None:
        super().__init__()
        self.sink = BackgroundSink(self.memory)


class ElasticsearchHarness:
    def __init__(self, server: ScriptedES) -> None:
        server.script = [bulk_ok() for _ in range(20)]
        self.server = server
        self.sink = ElasticsearchSink(ElasticsearchConfig(hosts=[server.url], max_retries=0), sleep=lambda s: None)

    def written(self) -> dict[Key, dict[str, Any]]:
        families = {template_name("tokenwatch", kind): kind for kind in DOC_KINDS}
        found: dict[Key, dict[str, Any]] = {}
        for request in self.server.requests:
            lines = [json.loads(line) for line in request["body"].splitlines() if line]
            for op, source in zip(lines[::2], lines[1::2], strict=True):
                family = op["index"]["_index"].rsplit("-", 1)[0]
                found[(families[family], op["index"]["_id"])] = source
        return found

    def original(self, doc_id: str) -> bytes | None:
        return None  # never: an index analysts read is not protected like the input topic


class KafkaHarness:
    def __init__(self, bootstrap: str) -> None:
        name = f"contract-{uuid.uuid4().hex[:8]}"
        topics = KafkaTopics(input=[name], dead_letter=f"{name}.dlq", alerts=f"{name}.alerts",
                             revocations=f"{name}.revocations", changelog_prefix=f"{name}.changelog")
        self.config = KafkaConfig(bootstrap_servers=[bootstrap], topics=topics, group_id=f"{name}-group")
        ensure_topics(self.config, 1)
        self.sink = KafkaSink(self.config)

    def _records(self) -> dict[Key, Any]:
        topics = self.config.topics
        kinds = {topics.alerts: "alert", topics.dead_letter: "dead_letter"}
        consumer = KafkaConsumer(**consumer_kwargs(self.config, group=False))
        try:
            consumer.assign([TopicPartition(topic, 0) for topic in kinds])
            consumer.seek_to_beginning()
            found: dict[Key, Any] = {}
            quiet = 0
            while quiet < 3:
                batches = consumer.poll(timeout_ms=300)
                quiet = 0 if batches else quiet + 1
                for records in batches.values():
                    for record in records:
                        found[(kinds[record.topic], record.key.decode())] = record
            return found
        finally:
            consumer.close()

    def written(self) -> dict[Key, dict[str, Any]]:
        return {key: orjson.loads(r.value) for key, r in self._records().items()
                if dict(r.headers).get("tokenwatch.value") != b"original"}

    def original(self, doc_id: str) -> bytes | None:
        record = self._records().get(("dead_letter", doc_id))
        if record is None or dict(record.headers).get("tokenwatch.value") != b"original":
            return None
        return bytes(record.value)


HARNESSES = ["memory", "memory-in-background", "elasticsearch", "kafka"]


@pytest.fixture(params=HARNESSES)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    built: Harness
    if request.param == "memory":
        built = MemoryHarness()
    elif request.param == "memory-in-background":
        built = BackgroundHarness()
    elif request.param == "elasticsearch":
        server = ScriptedES()
        request.addfinalizer(server.server.shutdown)
        built = ElasticsearchHarness(server)
    else:
        built = KafkaHarness(request.getfixturevalue("kafka_bootstrap"))
    yield built
    built.sink.close()


def test_every_registered_sink_has_a_harness_and_is_built_from_the_settings() -> None:
    covered = {name.split("-", 1)[0] for name in HARNESSES}
    assert set(SINKS) <= covered
    settings = Settings()
    for name, cls in SINKS.items():
        if name == "kafka":
            continue  # its producer connects at construction: built against the broker in the harness
        sink = cls.from_settings(settings)
        assert isinstance(sink, Sink) and sink.name == name
        sink.close()


def test_every_kind_is_taken_and_each_kept_kind_is_written(harness: Harness) -> None:
    sink = harness.sink
    for kind in DOC_KINDS:  # the kinds a sink does not keep are ignored, never refused
        sink.add(kind, f"{kind}-1", DOCUMENTS[kind])
    result = sink.flush()
    assert result.ok and sink.pending == 0 and result.written == len(sink.kinds)
    written = harness.written()
    assert set(written) == {(kind, f"{kind}-1") for kind in sink.kinds}
    for (kind, _), document in written.items():
        assert document.items() >= DOCUMENTS[kind].items()  # a sink may add (@timestamp), never change


def test_a_later_add_of_the_same_kind_and_id_replaces_the_earlier(harness: Harness) -> None:
    sink = harness.sink
    sink.add("alert", "a1", DOCUMENTS["alert"])
    sink.add("alert", "a1", {**DOCUMENTS["alert"], "alert": {"id": "a1", "count": 2}})
    assert sink.pending == 1
    assert sink.flush().written == 1
    assert harness.written()[("alert", "a1")]["alert"] == {"id": "a1", "count": 2}


def test_the_original_record_travels_as_an_argument_never_inside_a_document(harness: Harness) -> None:
    sink = harness.sink
    sink.add("dead_letter", "in-0-7", DOCUMENTS["dead_letter"], ORIGINAL)
    sink.add("alert", "a1", DOCUMENTS["alert"], ORIGINAL)  # no place for it in an alert: ignored
    assert sink.flush().ok
    kept = harness.original("in-0-7")
    assert kept in (None, ORIGINAL)  # written as it is, or not at all
    assert all(ORIGINAL.decode() not in json.dumps(doc) for doc in harness.written().values())
    if kept is None:  # then the redacted dead letter is there instead
        assert harness.written()[("dead_letter", "in-0-7")].items() >= DOCUMENTS["dead_letter"].items()


def test_an_unencodable_alert_is_rejected_and_an_unencodable_dead_letter_kept_as_its_facts(harness: Harness) -> None:
    sink = harness.sink
    sink.add("alert", "bad", {**DOCUMENTS["alert"], "evidence": "caf\ud800"})
    sink.add("alert", "good", DOCUMENTS["alert"])
    sink.add("dead_letter", "cut", {**DOCUMENTS["dead_letter"], "raw": {"x": "caf\ud800"}})
    result = sink.flush()
    assert [(r.doc_kind, r.doc_id) for r in result.rejected] == [("alert", "bad")]
    written = harness.written()
    assert ("alert", "good") in written and ("alert", "bad") not in written
    cut = written[("dead_letter", "cut")]
    assert "raw" not in cut and cut["raw_sha256"] == DOCUMENTS["dead_letter"]["raw_sha256"]
    assert cut["encoding_error"]


def test_close_does_not_flush_and_does_not_raise(harness: Harness) -> None:
    harness.sink.add("alert", "a1", DOCUMENTS["alert"])
    harness.sink.close()
    assert harness.written() == {}
