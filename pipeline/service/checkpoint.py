"""One checkpoint: flush sinks → write changed state to the changelog → commit offsets.

The order is what makes a crash safe: offsets are committed only once the
alerts and dead letters of the records before them are written and the state
they built is in the changelog. A sink that cannot take writes raises
``SinkUnavailable`` out of ``flush_sinks``; nothing after it runs, so no offset
passes unflushed data (the caller pauses consumption and retries). An alert
that cannot even be serialized becomes a dead letter instead of stopping the
checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, IllegalGenerationError, RebalanceInProgressError, UnknownMemberIdError
from kafka.structs import OffsetAndMetadata

from pipeline.metrics import ServiceMetrics
from pipeline.service.partitions import ORIGIN_HEADER, PartitionState
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.base import Rejected, Sink, Unencodable, encode
from pipeline.sinks.fanout import Fanout
from schemas.alerts import Alert

log = logging.getLogger("tokenwatch.checkpoint")

MEMBERSHIP_REFUSALS = (CommitFailedError, UnknownMemberIdError, IllegalGenerationError, RebalanceInProgressError)
"""What kafka-python's ``commit`` raises when the group no longer counts this member as the
owner of its partitions (evicted once a broker outage outlasted the session timeout, or the
group re-forming; 3.0 wraps the broker's error in ``CommitFailedError`` and requests the
re-join). Not a reason to stop: the rebalance that follows revokes or drops the partitions."""


def stage_open_alerts(
    states: Iterable[PartitionState], sinks: Iterable[Sink], on_staged: Callable[[Alert], None] | None = None,
) -> int:
    """Add every still-open alert that changed since the last checkpoint as an update (same id
    as its final version); an unchanged one is not written again. ``on_staged`` hears of each
    one staged (the service counts alerts by what reaches the sinks)."""
    fanout = Fanout.of(sinks)
    count = 0
    for state in states:
        still_open: dict[str, bytes] = {}
        for alert in state.open_alerts():
            digest = alert_digest(alert)
            still_open[alert.alert.id] = digest
            if state.staged.get(alert.alert.id) != digest and stage_alert(alert, fanout) is not None:
                count += 1
                if on_staged is not None:
                    on_staged(alert)
        state.staged = still_open
    return count


def alert_digest(alert: Alert) -> bytes:
    """What an alert document is now, to tell whether it changed since it was last written."""
    try:
        return hashlib.blake2b(alert.model_dump_json().encode(), digest_size=16).digest()
    except Exception:  # noqa: BLE001 -- stage_alert reports an unserializable alert; always stage it
        return b""


def stage_alert(alert: Alert, sinks: Iterable[Sink]) -> dict[str, Any] | None:
    """Add one alert to every sink; returns its document. An alert that cannot be serialized
    is dead-lettered with the exception type (its text may quote event content) and None is
    returned: one broken alert never stops the loop or a checkpoint."""
    fanout = Fanout.of(sinks)
    try:
        document = alert.to_json_dict()
    except Exception as exc:  # noqa: BLE001 -- any failure of one alert's content, named by type
        log.error("alert not serializable", extra={"alert_id": alert.alert.id, "error": type(exc).__name__})
        dead = {"reason": f"alert {alert.alert.id} could not be serialized: {type(exc).__name__}",
                "stage": "alert", "error": type(exc).__name__, "format": "tokenwatch",
                "origin": f"alert:{alert.alert.id}", "ingested_at": datetime.now(timezone.utc).isoformat()}
        fanout.add("dead_letter", f"alert-{alert.alert.id}", dead)
        return None
    fanout.add("alert", alert.alert.id, document)
    return document


def flush_sinks(sinks: Iterable[Sink], rounds: int = 3, also: Iterable[Sink] = ()) -> int:
    """Flush every sink; raises ``SinkUnavailable`` from the first that cannot write.

    A document a sink refuses for itself (a mapping conflict) is not retried
    there; it becomes a dead letter in the *other* sinks (with the refusal as the
    reason) and those are flushed again before this returns, so the checkpoint
    that follows never commits past a document that went nowhere. ``also``: sinks flushed
    elsewhere (on a worker thread) that take those dead letters too."""
    sinks = list(sinks)
    everywhere = Fanout([*sinks, *also])
    written = 0
    for _ in range(rounds):
        rerouted = 0
        for sink in sinks:
            result = sink.flush()
            written += result.written
            for rejected in result.rejected:
                log.error("document rejected by sink", extra={"sink": sink.name, "doc_kind": rejected.doc_kind,
                                                               "doc_id": rejected.doc_id, "reason": rejected.reason})
                rerouted += dead_letter_rejected(rejected, sink.name, everywhere.without(sink))
        if not rerouted:
            break
    return written


def dead_letter_rejected(rejected: Rejected, refused_by: str, others: Iterable[Sink]) -> int:
    """Hand a refused document to the other sinks as a dead letter; returns how many took it.

    The refused document rides along as ``raw`` unless it cannot be encoded (then the
    other sinks would refuse it too): its kind, id and the reason stay."""
    doc_id = f"rejected-{refused_by}-{rejected.doc_kind}-{rejected.doc_id}"
    document: dict[str, Any] = {
        "reason": f"{refused_by} refused {rejected.doc_kind} {rejected.doc_id}: {rejected.reason}",
        "format": "tokenwatch",
        "origin": f"sink:{refused_by}",
        "ingested_at": datetime.now(timezone.utc).isoformat(),
        "rejected": {"kind": rejected.doc_kind, "id": rejected.doc_id, "status": rejected.status},
    }
    raw = dict(rejected.document)
    try:
        encode(raw)
        document["raw"] = raw
    except Unencodable:
        document["raw_omitted"] = True
    taken = Fanout.of(others).add("dead_letter", doc_id, document)
    if not taken:
        log.error("refused document has no other sink to go to", extra={"doc_id": doc_id})
    return taken


def changelog_records(
    states: Iterable[PartitionState], offsets: Mapping[TopicPartition, int] | None = None,
) -> deque[tuple[int, bytes, bytes | None]]:
    """(changelog partition, key, value) of the chunks holding what changed since the last
    checkpoint (``pipeline.service.changelog``), each partition's carrying the ``offsets`` of
    its input partitions: a restore resumes there even if the commit never happened."""
    offsets = offsets or {}
    return deque(
        (state.partition, key, value) for state in states
        for key, value in state.log.checkpoint_records(
            state.store, {(tp.topic, tp.partition): off for tp, off in offsets.items() if tp.partition == state.partition})
    )


class ChangelogSend:
    """A checkpoint's changelog records, sent a slice at a time: thousands of ``producer.send``
    calls cost the loop most of a second, so the service sends a slice per loop turn and keeps
    judging events meanwhile; the checkpoint's offsets wait until every record is acknowledged."""

    def __init__(self, producer: KafkaProducer, topic: str, records: deque[tuple[int, bytes, bytes | None]],
                 origin: bytes | None) -> None:
        self.producer = producer
        self.topic = topic
        self.records = records
        self.total = len(records)
        self.headers = [(ORIGIN_HEADER, origin)] if origin is not None else None
        self.futures: list[Any] = []
        self.sent: list[tuple[int, bytes, bytes | None]] = []  # handed to the producer (a failed send resends)
        self.acknowledged = False  # every record acknowledged: what remains is the commit

    def carry(self, records: Iterable[tuple[int, bytes, bytes | None]]) -> None:
        """Records of an earlier checkpoint that were never sent (its flush failed): they go out
        before this checkpoint's, so a partition's checkpoints reach the changelog in order."""
        carried = list(records)
        self.records.extendleft(reversed(carried))
        self.total += len(carried)

    def send(self, budget: int) -> None:
        records, send = self.records, self.producer.send
        for _ in range(min(budget, len(records))):
            record = records.popleft()
            self.sent.append(record)  # first: a send that raises (no metadata in max_block_ms) is resent too
            partition, key, value = record
            self.futures.append(send(self.topic, key=key, value=value, partition=partition, headers=self.headers))

    def done(self) -> bool:
        """Every record sent and acknowledged; raises the first send error (offsets then stay)."""
        if self.records:
            return False
        futures = self.futures
        while futures and futures[-1].is_done:
            futures.pop().get(timeout=0)  # raises what failed
        self.acknowledged = not futures
        return self.acknowledged

    def wait(self, timeout_s: float) -> None:
        """Send the rest and wait for every ack; raises the first send error."""
        self.send(len(self.records))
        self.producer.flush(timeout=timeout_s)
        for future in self.futures:
            future.get(timeout=0)  # raises the send error: the checkpoint fails, offsets stay
        self.futures.clear()
        self.acknowledged = True

    def unacknowledged(self) -> list[tuple[int, bytes, bytes | None]]:
        """After a send error or timeout: every record of this checkpoint (sent or not), for the
        next checkpoint to carry ahead of its own (``carry``). Some may have landed, but the set is
        complete only once all its parts have, and the checkpoints after it build on it (its
        ``prev``); resending a part that landed writes the same key and value again. Empty once
        every record is acknowledged (then only the commit failed)."""
        return [] if self.acknowledged else [*self.sent, *self.records]


def commit(consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    if offsets:
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})


@dataclass
class PendingCheckpoint:
    """A checkpoint whose sinks are flushing and whose state changes and offsets were taken
    together, in the same step as the flush began; the offsets are committed once every
    changelog record is acknowledged (``ChangelogSend``) and the flushes are over.

    Why one step: an event judged after the flush began has its alerts only in the sinks'
    next buffer, so its offset must not be among the ones this checkpoint commits, nor its
    effect in the state this checkpoint writes. Encoding a partition later (a loop turn
    after the flush) once let a kill -9 lose such an alert: the committed offset skipped
    its event and the restored state held its effect (tests/service/test_checkpoint_in_flight.py)."""

    states: list[PartitionState]
    changelog: ChangelogSend
    offsets: dict[TopicPartition, int]
    written: int
    started: float
    background: list[BackgroundSink]  # flushing on their worker threads
    others: list[Sink]  # flushed already
    flushed: bool = False  # every sink's flush taken (``settle_sinks``): the changelog may go

    def flushes_over(self) -> bool:
        """The background flushes are over (``settle_sinks`` takes their results)."""
        return all(sink.finished() for sink in self.background)

    def ready(self) -> bool:
        """The changelog acknowledged, the background flushes over."""
        return self.changelog.done() and self.flushes_over()

    def settle_sinks(self) -> None:
        """Take the background flushes' results: a document a sink refused becomes a dead letter
        in the other sinks (flushed now); raises ``SinkUnavailable`` (the offsets then stay)."""
        if self.flushed:
            return
        for sink in self.background:
            result = sink.result()
            self.written += result.written
            rerouted = 0
            for rejected in result.rejected:
                log.error("document rejected by sink", extra={"sink": sink.name, "doc_kind": rejected.doc_kind,
                                                               "doc_id": rejected.doc_id, "reason": rejected.reason})
                rerouted += dead_letter_rejected(rejected, sink.name, Fanout(self.others))
            if rerouted:
                self.written += flush_sinks(self.others)
        self.flushed = True

    def commit(self, consumer: KafkaConsumer, metrics: ServiceMetrics | None = None) -> bool:
        """The last step: commit the offsets that moved (an idle checkpoint commits nothing).

        False when the group refused the commit (``MEMBERSHIP_REFUSALS``): the checkpoint's
        changelog is acknowledged, so whoever owns the partitions next resumes at the offsets it
        recorded when they pass the group's (``PartitionState.resume_position``); nothing is
        retired (``ChangelogLog.committed``) and nothing is retried here — the caller waits for
        the rebalance that follows. Any other error raises, committing and retiring nothing: the
        service takes a retriable one (the coordinator away past the request timeout) as a
        checkpoint that did not complete, whose offsets the next checkpoint commits."""
        states, offsets = self.states, self.offsets
        moved = {tp: off for tp, off in offsets.items()
                 if any(state.committed.get(tp, -1) != off for state in states if tp in state.next_offsets)}
        try:
            commit(consumer, moved)
        except MEMBERSHIP_REFUSALS as exc:
            cause = exc.__cause__ or (exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else None)
            log.warning("checkpoint commit refused: this member is no longer in the group; the partitions go "
                        "to the rebalance that follows, their changelog already holds the checkpoint",
                        extra={"partitions": _partitions(moved), "error": type(exc).__name__,
                               "cause": type(cause).__name__ if cause is not None else None})
            return False
        for state in states:
            state.committed.update({tp: off for tp, off in moved.items() if tp in state.next_offsets})
            state.log.committed()
        elapsed = time.perf_counter() - self.started
        if metrics is not None:
            metrics.checkpoint_seconds.observe(elapsed)
            metrics.tracked_tokens.set(sum(len(s.store.tokens) for s in states))
        log.info("checkpoint", extra={"documents": self.written, "state_records": self.changelog.total,
                                      "partitions": len(states),
                                      "offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()}.__repr__(),
                                      "seconds": round(elapsed, 4)})
        return True


def _partitions(offsets: Mapping[TopicPartition, int]) -> str:
    """``topic[p]=offset`` of each offset a refused commit held, for its log line."""
    return ",".join(f"{tp.topic}[{tp.partition}]={offset}" for tp, offset in sorted(offsets.items()))


def begin_checkpoint(
    producer: KafkaProducer,
    changelog_topic: str,
    states: list[PartitionState],
    sinks: Iterable[Sink],
    origin: bytes | None = None,
    on_staged: Callable[[Alert], None] | None = None,
    wait: bool = True,
) -> PendingCheckpoint | None:
    """The first steps of a checkpoint of ``states``: stage open alerts, flush the sinks (raises
    ``SinkUnavailable``), encode the changed state and take the offsets it covers — all before
    the loop judges another event (``PendingCheckpoint``). None when there is nothing to
    checkpoint. ``wait=False``: a ``BackgroundSink`` only starts its flush, and the changelog
    records are sent later, a slice per loop turn (``ChangelogSend.send``)."""
    sinks = list(sinks)
    if not states and not any(sink.pending for sink in sinks):
        return None  # nothing assigned yet (joining the group) and nothing buffered
    started = time.perf_counter()
    stage_open_alerts(states, sinks, on_staged)
    background = [] if wait else [sink for sink in sinks if isinstance(sink, BackgroundSink)]
    others = [sink for sink in sinks if sink not in background]
    written = flush_sinks(others, also=background)
    for sink in background:
        sink.start_flush()
    offsets: dict[TopicPartition, int] = {}
    for state in states:
        offsets.update(state.commit_offsets())  # first: it settles which event ids need a record
    changelog = ChangelogSend(producer, changelog_topic, changelog_records(states, offsets), origin)
    return PendingCheckpoint(states, changelog, offsets, written, started, background, others)


def checkpoint(
    consumer: KafkaConsumer,
    producer: KafkaProducer,
    changelog_topic: str,
    states: list[PartitionState],
    sinks: Iterable[Sink],
    metrics: ServiceMetrics | None = None,
    origin: bytes | None = None,
    on_staged: Callable[[Alert], None] | None = None,
    timeout_s: float = 30.0,
) -> None:
    """The full checkpoint of ``states`` (all assigned, or the ones being revoked), at once."""
    pending = begin_checkpoint(producer, changelog_topic, states, sinks, origin, on_staged)
    if pending is not None:
        complete(pending, consumer, metrics, timeout_s)


def complete(pending: PendingCheckpoint, consumer: KafkaConsumer, metrics: ServiceMetrics | None = None,
             timeout_s: float = 30.0) -> bool:
    """Take the sinks' flushes, then send what is left of the checkpoint's changelog, wait for
    its acks and commit its offsets. The changelog goes out only once every flush succeeded:
    state in the changelog whose alerts no sink holds would be restored after a crash, and the
    replay would judge those events again against state that already has them. False: the
    group refused the commit (``PendingCheckpoint.commit``)."""
    pending.settle_sinks()
    pending.changelog.wait(timeout_s)
    return pending.commit(consumer, metrics)
