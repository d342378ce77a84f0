"""`produce` against the real (Tansu) broker: every line lands once, with the documented key,
and one token family on one partition; garbage lands too; topics are created idempotently."""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline.cli.main import main
from pipeline.config import load_settings
from pipeline.ingest.normalize import Normalizer
from pipeline.kafka.config import KafkaConfig, KafkaTopics, consumer_kwargs
from pipeline.kafka.keys import content_key, event_key, line_key
from pipeline.kafka.produce import produce
from pipeline.kafka.topics import ensure_topics, existing_topics
from pipeline.runtime.build import build_reader

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample.jsonl"
FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"


def _config(bootstrap: str, name: str) -> KafkaConfig:
    topics = KafkaTopics(
        input=[name], dead_letter=f"{name}.dlq", alerts=f"{name}.alerts",
        revocations=f"{name}.revocations", changelog_prefix=f"{name}.changelog",
    )
    return KafkaConfig(bootstrap_servers=[bootstrap], topics=topics, session_timeout_ms=6000, heartbeat_interval_ms=1000)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _consume_all(config: KafkaConfig, topic: str, expected: int, timeout_s: float = 30.0) -> list:
    """Read until ``expected`` records arrived (a deadline, not end offsets: Tansu under-reports those)."""
    consumer = KafkaConsumer(**consumer_kwargs(config, group=False))
    try:
        deadline = time.monotonic() + timeout_s
        partitions = None
        while partitions is None and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"no partitions for {topic}"
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        records: list = []
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        # one more poll: a duplicate would show up here
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def test_sample_lands_once_each_with_its_key_and_one_family_per_partition(kafka_bootstrap: str, hasher) -> None:
    topic = _unique("produce-sample")
    config = _config(kafka_bootstrap, topic)
    status = ensure_topics(config, partitions=3)
    assert status[topic].created and status[topic].partitions == 3
    lines = [line for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    extra = [line for path in sorted(FORMATS_DIR.glob("*.jsonl")) for line in path.read_bytes().splitlines() if line.strip()]

    summary = produce(lines + extra, topic, config, hash_token=hasher)

    # Lines of types no detector needs (Keycloak's other log records and admin events) map to
    # no event: produced all the same, keyed by content; none is a dead letter.
    normalizer = Normalizer(hasher)
    eventless = [line for line in lines + extra if not normalizer.normalize(line, "t").events]
    assert all(normalizer.normalize(line, "t").skipped_type for line in eventless)
    assert (summary.produced, summary.failed, summary.unmapped) == (len(lines + extra), 0, len(eventless))
    records = _consume_all(config, topic, len(lines + extra))
    assert Counter(r.value for r in records) == Counter(lines + extra)  # every line exactly once
    assert all(r.key == line_key(r.value, hasher).key for r in records)
    assert len({r.partition for r in records}) > 1  # the keys do spread

    partitions_of: dict[str, set[int]] = defaultdict(set)
    family_of: dict[str, str] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        for event in normalizer.normalize(record.value, "t").events:
            token = event.token
            if token is None:
                continue
            family = token.family_id or family_of.get(token.id) or token.id
            family_of[token.id] = family
            partitions_of[family].add(record.partition)
    assert len(partitions_of) > 20
    assert {f: p for f, p in partitions_of.items() if len(p) != 1} == {}


def test_garbage_lines_are_produced_and_counted(kafka_bootstrap: str, hasher) -> None:
    topic = _unique("produce-garbage")
    config = _config(kafka_bootstrap, topic)
    ensure_topics(config, partitions=3)
    good = SAMPLE.read_bytes().splitlines()[:3]
    garbage = [b"not json at all", b"[1, 2, 3]", b'{"hello": "world"}', b'{"truncated": ']

    summary = produce([*good, b"", b"   ", *garbage], topic, config, hash_token=hasher)

    assert (summary.produced, summary.unmapped, summary.blank_lines, summary.failed) == (7, 4, 2, 0)
    assert summary.keyed_by["content"] == 4
    records = _consume_all(config, topic, 7)
    assert Counter(r.value for r in records) == Counter(good + garbage)
    assert {r.value: r.key for r in records if r.value in garbage} == {
        line: line_key(line, hasher).key for line in garbage
    }
    assert "4 lines map to no event" in summary.render()


def test_ensure_topics_is_idempotent_and_reports_partitions(kafka_bootstrap: str) -> None:
    name = _unique("topics")
    config = _config(kafka_bootstrap, name)
    first = ensure_topics(config, partitions=3, changelog_stores=["lineage"])
    assert {s.name for s in first.values() if s.created} == {
        name, f"{name}.dlq", f"{name}.alerts", f"{name}.revocations", f"{name}.changelog.lineage"
    }
    assert first[f"{name}.revocations"].partitions == 1
    assert first[f"{name}.changelog.lineage"].partitions == 3
    again = ensure_topics(config, partitions=5, changelog_stores=["lineage"])
    assert not any(s.created for s in again.values())
    assert again[name].partitions == 3  # never changed behind the operator's back


def test_cli_produce_creates_topics_and_prints_a_summary(kafka_bootstrap: str, tmp_path: Path, capsys) -> None:
    topic = _unique("cli-produce")
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(SAMPLE.read_bytes().splitlines()[:10] + [b"garbage"]) + b"\n")

    rc = main(["produce", "--input", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap,
               "--create-topics", "3"])

    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"11 of 11 lines produced to {topic}" in err and "1 lines map to no event" in err
    assert f"topic {topic}: created, 3 partitions" in err
    config = _config(kafka_bootstrap, topic)
    assert len(_consume_all(config, topic, 11)) == 11


def test_cli_produce_merges_a_directory_by_event_time(kafka_bootstrap: str, tmp_path: Path, capsys, hasher) -> None:
    """A history exported per format, loaded as one directory, lands in event-time order."""
    topic = _unique("cli-backfill")
    per_format = {path.name: path.read_bytes().splitlines() for path in sorted(FORMATS_DIR.glob("*.jsonl"))}
    for name, lines in per_format.items():
        (tmp_path / name).write_bytes(b"\n".join(lines) + b"\n")
    total = sum(len(lines) for lines in per_format.values())

    rc = main(["produce", "--input", str(tmp_path), "--topic", topic, "--bootstrap", kafka_bootstrap,
               "--create-topics", "1"])

    err = capsys.readouterr().err
    assert rc == 0, err
    assert f"merged {len(per_format)} files by event time" in err
    config = _config(kafka_bootstrap, topic)
    records = sorted(_consume_all(config, topic, total), key=lambda record: record.offset)
    normalizer = Normalizer(hasher)
    mapped = [normalizer.normalize(record.value, "t").events for record in records]
    times = [min(event.epoch for event in events) for events in mapped if events]  # skipped types ride along
    assert len(records) == total and len(times) > total // 2 and times == sorted(times)


_USE = orjson.loads(FORMATS_DIR.joinpath("gateway.jsonl").read_bytes().splitlines()[0])
_DECOY = {"canonical_version": 1, "event_id": "e-decoy", "kind": "used", "time": "2026-11-24T09:00:00Z",
          "source": "idp", "subject": {"id": "decoy"}, "token": {"id": "t-decoy"}}


@pytest.mark.parametrize(
    ("config_text", "record"),
    [
        # [trust]: a topic that may carry only canonical events keeps the decoy, not the gateway use before it
        ('[trust]\ntrusted_topics = ["{topic}"]\ntopic_formats = {{ "{topic}" = ["canonical"] }}\n',
         {"records": [_USE, _DECOY]}),
        # [input]: a low max_depth cuts what the envelope nests, and the use with it
        ("[input]\nmax_depth = 3\n", {"records": [_USE]}),
    ],
    ids=["trust", "max_depth"],
)
def test_cli_produce_keys_a_line_as_the_configured_service_maps_it(
    kafka_bootstrap: str, tmp_path: Path, capsys, hasher, config_text: str, record: dict[str, object],
) -> None:
    topic = _unique("cli-service-settings")
    line = orjson.dumps(record)
    config_path = tmp_path / "tokenwatch.toml"
    config_path.write_text(config_text.format(topic=topic))
    (tmp_path / "in.jsonl").write_bytes(line + b"\n")
    service = build_reader(load_settings(config_path), hasher)
    judged = service.judge(service.normalize(line, "t"), "t", topic)
    found = event_key(judged.events)
    expected = found[0] if found is not None else content_key(line)
    assert expected != line_key(line, hasher).key  # every record, the shipped [input]: another partition

    rc = main(["produce", "--input", str(tmp_path / "in.jsonl"), "--topic", topic, "--bootstrap", kafka_bootstrap,
               "--create-topics", "1", "--config", str(config_path)])

    err = capsys.readouterr().err
    assert rc == 0, err
    [produced] = _consume_all(_config(kafka_bootstrap, topic), topic, 1)
    assert (produced.key, produced.value) == (expected, line)


def test_cli_produce_to_a_missing_topic_fails_without_create_topics(kafka_bootstrap: str, tmp_path: Path, capsys) -> None:
    topic = _unique("cli-typo")
    path = tmp_path / "in.jsonl"
    path.write_bytes(SAMPLE.read_bytes().splitlines()[0] + b"\n")

    rc = main(["produce", "--input", str(path), "--topic", topic, "--bootstrap", kafka_bootstrap])

    err = capsys.readouterr().err.strip()
    assert rc == 3
    assert err == (f"tokenwatch produce: topic '{topic}' does not exist on {kafka_bootstrap}; "
                   "create it (--create-topics PARTITIONS) or check --topic")
    assert topic not in existing_topics(_config(kafka_bootstrap, topic))  # and it was not auto-created by asking
