"""The service's own checkpoint path against the changelog (``Service.checkpoint``,
``_advance_checkpoint``, ``_settle_checkpoint``, the revoke checkpoint, ``_restore``), with a broker
double in place of Kafka: what lands in the changelog topic, in what order, and what a restore of
it then gives. The Kafka clients are the only fakes; engines, sinks and the changelog are real."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    CommitFailedError,
    IllegalGenerationError,
    KafkaConnectionError,
    KafkaTimeoutError,
    NotCoordinatorError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from pipeline.config import Settings
from pipeline.ingest.config import TrustConfig
from pipeline.service import changelog, checkpoint, rebalance, revocations, runner
from pipeline.service.changelog import decode_chunk
from pipeline.service.config import ServiceConfig
from pipeline.service.partitions import PartitionState, new_partition_state, restore_partition
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.base import FlushResult, MemorySink, SinkUnavailable
from tests.detectors.test_state_codec import view
from tests.service.test_changelog_write_ahead import _lines as _sample_lines

TP = TopicPartition(Settings().kafka.topics.input[0], 0)
SETTINGS = Settings(trust=TrustConfig(trusted_topics=(TP.topic,)))  # canonical lines, written below
CHANGELOG = SETTINGS.kafka.topics.changelog("state")


def _line(n: int) -> bytes:
    """Input record ``n``: a token issued every 30 s across a few users and sessions, so every
    checkpoint changes state (new tokens, sessions moving on, expiries), none held back."""
    at = datetime(2026, 11, 23, 1, tzinfo=timezone.utc) + timedelta(seconds=30 * n)
    stamp, expires = (moment.strftime("%Y-%m-%dT%H:%M:%SZ") for moment in (at, at + timedelta(minutes=10)))
    return json.dumps({
        "canonical_version": 1, "event_id": f"e{n}", "kind": "issued", "time": stamp, "source": "idp",
        "tenant": "sample", "subject": {"id": f"user{n % 7}", "name": f"user{n % 7}", "kind": "user"},
        "client_id": "portal", "session_id": f"session{n % 5}",
        "network": {"ip": f"79.200.1.{n % 50}", "user_agent": "Mozilla/5.0"},
        "token": {"id": f"at{n}", "type": "access", "family_id": f"session{n % 5}", "parent_id": None,
                  "issued_at": stamp, "expires_at": expires},
        "scopes": ["openid"],
    }).encode()


class _Future:
    def __init__(self) -> None:
        self.is_done = False
        self.error: Exception | None = None

    def get(self, timeout: float = 0) -> None:
        if not self.is_done:
            raise KafkaTimeoutError("batch still queued")  # what kafka-python raises past the wait
        if self.error is not None:
            raise self.error


class _Broker:
    """The changelog topic (partition 0) and the group's commits. ``hold``: records sent stay
    queued in the producer (a send that times out) until ``release``."""

    def __init__(self) -> None:
        self.changelog: list[SimpleNamespace] = []
        self.queued: list[tuple[_Future, SimpleNamespace]] = []
        self.commits: dict[TopicPartition, int] = {}
        self.hold = False
        self.restore_failures: list[Exception] = []
        self.expire: list[int] = []  # the next changelog sends that expire (n: the n-th from now, 1 first)
        self.sends = 0

    def release(self) -> None:
        for future, record in self.queued:
            self.changelog.append(record)
            future.is_done = True
        self.queued.clear()

    def seqs(self) -> list[int]:
        """The seq of each chunk in the order it landed."""
        return [decode_chunk(r.key, r.value).seq for r in self.changelog if r.value is not None]


class _Producer:
    def __init__(self, broker: _Broker) -> None:
        self.broker = broker

    def send(self, topic: str, key: bytes, value: bytes | None, partition: int = 0, headers: Any = None) -> _Future:
        future = _Future()
        if topic != CHANGELOG:  # revocations: not what these tests follow
            future.is_done = True
            return future
        self.broker.sends += 1
        if self.broker.sends in self.broker.expire:  # the batch expired: never lands, the future fails
            future.is_done, future.error = True, KafkaTimeoutError("expiring 1 record(s): delivery timeout")
            return future
        self.broker.queued.append((future, SimpleNamespace(key=key, value=value, headers=headers)))
        if not self.broker.hold:
            self.broker.release()
        return future

    def flush(self, timeout: float | None = None) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


class _GroupConsumer:
    """The service's group consumer: commits, pauses and seeks; no records (the tests hand them
    to ``Service._process``)."""

    def __init__(self, broker: _Broker) -> None:
        self.broker = broker
        self.positions: dict[TopicPartition, int] = {}

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        self.broker.commits.update({tp: meta.offset for tp, meta in offsets.items()})

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        return self.broker.commits.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.positions[tp] = 0

    def pause(self, *_tps: TopicPartition) -> None:
        return None

    def resume(self, *_tps: TopicPartition) -> None:
        return None

    def paused(self) -> set[TopicPartition]:
        return set()

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        return {}

    def highwater(self, _tp: TopicPartition) -> int | None:
        return None


class _ChangelogConsumer:
    """A group-less consumer: reads the changelog topic from the beginning (the restore).
    ``broker.restore_failures``: what its next end-offset requests raise (a broker away)."""

    def __init__(self, broker: _Broker) -> None:
        self.broker = broker
        self.at = 0

    def assign(self, _tps: list[TopicPartition]) -> None:
        return None

    def seek_to_beginning(self, *_tps: TopicPartition) -> None:
        self.at = 0

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        batch = self.broker.changelog[self.at: self.at + 10]
        self.at += len(batch)
        return {TopicPartition(CHANGELOG, 0): batch}

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int | None = None) -> dict[TopicPartition, int]:
        if self.broker.restore_failures:
            raise self.broker.restore_failures.pop(0)
        return {tp: len(self.broker.changelog) for tp in tps}

    def position(self, _tp: TopicPartition, timeout_ms: int | None = None) -> int:
        return self.at

    def close(self) -> None:
        return None


class _FailsOnce(MemorySink):
    """Down for the first flush after ``fail_next`` is set (an Elasticsearch outage)."""

    fail_next: bool = False

    def flush(self) -> FlushResult:
        if self.fail_next:
            self.fail_next = False
            raise SinkUnavailable(self.name, "outage", self.pending)
        return super().flush()


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> _Broker:
    broker = _Broker()

    def consumer(**kwargs: Any) -> Any:
        return _GroupConsumer(broker) if kwargs.get("group_id") else _ChangelogConsumer(broker)

    monkeypatch.setattr(runner, "KafkaConsumer", consumer)
    monkeypatch.setattr(revocations, "KafkaConsumer", consumer)
    monkeypatch.setattr(runner, "KafkaProducer", lambda **_: _Producer(broker))
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 300)  # checkpoints of several parts
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 1 << 40)  # and no base but the first
    return broker


def _service(hasher: Any, sink: Any) -> runner.Service:
    service = runner.Service(SETTINGS, ServiceConfig(sinks=("memory",)), hasher, [sink])
    _assign(service)
    return service


def _assign(service: runner.Service) -> None:
    """Partition 0 assigned: restored from the changelog and rewound, as the loop does."""
    service.rebalance.on_assigned([TP])
    service.rebalance.restore_new(resume=True)


def _judge(service: runner.Service, first: int, last: int) -> None:
    service._process(TP, [SimpleNamespace(offset=n, value=_line(n)) for n in range(first, last)])  # noqa: SLF001 -- the loop's own step


def _restored(broker: _Broker) -> PartitionState:
    """What the partition's next owner restores from the changelog as it stands."""
    state = new_partition_state(0, SETTINGS, None)
    restore_partition(_ChangelogConsumer(broker), CHANGELOG, state)
    return state


@pytest.mark.parametrize("settled_by", ["advance", "next checkpoint"])
def test_a_failed_flush_carries_its_changelog_ahead_of_the_checkpoint_that_retries(
    hasher: Any, broker: _Broker, settled_by: str,
) -> None:
    """A periodic checkpoint's background flush fails (its changelog never sent); the loop judged
    more events meanwhile. The retry — the loop's next step (``_advance_checkpoint``) or the next
    checkpoint (``_settle_checkpoint``) — sends the failed checkpoint's chunks before its own,
    which builds on them: a restore then stands at the retry, with its offsets."""
    sink = _FailsOnce(name="memory")
    service = _service(hasher, BackgroundSink(sink))
    _judge(service, 0, 20)
    assert service.checkpoint()
    first = broker.seqs()
    sink.fail_next = True
    _judge(service, 20, 40)
    assert service.checkpoint(wait=False) and service._pending is not None  # noqa: SLF001 -- the checkpoint in flight
    _judge(service, 40, 60)  # the loop goes on while the flush runs
    if settled_by == "advance":
        while service._pending is not None:  # noqa: SLF001 -- the loop advances it each turn
            service._advance_checkpoint()  # noqa: SLF001 -- the loop's own step
    else:
        assert service.checkpoint()
    landed = broker.seqs()[len(first):]
    failed, retry = sorted(set(landed))
    assert landed == sorted(landed) and landed.count(failed) > 1 and landed.count(retry) > 1
    assert failed == max(first) + 1 and not broker.queued
    state = service.states[0]
    assert broker.commits[TP] == state.next_offsets[TP] == 60
    again = _restored(broker)
    assert view(again.store) == view(state.store) and again.resume_at == {TP: 60}
    assert again.log.last_seq == retry


def test_a_revoke_checkpoint_that_timed_out_then_landed_leaves_the_partitions_next_state(
    hasher: Any, broker: _Broker,
) -> None:
    """The revoke checkpoint K's send times out (the producer keeps it queued), the partition
    comes back to the same member, which restores without K and rewinds to the commit; then K
    lands, ahead of the member's new checkpoints (one producer). The member's seqs start past
    K, so K's parts do not mix with its new ones (with the same seq they did: K counted as cut
    short and every later checkpoint as built on it, while the member committed — a restore
    stood at the revoke's commit and resumed at the member's last, the events between lost)."""
    service = _service(hasher, MemorySink(name="memory"))
    _judge(service, 0, 20)
    assert service.checkpoint()
    _judge(service, 20, 40)
    broker.hold = True
    service.rebalance.on_revoked([TP])  # the checkpoint fails: its records wait in the producer
    assert 0 not in service.states and broker.commits[TP] == 20 and broker.queued
    broker.hold = False
    _assign(service)
    assert service.rebalance.consumer.positions[TP] == 20
    before = len(broker.seqs())
    broker.release()  # K lands now
    late, landed = broker.seqs()[-1], len(broker.seqs())
    _judge(service, 20, 30)  # fewer changes than K: fewer parts (with K's seq, some of K's stayed)
    assert service.checkpoint()
    assert 1 < len(broker.seqs()) - landed < landed - before
    _judge(service, 30, 80)
    assert service.checkpoint()
    assert min(broker.seqs()[landed:]) > late + 1  # the member's seqs: well past K
    state = service.states[0]
    again = _restored(broker)
    assert again.resume_position(TP, broker.commits[TP]) == broker.commits[TP] == state.next_offsets[TP]
    assert view(again.store) == view(state.store)


# -- the whole loop (``Service.run``) through a broker outage and the group's re-join ----------


class _NoRevocations:
    """The revocations topic, empty."""

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return {0}

    def assign(self, _tps: list[TopicPartition]) -> None:
        return None

    def seek_to_beginning(self, *_tps: TopicPartition) -> None:
        return None

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        return {}

    def close(self) -> None:
        return None


class _Member(_GroupConsumer):
    """The group consumer of a member ``Service.run`` drives: joins at the first poll, hands out
    the input partition's records from its position (10 a poll, none while paused), and refuses
    commits as kafka-python 3 does: ``refusals`` are raised by the next commits, and the rebalance
    that follows comes ``away`` polls later (the broker still unreachable) — partitions lost after
    an eviction, revoked when the group is re-forming. Once every record is consumed it stops
    the service (a SIGTERM) after a few idle polls; ``stop_after`` stops it after that many polls."""

    def __init__(self, broker: _Broker, lines: list[bytes]) -> None:
        super().__init__(broker)
        self.lines = lines
        self.rebalance: Any = None
        self.stop: Callable[[], None] = lambda: None
        self.health: Callable[[], Any] = lambda: None
        self.paused_tps: set[TopicPartition] = set()
        self.refusals: list[Exception | None] = []  # the next commits: None accepted, an error raised
        self.history: list[int] = []  # the offsets committed, in order
        self.rejoin: str | None = None  # the rebalance a refusal brings: "lost" or "revoked"
        self.away = 0
        self.outside: list[dict[TopicPartition, Any]] = []  # commits tried after a refusal, before the rebalance
        self.unrestored_batches = 0  # records handed out while the partition waited for its state
        self.polls_waiting = 0  # polls while a failed restore waited for its retry
        self.healths: list[Any] = []
        self.every_health: list[Any] = []  # /healthz at each poll
        self.stop_after: int | None = None
        self.polls = 0
        self.joined = False
        self.idle = 0

    def subscribe(self, _topics: list[str], listener: Any) -> None:
        self.rebalance = listener.rebalance

    def pause(self, *tps: TopicPartition) -> None:
        self.paused_tps |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused_tps -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self.paused_tps)

    def close(self) -> None:
        return None

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self.rejoin is not None:  # the generation is reset: kafka-python sends nothing
            self.outside.append(dict(offsets))
            raise CommitFailedError("not part of an active group")
        error = self.refusals.pop(0) if self.refusals else None
        if error is not None and not isinstance(error, checkpoint.MEMBERSHIP_REFUSALS):
            raise error  # the coordinator away: a timeout, still in the group
        if error is not None:
            cause = error.args[0] if error.args and isinstance(error.args[0], Exception) else error
            evicted = isinstance(cause, (UnknownMemberIdError, IllegalGenerationError))
            self.rejoin = "lost" if evicted else "revoked"
            raise error
        self.history.extend(meta.offset for meta in offsets.values())
        super().commit(offsets)

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        self.polls += 1
        self.every_health.append(self.health())
        if self.polls == self.stop_after:
            self.stop()
        if self.rebalance.to_restore:  # still waiting after the loop's restore: it failed
            self.polls_waiting += 1
            self.healths.append(self.health())
        if not self.joined:
            self.joined = True
            self.rebalance.on_assigned([TP])
        elif self.rejoin is not None:
            if self.away:
                self.away -= 1
            else:
                kind, self.rejoin = self.rejoin, None
                (self.rebalance.on_lost if kind == "lost" else self.rebalance.on_revoked)([TP])
                self.rebalance.on_assigned([TP])
        at = self.positions.get(TP, 0)
        if TP in self.rebalance.assigned and TP not in self.paused_tps and at < len(self.lines):
            batch = [SimpleNamespace(offset=n, value=self.lines[n]) for n in range(at, min(at + 10, len(self.lines)))]
            self.positions[TP] = at + len(batch)
            self.unrestored_batches += TP.partition not in self.rebalance.states
            return {TP: batch}
        if at >= len(self.lines) and TP not in self.paused_tps and self.rejoin is None:
            self.idle += 1
            if self.idle == 5:
                self.stop()
        return {}


Run = Callable[[_Broker], tuple[runner.Service, _Member]]


@pytest.fixture
def member(hasher: Any, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Builds a service on ``broker`` over the sample stream, its group consumer a ``_Member``,
    checkpointing every 20 records (commits mid-stream), with the memory sink."""
    lines = _sample_lines()
    monkeypatch.setattr(revocations, "KafkaConsumer", lambda **_: _NoRevocations())
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 300)
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 1 << 40)

    def build(broker: _Broker) -> tuple[runner.Service, _Member]:
        def consumer(**kwargs: Any) -> Any:
            return _Member(broker, lines) if kwargs.get("group_id") else _ChangelogConsumer(broker)

        monkeypatch.setattr(runner, "KafkaConsumer", consumer)
        monkeypatch.setattr(runner, "KafkaProducer", lambda **_: _Producer(broker))
        config = ServiceConfig(sinks=("memory",), checkpoint_records=20)
        service = runner.Service(SETTINGS, config, hasher, [MemorySink(name="memory")])
        group = service.consumer
        assert isinstance(group, _Member)
        group.stop, group.health = service.stop, service.health
        return service, group

    return build


def _alerts(service: runner.Service) -> dict[str, dict[str, Any]]:
    (sink,) = service.sinks
    assert isinstance(sink, MemorySink)
    return {doc_id: doc for (kind, doc_id), doc in sink.documents.items() if kind == "alert"}


@pytest.fixture
def uninterrupted(member: Run) -> tuple[dict[str, dict[str, Any]], list[int]]:
    """The alert documents and the commits of the sample stream run through without a fault."""
    service, group = member(_Broker())
    service.run()
    return _alerts(service), group.history


@pytest.mark.parametrize("refusal", [
    CommitFailedError(UnknownMemberIdError()),  # evicted: the outage outlasted the session timeout
    CommitFailedError(IllegalGenerationError()),
    CommitFailedError(RebalanceInProgressError()),  # the group re-forming: the member is still in it
    RebalanceInProgressError("the consumer is undergoing a rebalance"),
], ids=["unknown-member", "illegal-generation", "rebalancing", "rebalancing-raised"])
def test_a_commit_the_group_refuses_waits_for_the_rebalance_and_loses_no_alert(
    member: Run, uninterrupted: tuple[dict[str, dict[str, Any]], list[int]], refusal: Exception,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The second checkpoint's commit is refused (its changelog acknowledged), and the group
    re-forms three polls later, the broker still away meanwhile. The loop goes on: it tries no
    commit and no checkpoint until the rebalance has taken the partition (dropped unsaved when
    evicted, checkpointed on revoke otherwise), restores it from the changelog and ends with
    every alert of the stream once, as the run without the refusal did (before: the refusal
    raised out of ``run``, the member exited 1)."""
    want, commits = uninterrupted
    broker = _Broker()
    service, group = member(broker)
    group.refusals, group.away = [None, refusal], 3
    with caplog.at_level(logging.WARNING):
        service.run()
    assert not group.refusals and group.rejoin is None  # refused, then re-joined
    assert group.outside == []  # nothing tried for the partition between the refusal and the rebalance
    refused = [r for r in caplog.records if r.getMessage().startswith("checkpoint commit refused")]
    assert len(refused) == 1 and TP.topic + "[0]=" in refused[0].__dict__["partitions"]
    assert group.history == sorted(group.history) and group.history[-1] == commits[-1]
    assert group.unrestored_batches == 0
    assert _alerts(service) == want


def test_a_restore_the_broker_times_out_is_retried_with_backoff_while_the_partition_waits(
    member: Run, uninterrupted: tuple[dict[str, dict[str, Any]], list[int]], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The restore's end-offset request times out, then loses its connection, then succeeds (the
    broker flapping as the group re-forms). The loop keeps polling through the back-off, hands out
    no record of the partition before its state is restored, /healthz says why (503), and the run
    ends with every alert once (before: the KafkaTimeoutError ended the process with exit 1)."""
    monkeypatch.setattr(rebalance, "RESTORE_BACKOFF_S", 0.02)
    want, commits = uninterrupted
    broker = _Broker()
    broker.restore_failures = [KafkaTimeoutError("end offsets"), KafkaConnectionError("connection lost")]
    service, group = member(broker)
    with caplog.at_level(logging.WARNING):
        service.run()
    assert broker.restore_failures == []
    retries = [r for r in caplog.records if r.getMessage() == "partition restore failed: retrying"]
    assert [(r.__dict__["error"], r.__dict__["retry_in_s"]) for r in retries] == [
        ("KafkaTimeoutError", 0.02), ("KafkaConnectionError", 0.04)]
    assert group.polls_waiting > 2 and group.unrestored_batches == 0
    assert all(not health.healthy and "restoring partition 0 failed" in health.detail["rebalance"]
               for health in group.healths)
    assert service.health().healthy
    assert group.history[-1] == commits[-1] and _alerts(service) == want


def test_a_sigterm_while_a_restore_waits_for_its_retry_stops_at_once(member: Run) -> None:
    """The broker stays away: the restore fails, and a SIGTERM during the back-off (1 s) ends the
    run cleanly before the next attempt, with nothing consumed or committed."""
    broker = _Broker()
    broker.restore_failures = [KafkaTimeoutError("end offsets")] * 10
    service, group = member(broker)
    group.stop_after = 20
    started = time.monotonic()
    service.run()
    assert time.monotonic() - started < 0.9
    assert len(broker.restore_failures) == 9  # one attempt: the retry's time had not come
    assert group.polls == 20 and group.unrestored_batches == 0 and broker.commits == {}


def test_sinks_back_after_a_refused_commit_resume_nothing(hasher: Any, broker: _Broker) -> None:
    """A sink was down (consumption paused), then a commit was refused: when the sink answers
    again, the partitions the group has probably moved stay paused and nothing is checkpointed
    until the rebalance (before: the checkpoint resumed them)."""
    sink = _FailsOnce(name="memory")
    service = _service(hasher, sink)
    group = service.consumer
    resumed: list[TopicPartition] = []
    group.paused = lambda: {TP}  # the double's pause state, seen from here
    group.resume = lambda *tps: resumed.extend(tps)  # recorded
    _judge(service, 0, 20)
    sink.fail_next = True
    assert not service.checkpoint(retry=False) and service.paused_reason is not None
    service.rebalance.refused()
    assert not service.checkpoint()
    assert resumed == [] and broker.commits == {}


@pytest.mark.parametrize("fault", ["commit-timeout", "not-coordinator", "changelog-expired"])
def test_a_checkpoint_the_broker_fails_in_an_outage_is_completed_by_the_next(
    member: Run, fault: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker fails the second checkpoint without refusing it: its commit times out, or the
    coordinator moved, or one of its changelog records expired in the producer (the others
    landed). The member goes on (before: the error left ``run`` and the member exited 1, a
    crash): the offsets stay uncommitted, the next checkpoint resends the whole failed set ahead
    of its own and commits past both, and the run ends as the uninterrupted one: every alert
    once, the same last commit, a changelog that restores the same state."""
    clean = _Broker()
    service, group = member(clean)
    service.run()
    want, commits = _alerts(service), group.history
    broker = _Broker()
    service, group = member(broker)
    if fault == "changelog-expired":  # the second part of the second checkpoint
        seqs = [decode_chunk(r.key, r.value).seq if r.value is not None else None for r in clean.changelog]
        second = sorted({seq for seq in seqs if seq is not None})[1]
        broker.expire = [seqs.index(second) + 2]
    else:
        group.refusals = [None, KafkaTimeoutError("commit: coordinator not ready") if fault == "commit-timeout"
                          else NotCoordinatorError()]
    with caplog.at_level(logging.WARNING):
        service.run()
    said = {h.detail.get("checkpoint") for h in group.every_health if not h.healthy}
    assert said == {"1 failed in a row: offsets not committed, retrying"}  # /healthz, until the next one lands
    assert group.every_health[0].healthy and service.health().healthy
    failed = [r for r in caplog.records if r.getMessage() == "checkpoint failed: offsets not committed, retrying"]
    step = "changelog" if fault == "changelog-expired" else "commit"
    assert [(r.__dict__["step"], r.__dict__["retry_in_s"]) for r in failed] == [(step, 1.0)]
    assert group.history == sorted(group.history) and group.history[-1] == commits[-1]
    assert len(group.history) < len(commits)  # the failed checkpoint's offsets went with a later one
    assert _alerts(service) == want
    again = _restored(broker)
    assert view(again.store) == view(_restored(clean).store)
    assert again.resume_position(TP, broker.commits[TP]) == commits[-1]
