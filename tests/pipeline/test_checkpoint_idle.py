"""An idle service writes nothing: a checkpoint re-stages only open alerts that changed and
commits only offsets that moved (an idle service used to rewrite the same documents and
commit the same offsets every few seconds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kafka import TopicPartition

from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.service.checkpoint import checkpoint
from pipeline.service.partitions import new_partition_state
from pipeline.sinks.base import MemorySink

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample.jsonl"


class _CountingSink(MemorySink):
    written = 0

    def flush(self) -> Any:
        result = super().flush()
        self.written += result.written
        return result


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


class _Producer:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, *_: Any, **__: Any) -> Any:
        self.sent += 1
        return self

    def get(self, timeout: float = 0) -> None:
        return None

    def flush(self, timeout: float = 0) -> None:
        return None


def test_an_idle_checkpoint_writes_and_commits_nothing(hasher) -> None:
    state = new_partition_state(0, Settings(), None)
    tp = TopicPartition("events", 0)
    normalizer = Normalizer(hasher)
    for offset, line in enumerate(SAMPLE.read_bytes().splitlines()):
        for event in normalizer.normalize(line, f"s:{offset}").events:
            state.submitted(event.event_id, tp, offset)
            state.engine.submit(event)
        state.next_offsets[tp] = offset + 1
    assert state.open_alerts(), "the sample leaves alerts inside their fold window"
    sink, consumer, producer = _CountingSink(name="memory"), _Consumer(), _Producer()

    checkpoint(consumer, producer, "changelog", [state], [sink])
    first = sink.written
    assert first > 0 and len(consumer.commits[-1]) == 1 and producer.sent > 0

    sent = producer.sent
    checkpoint(consumer, producer, "changelog", [state], [sink])
    assert sink.written == first  # no open alert staged again
    assert len(consumer.commits) == 1  # no offset commit
    assert producer.sent == sent  # no changelog record

    state.engine.flush()  # the held events are released: the safe offset moves on
    checkpoint(consumer, producer, "changelog", [state], [sink])
    assert len(consumer.commits) == 2 and consumer.commits[-1][tp].offset == state.next_offsets[tp]
