"""A checkpoint in flight (``begin_checkpoint(wait=False)``: sinks flushing on their own
thread, changelog records sent a slice per loop turn) while the loop keeps judging events:
a kill -9 at any point loses no alert. Every alert is either in a sink's flushed documents
or raised again by the replay after the restore (the integration test's refresh-reuse
alert was lost this way: its event was judged between the flush and the state's encoding,
so the offsets committed covered an alert that no sink had written)."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition

from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.service.checkpoint import ChangelogSend, begin_checkpoint, checkpoint, complete, stage_alert
from pipeline.service.partitions import PartitionState, new_partition_state, restore_partition
from pipeline.sinks.base import MemorySink
from tests.service.test_changelog_write_ahead import TP, _Consumer, _feed, _lines, _Producer, restored


def _judge(state: PartitionState, normalizer: Normalizer, lines: list[bytes], first: int, last: int,
           sink: MemorySink) -> list[str]:
    """The service loop: each alert a submit returns goes to the sinks' buffer at once; returns
    the ids of the alerts raised (final: their fold window closed)."""
    raised: list[str] = []
    for offset in range(first, last):
        for event in normalizer.normalize(lines[offset], f"s:{offset}").events:
            state.submitted(event.event_id, TP, offset)
            for alert in state.engine.submit(event):
                stage_alert(alert, [sink])
                raised.append(alert.alert.id)
        state.next_offsets[TP] = offset + 1
    return raised


class _ChangelogTopic:
    """The changelog partition as the group-less restore consumer reads it."""

    def __init__(self, records: list[tuple[bytes, bytes | None]]) -> None:
        self.records = [SimpleNamespace(key=key, value=value, headers=None) for key, value in records]
        self.at = 0

    def assign(self, _tps: list[TopicPartition]) -> None:
        return None

    def seek_to_beginning(self, _tp: TopicPartition) -> None:
        self.at = 0

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        batch, self.at = self.records[self.at: self.at + 10], min(len(self.records), self.at + 10)
        return {TopicPartition("changelog", 0): batch}

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}

    def position(self, _tp: TopicPartition) -> int:
        return self.at


@pytest.mark.parametrize("judged_in_flight", [1, 4, 16])
def test_a_kill_after_a_checkpoint_in_flight_loses_no_alert(hasher, judged_in_flight: int) -> None:
    lines = _lines()
    normalizer = Normalizer(hasher)
    uninterrupted = new_partition_state(0, Settings(), None)
    want = {alert.alert.id for alert in _feed(uninterrupted, normalizer, lines, 0) + uninterrupted.engine.flush()}
    lost: dict[int, set[str]] = {}
    for begin_at in range(8, len(lines) - judged_in_flight, 8):
        first, sink = new_partition_state(0, Settings(), None), MemorySink(name="memory")
        consumer, producer = _Consumer(), _Producer()
        _judge(first, normalizer, lines, 0, begin_at, sink)
        pending = begin_checkpoint(producer, "changelog", [first], [sink], wait=False)
        assert pending is not None
        _judge(first, normalizer, lines, begin_at, begin_at + judged_in_flight, sink)  # the loop goes on
        complete(pending, consumer)
        # kill -9 here: whatever the sinks hold unflushed is gone.
        durable = {doc_id for (kind, doc_id) in sink.documents if kind == "alert"}
        committed = consumer.commits[-1][TP].offset if consumer.commits else 0
        second = restored(producer.records)
        replayed = {alert.alert.id for alert in _feed(second, normalizer, lines, committed) + second.engine.flush()}
        if want - durable - replayed:
            lost[begin_at] = want - durable - replayed
    assert lost == {}


def test_a_kill_between_the_changelog_ack_and_the_commit_raises_each_alert_once(hasher) -> None:
    """The changelog acknowledged a checkpoint, the process died before its offsets were
    committed: the restored state holds the events up to that checkpoint's offsets (their alerts
    already flushed, their ids not written ahead), so the replay starts there. From the older
    commit it judged them a second time and raised their alerts again."""
    lines = _lines()
    normalizer = Normalizer(hasher)
    uninterrupted = new_partition_state(0, Settings(), None)
    want = {alert.alert.id: alert.to_json_dict()
            for alert in _feed(uninterrupted, normalizer, lines, 0) + uninterrupted.engine.flush()}
    twice: dict[tuple[int, int], list[str]] = {}
    for committed_at in range(8, len(lines), 16):
        for acked_at in range(committed_at + 4, len(lines), 8):
            first, sink = new_partition_state(0, Settings(), None), MemorySink(name="memory")
            consumer, producer = _Consumer(), _Producer()
            raised = _judge(first, normalizer, lines, 0, committed_at, sink)
            checkpoint(consumer, producer, "changelog", [first], [sink])
            raised += _judge(first, normalizer, lines, committed_at, acked_at, sink)
            pending = begin_checkpoint(producer, "changelog", [first], [sink])
            assert pending is not None
            pending.settle_sinks()
            pending.changelog.wait(1.0)
            # kill -9 here: the changelog holds this checkpoint, the group the one before.
            committed = consumer.commits[-1][TP].offset
            second = new_partition_state(0, Settings(), None)
            restore_partition(_ChangelogTopic(producer.records), "changelog", second)
            resume = second.resume_position(TP, committed)
            assert resume is not None and resume >= committed
            replayed = _feed(second, normalizer, lines, resume) + second.engine.flush()
            again = [alert.alert.id for alert in replayed if alert.alert.id in raised]
            if again:
                twice[committed_at, acked_at] = again
            # What the sinks end with: the documents flushed before the kill, then the replay's.
            documents = {doc_id: doc for (kind, doc_id), doc in sink.documents.items() if kind == "alert"}
            documents |= {alert.alert.id: alert.to_json_dict() for alert in replayed}
            assert documents == want, (committed_at, acked_at)
    assert twice == {}


def test_records_of_a_failed_flush_go_out_before_the_checkpoint_that_carries_them() -> None:
    """A partition's checkpoints reach the changelog in sequence: the records a failed flush left
    unsent (checkpoint N) precede those of the checkpoint that carries them (N+1)."""
    producer = _Producer()
    send = ChangelogSend(producer, "changelog", deque([(0, b"c:n+1", b"new")]), None)
    send.carry([(0, b"c:n:0", b"old"), (0, b"c:n:1", b"old")])
    send.wait(1.0)
    assert [key for key, _ in producer.records] == [b"c:n:0", b"c:n:1", b"c:n+1"] and send.total == 3
