"""Backlog replay progress and consumer lag: what an operator watches after a first start on a
full topic or a long outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kafka import TopicPartition
from kafka.errors import IllegalStateError

from pipeline.metrics import ServiceMetrics
from pipeline.service.partitions import PartitionState

log = logging.getLogger("tokenwatch.service")


class BacklogProgress:
    """Progress while replaying a backlog: every ``every_s`` while the lag is above
    ``threshold``, one log line with what was processed, what is left, the rate and the time
    to catch up; one line when caught up."""

    def __init__(self, every_s: float, threshold: int) -> None:
        self.every_s = every_s
        self.threshold = threshold
        self.catching_up = False
        self._last: tuple[float, int] | None = None  # (monotonic time, records) at the last line

    def update(self, lag: int, records: int) -> None:
        now = time.monotonic()
        if lag < self.threshold:
            if self.catching_up:
                log.info("backlog caught up", extra={"records": records, "lag": lag})
            self.catching_up = False
            self._last = None
            return
        if self._last is None:
            self.catching_up = True
            self._last = (now, records)
            log.info("replaying backlog", extra={"records": records, "lag": lag})
            return
        since, before = self._last
        if now - since < self.every_s:
            return
        rate = (records - before) / (now - since)
        eta = lag / rate if rate > 0 else None
        log.info("replaying backlog", extra={"records": records, "lag": lag, "records_per_s": round(rate),
                                              "eta_s": round(eta) if eta is not None else None})
        self._last = (now, records)


def consumer_lag(consumer: Any, assigned: Iterable[TopicPartition], states: Mapping[int, PartitionState],
                 metrics: ServiceMetrics) -> int:
    """Records between each owned partition's next offset and its high watermark, set per
    partition on the lag gauge; their sum. A partition not yet restored or fetched counts 0."""
    total = 0
    for tp in assigned:
        high = consumer.highwater(tp)
        state = states.get(tp.partition)
        if high is not None and state is not None and tp in state.next_offsets:
            lag = max(0, high - read_up_to(consumer, tp, state.next_offsets[tp]))
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
            total += lag
    return total


def read_up_to(consumer: Any, tp: TopicPartition, next_offset: int) -> int:
    """Where the member stands on ``tp``: past the last record it processed (``next_offset``),
    or further, where the consumer went past offsets it never hands over (a transactional
    producer's commit and abort markers, aborted batches), which the high watermark counts:
    without them a partition written in transactions never reads as caught up. Asked without
    waiting (every position is known once the partition is fetched)."""
    try:
        position = consumer.position(tp, timeout_ms=0)
    except IllegalStateError:  # no longer assigned (a rebalance under way): what it processed stands
        return next_offset
    return next_offset if position is None else max(next_offset, position)
