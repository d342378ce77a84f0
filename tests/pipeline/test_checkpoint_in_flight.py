"""The periodic checkpoint off the service loop (issue 18, latency): the Elasticsearch flush on a
worker thread (``BackgroundSink``) and the changelog sent a slice at a time, with the offsets
committed only once both are done, and only those taken with the state as the flush began."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.service.checkpoint import begin_checkpoint, complete
from pipeline.service.partitions import PartitionState, new_partition_state
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.base import FlushResult, MemorySink, SinkUnavailable

SAMPLE = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample.jsonl"


class _GatedSink(MemorySink):
    """A sink whose flush waits until the test opens the gate (a slow bulk request)."""

    def __init__(self) -> None:
        super().__init__(name="slow")
        self.gate = threading.Event()
        self.flushing = threading.Event()

    def flush(self) -> FlushResult:
        self.flushing.set()
        assert self.gate.wait(5)
        return super().flush()


class _Future:
    is_done = True

    def get(self, timeout: float = 0) -> None:
        return None


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, _topic: str, key: bytes, value: Any, partition: int, headers: Any = None) -> _Future:
        self.sent.append((partition, key))
        return _Future()

    def flush(self, timeout: float = 0) -> None:
        return None


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, Any]] = []

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.commits.append(offsets)


def _partition(number: int, lines: list[bytes], hasher: Any) -> tuple[PartitionState, TopicPartition]:
    state = new_partition_state(number, Settings(), None)
    tp = TopicPartition("events", number)
    normalizer = Normalizer(hasher)
    for offset, line in enumerate(lines):
        for event in normalizer.normalize(line, f"s:{offset}").events:
            state.submitted(event.event_id, tp, offset)
            state.engine.submit(event)
        state.next_offsets[tp] = offset + 1
    state.engine.flush()  # nothing held back: every processed offset is committable
    return state, tp


def test_documents_added_while_the_background_flush_runs_wait_for_the_next_one() -> None:
    inner = _GatedSink()
    sink = BackgroundSink(inner)
    sink.add("alert", "a1", {"v": 1})
    sink.start_flush()
    assert inner.flushing.wait(5) and not sink.finished()
    sink.add("alert", "a1", {"v": 2})  # a newer version while v1 is being written
    sink.add("alert", "a2", {"v": 1})
    assert sink.pending == 3  # two waiting here, one being written
    inner.gate.set()
    assert sink.result().written == 1 and inner.documents[("alert", "a1")] == {"v": 1}
    assert sink.flush().written == 2  # synchronous: what came meanwhile
    assert inner.documents == {("alert", "a1"): {"v": 2}, ("alert", "a2"): {"v": 1}}


def test_a_background_flush_that_fails_raises_in_the_loop_thread() -> None:
    sink = BackgroundSink(MemorySink(name="es", down="connection refused"))
    sink.add("alert", "a1", {"v": 1})
    sink.start_flush()
    try:
        sink.result()
    except SinkUnavailable as exc:
        assert exc.sink == "es"
    else:
        raise AssertionError("the failure must reach the caller")
    assert sink.pending == 1  # kept for the retry


def test_offsets_are_committed_after_the_changelog_and_the_flush_and_only_as_far_as_flushed(hasher) -> None:
    lines = SAMPLE.read_bytes().splitlines()
    first, tp0 = _partition(0, lines[:20], hasher)
    second, tp1 = _partition(1, lines[20:40], hasher)
    inner = _GatedSink()
    slow, producer, consumer = BackgroundSink(inner), _Producer(), _Consumer()
    slow.add("dead_letter", "d1", {"reason": "x"})
    pending = begin_checkpoint(producer, "changelog", [first, second], [slow], wait=False)
    # Every partition's state and offsets are taken as the flush begins, nothing is sent yet.
    assert pending is not None and producer.sent == [] and pending.offsets == {tp0: 20, tp1: 20}
    # The loop judges on: those events' alerts wait for the next flush, so their offsets are
    # not this checkpoint's, whichever partition they are in.
    first.next_offsets[tp0] = 77
    second.next_offsets[tp1] = 99

    pending.changelog.send(10)
    assert not pending.ready()  # records left to send, and the flush not over
    pending.changelog.send(10_000)
    assert {p for p, _ in producer.sent} == {0, 1} and not pending.ready()  # the flush is not over
    inner.gate.set()
    while not pending.ready():
        pass
    pending.settle_sinks()
    pending.commit(consumer)
    assert {tp: meta.offset for tp, meta in consumer.commits[-1].items()} == {tp0: 20, tp1: 20}
    assert inner.documents == {("dead_letter", "d1"): {"reason": "x"}}


def test_no_changelog_record_goes_out_before_every_flush_succeeded(hasher) -> None:
    """State in the changelog whose alerts no sink holds would be restored after a crash (or by
    a partition's next owner) while the offsets stay behind it: the replay would judge those
    events again against state that already has them. So a failed flush sends nothing, and
    the records wait for the checkpoint that retries."""
    lines = SAMPLE.read_bytes().splitlines()
    state, _tp = _partition(0, lines[:20], hasher)
    down = BackgroundSink(MemorySink(name="es", down="connection refused"))
    down.add("alert", "a1", {"v": 1})
    producer, consumer = _Producer(), _Consumer()
    pending = begin_checkpoint(producer, "changelog", [state], [down], wait=False)
    assert pending is not None and pending.changelog.records
    try:
        complete(pending, consumer)
    except SinkUnavailable:
        pass
    else:
        raise AssertionError("the failed flush must reach the caller")
    assert producer.sent == [] and consumer.commits == []
    assert pending.changelog.records  # still there for the retry to send
