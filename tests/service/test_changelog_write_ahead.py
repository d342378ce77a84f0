"""The changelog writes the id of a released event only while the event can be delivered
again (issue 17: "write-ahead ids only for events newer than the last commit"), and a
crash after such a checkpoint still ends exactly like a run that never stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kafka import TopicPartition

from detectors.state import stable_hash
from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.service.changelog import ChangelogReader, decode_chunk
from pipeline.service.checkpoint import checkpoint
from pipeline.service.partitions import PartitionState, new_partition_state
from pipeline.sinks.base import MemorySink
from schemas.alerts import Alert

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample.jsonl"
REPLAYABLE = b"d:engine\x1freplayable\x1f"
TP = TopicPartition("events", 0)


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


class _Producer:
    """Keeps every changelog record it is sent, in order."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def send(self, _topic: str, key: bytes, value: bytes | None, **__: Any) -> Any:
        self.records.append((key, value))
        return self

    def get(self, timeout: float = 0) -> None:
        return None

    def flush(self, timeout: float = 0) -> None:
        return None


def _lines() -> list[bytes]:
    return SAMPLE.read_bytes().splitlines()


def _feed(state: PartitionState, normalizer: Normalizer, lines: list[bytes], first: int) -> list[Alert]:
    alerts: list[Alert] = []
    for offset, line in enumerate(lines[first:], start=first):
        for event in normalizer.normalize(line, f"s:{offset}").events:
            state.submitted(event.event_id, TP, offset)
            alerts.extend(state.engine.submit(event))
        state.next_offsets[TP] = offset + 1
    return alerts


def restored(records: list[tuple[bytes, bytes | None]]) -> PartitionState:
    """The next owner of partition 0: a new state restored from the changelog ``records``."""
    state = new_partition_state(0, Settings(), None)
    reader = ChangelogReader(state.store)
    for key, value in records:
        reader.apply(key, value)
    state.log = reader.finish()
    state.store.take_dirty()
    state.engine.restored()
    return state


def _logical(records: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """The state records inside the changelog's chunks, in order."""
    return [record for key, value in records if value is not None for record in decode_chunk(key, value).records()]


def _ids_of(alerts: list[Alert]) -> dict[str, Alert]:
    return {alert.alert.id: alert for alert in alerts}


def test_only_ids_of_events_that_can_be_delivered_again_are_written(hasher) -> None:
    lines = _lines()
    state, normalizer = new_partition_state(0, Settings(), None), Normalizer(hasher)
    _feed(state, normalizer, lines, 0)
    held = state.engine.pending_event_ids()
    assert held, "the sample leaves events in the reorder buffer at its end"
    consumer, producer = _Consumer(), _Producer()
    checkpoint(consumer, producer, "changelog", [state], [MemorySink(name="memory")])
    committed = consumer.commits[-1][TP].offset
    assert 0 < committed < len(lines)

    written = {key[len(REPLAYABLE):] for key, value in _logical(producer.records) if key.startswith(REPLAYABLE) and value}
    offsets = {event.event_id: offset for offset, line in enumerate(lines)
               for event in normalizer.normalize(line, f"s:{offset}").events}
    released = [event_id for event_id in offsets if event_id not in held]
    expected = {str(stable_hash(event_id)).encode() for event_id in released if offsets[event_id] >= committed}
    assert written == expected
    assert len(written) < len(released) / 4, "most released ids are below the committed offset"


def test_a_crash_after_the_checkpoint_ends_like_a_run_that_never_stopped(hasher) -> None:
    lines = _lines()
    cut = (len(lines) * 2) // 3
    uninterrupted = new_partition_state(0, Settings(), None)
    normalizer = Normalizer(hasher)
    expected = _feed(uninterrupted, normalizer, lines, 0) + uninterrupted.engine.flush()

    first = new_partition_state(0, Settings(), None)
    before = _feed(first, normalizer, lines[:cut], 0)
    consumer, producer = _Consumer(), _Producer()
    checkpoint(consumer, producer, "changelog", [first], [MemorySink(name="memory")])
    committed = consumer.commits[-1][TP].offset
    assert committed < cut, "events still held must be delivered again after the crash"

    # kill -9 here: the next owner restores the changelog and is delivered everything from
    # the committed offset on, the events it already judged among them.
    second = restored(producer.records)
    after = _feed(second, normalizer, lines, committed) + second.engine.flush()

    got = _ids_of(before) | _ids_of(after)
    want = _ids_of(expected)
    assert set(got) == set(want)
    for alert_id, alert in want.items():
        assert got[alert_id].alert.summary == alert.alert.summary
