"""A checkpoint in flight (``begin_checkpoint(wait=False)``: sinks flushing on their own
thread, changelog records sent a slice per loop turn) while the loop keeps judging events:
a kill -9 at any point loses no alert. Every alert is either in a sink's flushed documents
or raised again by the replay after the restore (the integration test's refresh-reuse
alert was lost this way: its event was judged between the flush and the state's encoding,
so the offsets committed covered an alert that no sink had written)."""

from __future__ import annotations

import pytest

from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.service.checkpoint import begin_checkpoint, complete, stage_alert
from pipeline.service.partitions import PartitionState, new_partition_state
from pipeline.sinks.base import MemorySink
from tests.service.test_changelog_write_ahead import TP, _Consumer, _feed, _lines, _Producer, restored


def _judge(state: PartitionState, normalizer: Normalizer, lines: list[bytes], first: int, last: int,
           sink: MemorySink) -> None:
    """The service loop: each alert a submit returns goes to the sinks' buffer at once."""
    for offset in range(first, last):
        for event in normalizer.normalize(lines[offset], f"s:{offset}").events:
            state.submitted(event.event_id, TP, offset)
            for alert in state.engine.submit(event):
                stage_alert(alert, [sink])
        state.next_offsets[TP] = offset + 1


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
        pending = begin_checkpoint(producer, "changelog", [first], [sink], wait=False)  # type: ignore[arg-type]
        assert pending is not None
        _judge(first, normalizer, lines, begin_at, begin_at + judged_in_flight, sink)  # the loop goes on
        complete(pending, consumer)  # type: ignore[arg-type]
        # kill -9 here: whatever the sinks hold unflushed is gone.
        durable = {doc_id for (kind, doc_id) in sink.documents if kind == "alert"}
        committed = consumer.commits[-1][TP].offset if consumer.commits else 0
        second = restored(producer.records)
        replayed = {alert.alert.id for alert in _feed(second, normalizer, lines, committed) + second.engine.flush()}
        if want - durable - replayed:
            lost[begin_at] = want - durable - replayed
    assert lost == {}
