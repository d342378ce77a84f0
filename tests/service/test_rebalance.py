"""Partition ownership through rebalances, with a consumer double (the real group protocol
runs in tests/integration/test_service_handover.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, cast

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaTimeoutError

from pipeline.service import rebalance
from pipeline.service.partitions import PartitionState
from pipeline.service.rebalance import Rebalance, RebalanceListener, off_io_thread

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


class Net:
    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Consumer:
    """Records what the rebalance asks of the consumer."""

    def __init__(self, committed: dict[TopicPartition, int] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self._committed = committed or {}
        self._net = Net()
        self.away = False  # the broker gone: committed() never gets its coordinator

    def pause(self, *tps: TopicPartition) -> None:
        self.calls.append(("pause", sorted(tps)))

    def resume(self, *tps: TopicPartition) -> None:
        self.calls.append(("resume", sorted(tps)))

    def committed(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        """As kafka-python 3.0: without ``timeout_ms`` it waits for the coordinator for ever."""
        if self.away:
            if timeout_ms is None:
                threading.Event().wait()
            raise KafkaTimeoutError(f"coordinator not ready in {timeout_ms} ms")
        return self._committed.get(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.calls.append(("seek", (tp, offset)))

    def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.calls.append(("seek_to_beginning", tp))


class Owner:
    """The service's side: states, checkpoints and restores, recorded."""

    def __init__(self, consumer: Consumer, fail_checkpoint: bool = False, earliest: bool = True,
                 recorded: dict[TopicPartition, int] | None = None) -> None:
        self.states: dict[int, Any] = {}
        self.recorded = recorded or {}  # input offsets the changelog's last checkpoint holds
        self.checkpointed: list[list[int]] = []
        self.lost = 0
        self.fail_checkpoint = fail_checkpoint
        self.restore_failures: dict[int, int] = {}  # partition: restores that time out before one succeeds
        self.rebalance = Rebalance(consumer, self.states, self.checkpoint, self.restore, self.on_lost, earliest)

    def checkpoint(self, states: list[Any]) -> bool:
        self.checkpointed.append([s.partition for s in states])
        if self.fail_checkpoint:
            raise RuntimeError("flush failed")
        return True

    def restore(self, number: int) -> PartitionState:
        if self.restore_failures.get(number):
            self.restore_failures[number] -= 1
            raise KafkaTimeoutError("end offsets")
        state = PartitionState(number, cast(Any, None))  # no engine: the rebalance never judges
        state.resume_at = {tp: offset for tp, offset in self.recorded.items() if tp.partition == number}
        return state

    def on_lost(self) -> None:
        self.lost += 1


def test_assigned_partitions_wait_paused_until_restored_then_rewound_and_resumed() -> None:
    consumer = Consumer(committed={A0: 42})
    owner = Owner(consumer)
    owner.rebalance.on_assigned([A0, A1, B0])
    assert consumer.calls == [("pause", [A0, A1, B0])]
    assert owner.rebalance.to_restore == {0, 1} and owner.states == {}
    owner.rebalance.restore_new(resume=True)
    assert sorted(owner.states) == [0, 1] and owner.rebalance.to_restore == set()
    seeks = sorted((name, str(arg)) for name, arg in consumer.calls[1:-1])
    assert seeks == sorted([("seek", str((A0, 42))), ("seek_to_beginning", str(B0)), ("seek_to_beginning", str(A1))])
    assert consumer.calls[-1] == ("resume", [A0, A1, B0])


def test_a_restored_checkpoint_ahead_of_the_commit_moves_the_rewind_and_the_next_commit() -> None:
    """A kill between the changelog's ack and the commit: the restored state holds the events up
    to the offsets its checkpoint recorded, so consumption resumes there, not at the older commit
    (whose events would be judged twice), and the next checkpoint commits it even for a topic
    that brings no new event first."""
    consumer = Consumer(committed={A0: 42, B0: 7})
    owner = Owner(consumer, recorded={A0: 50, B0: 5})  # B0: the commit is further (no chunk since)
    owner.rebalance.on_assigned([A0, B0])
    owner.rebalance.restore_new(resume=True)
    assert sorted(arg for name, arg in consumer.calls if name == "seek") == [(A0, 50), (B0, 7)]
    state = owner.states[0]
    assert state.next_offsets == {A0: 50, B0: 7} and state.committed == {A0: 42, B0: 7}


def test_a_restore_while_a_sink_is_down_leaves_the_partitions_paused() -> None:
    consumer = Consumer()
    owner = Owner(consumer, earliest=False)
    owner.rebalance.on_assigned([A0])
    owner.rebalance.restore_new(resume=False)
    assert 0 in owner.states and consumer.calls == [("pause", [A0])]  # latest: no seek without a commit


def test_a_revoke_checkpoints_then_drops_only_partitions_no_longer_owned() -> None:
    owner = Owner(Consumer())
    owner.rebalance.on_assigned([A0, A1, B0])
    owner.rebalance.restore_new(resume=True)
    owner.rebalance.on_revoked([B0])  # partition 0 is still owned through topic a
    assert owner.checkpointed == [] and sorted(owner.states) == [0, 1]
    owner.rebalance.on_revoked([A0, A1])
    assert owner.checkpointed == [[0, 1]] and owner.states == {} and owner.rebalance.assigned == set()


def test_a_failed_revoke_checkpoint_still_drops_the_state(caplog: pytest.LogCaptureFixture) -> None:
    owner = Owner(Consumer(), fail_checkpoint=True)
    owner.rebalance.on_assigned([A0])
    owner.rebalance.restore_new(resume=True)
    owner.rebalance.on_revoked([A0])
    assert owner.states == {} and "checkpoint on revoke failed" in caplog.text


def test_lost_partitions_are_dropped_unsaved_and_the_checkpoint_in_flight_forgotten() -> None:
    owner = Owner(Consumer())
    owner.rebalance.on_assigned([A0, A1])
    owner.rebalance.restore_new(resume=True)
    owner.rebalance.on_assigned([B0])  # assigned, not restored yet
    owner.rebalance.on_lost([A0, A1, B0])
    assert owner.checkpointed == [] and owner.states == {} and owner.lost == 1
    assert owner.rebalance.to_restore == set() and owner.rebalance.assigned == set()


def test_the_listener_runs_the_revoke_off_the_io_thread_and_reraises_its_failure() -> None:
    consumer = Consumer()
    owner = Owner(consumer)
    owner.rebalance.on_assigned([A0])
    owner.rebalance.restore_new(resume=True)
    listener = RebalanceListener(owner.rebalance, consumer)
    threads: list[str] = []
    checkpoint = owner.rebalance._checkpoint  # noqa: SLF001 -- wrapped to see which thread runs it

    def noting(states: list[Any]) -> object:
        threads.append(threading.current_thread().name)
        return checkpoint(states)

    owner.rebalance._checkpoint = noting  # noqa: SLF001 -- the test records which thread checkpoints
    asyncio.run(listener.on_partitions_revoked({A0}))
    assert threads == ["tokenwatch-revoke"] and owner.states == {}

    def broken(tps: list[TopicPartition]) -> None:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        asyncio.run(off_io_thread(consumer, broken, [A0]))


def test_after_a_refused_commit_nothing_is_restored_or_resumed_until_the_rebalance(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Partition 1's restore times out and waits for its retry; then a commit is refused. The
    retry's time comes, but the group has probably handed both partitions to another member:
    nothing is restored or resumed (before: the retry restored partition 1 and resumed both,
    consumed beside their new owner) until the rebalance assigns them again."""
    monkeypatch.setattr(rebalance, "RESTORE_BACKOFF_S", 0.01)
    consumer = Consumer()
    owner = Owner(consumer)
    owner.restore_failures = {1: 1}
    owner.rebalance.on_assigned([A0, A1])
    owner.rebalance.restore_new(resume=True)
    assert sorted(owner.states) == [0] and consumer.calls[-1] == ("resume", [A0])
    owner.rebalance.refused()
    assert consumer.calls[-1] == ("pause", [A0, A1])
    time.sleep(0.02)  # the back-off is over
    calls = len(consumer.calls)
    owner.rebalance.restore_new(resume=True)
    assert consumer.calls[calls:] == [] and sorted(owner.states) == [0] and owner.rebalance.to_restore == {1}
    assert owner.rebalance.stalled is not None
    owner.rebalance.on_revoked([A0, A1])
    owner.rebalance.on_assigned([A0, A1])
    owner.rebalance.restore_new(resume=True)
    assert sorted(owner.states) == [0, 1] and consumer.calls[-1] == ("resume", [A0, A1])


def test_the_rewind_with_the_broker_away_fails_in_bounded_time_and_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed-offset request of the rewind is bounded like the restore's own calls: with
    the broker away it fails (KafkaTimeoutError) into the back-off instead of waiting for the
    coordinator for ever, the partition unrestored and paused; the retry then rewinds it."""
    monkeypatch.setattr(rebalance, "RESTORE_BACKOFF_S", 0.01)
    consumer = Consumer(committed={A0: 42})
    consumer.away = True
    owner = Owner(consumer)
    owner.rebalance.on_assigned([A0])
    attempt = threading.Thread(target=owner.rebalance.restore_new, args=(True,), daemon=True)
    attempt.start()
    attempt.join(5)
    assert not attempt.is_alive()
    assert owner.states == {} and owner.rebalance.to_restore == {0}
    assert "KafkaTimeoutError" in (owner.rebalance.stalled or "")
    consumer.away = False
    time.sleep(0.02)
    owner.rebalance.restore_new(resume=True)
    assert ("seek", (A0, 42)) in consumer.calls and consumer.calls[-1] == ("resume", [A0])


def test_a_new_assignment_starts_the_back_off_afresh_and_healthz_says_rejoining_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rebalance, "RESTORE_BACKOFF_S", 0.01)
    owner = Owner(Consumer())
    owner.restore_failures = {0: 3}
    owner.rebalance.on_assigned([A0])
    for _ in range(2):
        owner.rebalance.restore_new(resume=True)
        time.sleep(0.03)
    assert "attempt 3 in 0.02 s" in (owner.rebalance.stalled or "")
    owner.rebalance.on_assigned([A1])  # partition 0 still waiting
    owner.rebalance.restore_new(resume=True)
    assert "attempt 2 in 0.01 s" in (owner.rebalance.stalled or "")  # before: the third step, 0.04 s
    owner.rebalance.on_lost([A0, A1])
    assert owner.rebalance.stalled == "partitions lost (evicted from the group): rejoining"  # before: healthy
    owner.rebalance.on_assigned([A0])
    assert owner.rebalance.stalled is None
