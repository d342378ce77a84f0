"""The consumer lag the service reports and its idle checkpoint trusts: records between where
the member stands on a partition and the partition's high watermark. Offsets the consumer
passes without handing them over (a transactional producer's commit markers) are not lag."""

from __future__ import annotations

from kafka import TopicPartition
from kafka.errors import IllegalStateError

from pipeline.config import Settings
from pipeline.metrics import ServiceMetrics
from pipeline.service.backlog import consumer_lag
from pipeline.service.partitions import new_partition_state

TP = TopicPartition("input", 0)


class _Consumer:
    def __init__(self, highwater: int | None, position: int | None) -> None:
        self._highwater, self._position = highwater, position

    def highwater(self, tp: TopicPartition) -> int | None:
        return self._highwater

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        assert timeout_ms == 0  # asked on the loop: never waits for the broker
        if self._position == -1:
            raise IllegalStateError("Partition is not assigned")
        return self._position


def _lag(highwater: int | None, position: int | None, next_offset: int) -> tuple[int, float]:
    state = new_partition_state(0, Settings(), None)
    state.next_offsets[TP] = next_offset
    metrics = ServiceMetrics()
    total = consumer_lag(_Consumer(highwater, position), [TP], {0: state}, metrics)
    gauge = metrics.registry.get_sample_value("tokenwatch_consumer_lag", {"topic": TP.topic, "partition": "0"})
    return total, gauge if gauge is not None else 0.0


def test_a_commit_marker_past_the_last_record_is_not_lag() -> None:
    # Records 0-9 processed; offset 10 is the transaction's commit marker; the consumer stands at 11.
    assert _lag(highwater=11, position=11, next_offset=10) == (0, 0.0)


def test_records_not_yet_processed_are_lag() -> None:
    assert _lag(highwater=25, position=10, next_offset=10) == (15, 15.0)


def test_an_unknown_position_falls_back_to_the_last_record_processed() -> None:
    assert _lag(highwater=12, position=None, next_offset=10) == (2, 2.0)


def test_a_partition_the_consumer_no_longer_holds_counts_from_the_last_record_processed() -> None:
    assert _lag(highwater=12, position=-1, next_offset=10) == (2, 2.0)  # mid-rebalance: not a crash


def test_a_partition_not_fetched_yet_counts_nothing() -> None:
    assert _lag(highwater=None, position=None, next_offset=10) == (0, 0.0)  # and no gauge set
