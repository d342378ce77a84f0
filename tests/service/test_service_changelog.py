"""The service's own checkpoint path against the changelog (``Service.checkpoint``,
``_advance_checkpoint``, ``_settle_checkpoint``, the revoke checkpoint, ``_restore``), with a broker
double in place of Kafka: what lands in the changelog topic, in what order, and what a restore of
it then gives. The Kafka clients are the only fakes; engines, sinks and the changelog are real."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.config import Settings
from pipeline.ingest.config import TrustConfig
from pipeline.service import changelog, revocations, runner
from pipeline.service.changelog import decode_chunk
from pipeline.service.config import ServiceConfig
from pipeline.service.partitions import PartitionState, new_partition_state, restore_partition
from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.base import FlushResult, MemorySink, SinkUnavailable
from tests.detectors.test_state_codec import view

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

    def get(self, timeout: float = 0) -> None:
        if not self.is_done:
            raise KafkaTimeoutError("batch still queued")  # what kafka-python raises past the wait


class _Broker:
    """The changelog topic (partition 0) and the group's commits. ``hold``: records sent stay
    queued in the producer (a send that times out) until ``release``."""

    def __init__(self) -> None:
        self.changelog: list[SimpleNamespace] = []
        self.queued: list[tuple[_Future, SimpleNamespace]] = []
        self.commits: dict[TopicPartition, int] = {}
        self.hold = False

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

    def committed(self, tp: TopicPartition) -> int | None:
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
    """A group-less consumer: reads the changelog topic from the beginning (the restore)."""

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

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.broker.changelog) for tp in tps}

    def position(self, _tp: TopicPartition) -> int:
        return self.at


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
