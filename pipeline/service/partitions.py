"""Per-partition detection state and its restore from the changelog.

State unit = input partition *number*. Changelog layout (one store, topic
``<changelog_prefix>.state``, as many partitions as the input topics):
changelog partition ``p`` holds the state of input partition ``p``, records
keyed by the state-codec key (``t:<token>``, ``f:<family>`` …), value None =
tombstone; the topic is compacted. With several input topics, partition ``p``
of each is one unit (they must have the same partition count; the range
assignor, which the service sets, hands partition ``p`` of every topic to the
same member).

Restore reads the changelog partition from the beginning until a fetch brings
nothing new *and* the position is at or past the reported end offset — the
end offset alone is not trusted (Tansu reports it short). It also yields the input offsets
recorded by the last checkpoint it applied; the rewind resumes each input partition at the
larger of those and the group's commit (``PartitionState.resume_position``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from detectors.state import StateStore
from pipeline.config import Settings
from pipeline.runtime.build import build_engine
from pipeline.runtime.engine import Engine, Enrich
from pipeline.service.changelog import ChangelogLog, ChangelogReader
from schemas.alerts import Alert

STATE_STORE = "state"


@dataclass
class PartitionState:
    """The engine of one partition number, and the offsets a checkpoint may commit."""

    partition: int
    engine: Engine
    # Next offset to commit per input TopicPartition (last processed + 1).
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    # Events submitted since the last checkpoint: event id -> (input partition, offset).
    inflight: dict[str, tuple[TopicPartition, int]] = field(default_factory=dict)
    records: int = 0
    last_event_wall: float = 0.0  # monotonic time of the last event submitted
    # What the last checkpoint wrote, so an idle one writes nothing: open alert id -> digest of
    # the document staged for it, and the offsets committed.
    staged: dict[str, bytes] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    # The partition's changelog as chunks: what the next checkpoint writes and retires.
    log: ChangelogLog = field(default_factory=ChangelogLog)
    # The input offsets the restored checkpoint recorded: the state holds every event below them.
    resume_at: dict[TopicPartition, int] = field(default_factory=dict)
    # Events of the revocations feed submitted since the last checkpoint: a restart reads that
    # whole topic again, so their ids always go to the changelog.
    fed: set[str] = field(default_factory=set)
    # The engine's counters already moved to the service metrics (late, reordered events). Kept
    # here, not in a map keyed by the engine: a compiled Engine takes no weak reference.
    metered: Counter[str] = field(default_factory=Counter)

    @property
    def store(self) -> StateStore:
        return self.engine.state

    def submitted(self, event_id: str, tp: TopicPartition, offset: int) -> None:
        self.inflight[event_id] = (tp, offset)
        self.last_event_wall = time.monotonic()

    def commit_offsets(self) -> dict[TopicPartition, int]:
        """Offsets safe to commit: below any event still held in the engine's reorder buffer
        (its effect is not in the state yet, so a crash must replay it).

        Write-ahead rule for the ids of applied events (kept with the state so that a replay
        after a restore drops what the state already holds): only an event at or past the
        offsets committed here can be delivered again, so only its id is written to the
        changelog (``Engine.keep_for_replay``); the ids of events below them are not (about
        one record per input record saved). Events of the revocations feed are always kept:
        a restart reads that whole topic again. A duplicate *in the input* of an event
        committed before a restore is judged again; its alerts have the same deterministic
        ids and fold into one.
        Call this right before encoding the partition's changelog records."""
        held = self.engine.pending_event_ids()
        safe = dict(self.next_offsets)
        kept: dict[str, tuple[TopicPartition, int]] = {}
        for event_id, (tp, offset) in self.inflight.items():
            if event_id in held:
                kept[event_id] = (tp, offset)
                if offset < safe.get(tp, offset + 1):
                    safe[tp] = offset
        replayed = [event_id for event_id, (tp, offset) in self.inflight.items()
                    if event_id not in held and offset >= safe.get(tp, offset + 1)]
        self.engine.keep_for_replay([*replayed, *(event_id for event_id in self.fed if event_id not in held)])
        self.fed = {event_id for event_id in self.fed if event_id in held}
        self.inflight = kept
        return safe

    def resume_position(self, tp: TopicPartition, committed: int | None) -> int | None:
        """Where input partition ``tp`` resumes after the restore: the group's ``committed``
        offset, or the one the restored checkpoint recorded when it is further — a kill between
        the changelog's ack and the commit; the events between are in the state, their alerts
        in the sinks, their ids not written ahead (``pipeline.service.changelog``). None: neither
        is known. The position becomes this partition's next offset to commit, so the next
        checkpoint records and commits it even if no event of ``tp`` comes before it."""
        known = [offset for offset in (committed, self.resume_at.get(tp)) if offset is not None]
        if not known:
            return None
        position = max(known)
        if committed is not None:
            self.committed[tp] = committed
        self.next_offsets[tp] = position
        return position

    def open_alerts(self) -> list[Alert]:
        """Alerts still inside their fold window, as they stand now (emitted as updates at a
        checkpoint; the same id is written again, with a higher count, when they close)."""
        alerter = self.engine.alerter
        return alerter.snapshot()


def new_partition_state(partition: int, settings: Settings, enrich: Enrich | None) -> PartitionState:
    return PartitionState(partition, build_engine(settings, enrich, track_changes=True))


ORIGIN_HEADER = "tokenwatch.input"
"""Changelog record header naming the input topics whose state the record holds."""


class ChangelogMismatch(Exception):
    """The changelog holds the state of other input topics than the ones being read."""


def changelog_origin(input_topics: Iterable[str]) -> bytes:
    """The ``ORIGIN_HEADER`` value: the input topics, sorted, comma-separated."""
    return ",".join(sorted(input_topics)).encode("utf-8")


def restore_partition(
    consumer: KafkaConsumer, topic: str, state: PartitionState, idle_polls: int = 2, timeout_s: float = 120.0,
    origin: bytes | None = None, call_timeout_ms: int | None = None,
) -> int:
    """Apply changelog partition ``state.partition`` of ``topic`` to the state; returns records read.

    ``consumer`` is a group-less consumer reused for every restore. The restored
    keys are not marked dirty (they are already in the changelog). A record written
    for other input topics than ``origin`` raises ``ChangelogMismatch`` (records
    without the header predate it and are taken). ``call_timeout_ms`` bounds each blocking
    broker call (end offset, position; default ``kafka.request_timeout_ms``): a broker that
    does not answer fails the attempt with ``KafkaTimeoutError`` sooner, for the caller to retry.
    """
    bound: dict[str, Any] = {} if call_timeout_ms is None else {"timeout_ms": call_timeout_ms}
    tp = TopicPartition(topic, state.partition)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    reader = ChangelogReader(state.store)
    count = 0
    empty = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=200).get(tp, [])
        for record in batch:
            if origin is not None:
                _check_origin(record, origin, topic)
            reader.apply(record.key, record.value)
        count += len(batch)
        if batch:
            empty = 0
            continue
        empty += 1
        end = consumer.end_offsets([tp], **bound).get(tp) or 0
        if empty >= idle_polls and consumer.position(tp, **bound) >= end:
            break
    else:
        raise TimeoutError(f"restoring {topic}[{state.partition}] did not finish in {timeout_s}s")
    state.log = reader.finish()
    state.resume_at = {TopicPartition(name, number): offset for (name, number), offset in reader.offsets.items()
                       if number == state.partition}
    state.store.take_dirty()  # the restored keys are in the changelog already
    state.engine.restored()
    return count


def _check_origin(record: Any, origin: bytes, topic: str) -> None:
    for name, value in record.headers or ():
        if name == ORIGIN_HEADER and value != origin:
            theirs = value.decode("utf-8", "replace")
            ours = origin.decode("utf-8", "replace")
            raise ChangelogMismatch(
                f"changelog {topic} holds the state of input topics [{theirs}], not of [{ours}] "
                "(kafka.topics.input); give these topics their own kafka.topics.changelog_prefix, "
                "or correct kafka.topics.input"
            )
