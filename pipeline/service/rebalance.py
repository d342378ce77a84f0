"""Rebalances: which input partitions this member owns, and what happens when that changes.

Eager rebalancing with the range assignor: a revoke checkpoints and commits the partitions
being given up, then drops their state; a lost partition (evicted from the group) is dropped
unsaved, since its commit would fail and the new owner replays after the last one; an
assigned partition is paused until the loop has restored its state from the changelog and
rewound it to where that state stands (its committed offset, or the changelog's when further).

A broker flapping under a rebalance must not stop the member: a restore that times out or loses
its connection is retried with back-off while the partition stays paused (the loop goes on
polling, so the member stays in the group and a SIGTERM is heard); a commit the group refuses
(``checkpoint.MEMBERSHIP_REFUSALS``) pauses consumption and checkpoints until the rebalance that
follows, which revokes or drops the partitions as usual.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import KafkaError

from pipeline.service.partitions import PartitionState

log = logging.getLogger("tokenwatch.service")

RESTORE_BACKOFF_S = 1.0
"""First delay before a failed restore is tried again; doubles with each failure in a row."""
RESTORE_BACKOFF_MAX_S = 30.0
"""Cap of that delay: a broker back from an outage is found within this."""
RESTORE_CALL_TIMEOUT_MS = 5_000
"""Bound of each blocking broker call of a restore (end offset, position, the committed offset):
a broker that does not answer fails the attempt in 5 s instead of ``kafka.request_timeout_ms``
(or, for the committed offset, never); it is retried with back-off (``Rebalance.restore_new``),
and a SIGTERM meanwhile is heard within that."""


class Rebalance:
    """Owns ``assigned`` and the partitions waiting for their state. ``states`` is the service's
    own dict of partition states (shared: the loop judges with it, this adds and drops).

    ``checkpoint`` saves the states being revoked (raises on failure: the next owner replays);
    ``restore`` builds one partition's state from the changelog; ``on_lost`` hears that a
    checkpoint in flight can no longer be committed."""

    def __init__(
        self,
        consumer: Any,
        states: dict[int, PartitionState],
        checkpoint: Callable[[list[PartitionState]], object],
        restore: Callable[[int], PartitionState],
        on_lost: Callable[[], None],
        rewind_to_beginning: bool,
    ) -> None:
        self.consumer = consumer
        self.states = states
        self.assigned: set[TopicPartition] = set()
        self.to_restore: set[int] = set()
        self._checkpoint = checkpoint
        self._restore = restore
        self._on_lost = on_lost
        self.rewind_to_beginning = rewind_to_beginning  # kafka.auto_offset_reset == "earliest"
        self.rejoining = False  # a commit was refused: out of the group until the next rebalance
        self.restore_failure: str | None = None  # why partitions still wait for their state
        self._failures = 0  # failed restores in a row
        self._retry_at = 0.0
        self.lost = False  # evicted (partitions lost): nothing owned until the group assigns again

    @property
    def stalled(self) -> str | None:
        """Why owned partitions are not consumed, for /healthz (None: they are, or soon will be)."""
        if self.restore_failure is not None:
            return self.restore_failure
        if self.rejoining:
            return "commit refused by the group: waiting for the rebalance"
        return "partitions lost (evicted from the group): rejoining" if self.lost else None

    def refused(self) -> None:
        """The group refused a commit (evicted, or re-forming): kafka-python re-joins at the next
        poll, and the rebalance revokes or drops every partition. Until then nothing more is
        consumed or checkpointed for partitions that are going."""
        self.rejoining = True
        self.consumer.pause(*self.assigned)

    def on_revoked(self, revoked: list[TopicPartition]) -> None:
        """Checkpoint, then forget the revoked partitions' state (the next owner restores it)."""
        self.rejoining = False  # in the group again: the revoke checkpoint may commit
        gone = self._release(revoked)
        dropping = [self.states[p] for p in gone if p in self.states]
        if dropping:
            try:
                self._checkpoint(dropping)
            except Exception:  # whatever failed, the next owner replays from the last commit
                log.exception("checkpoint on revoke failed")
        for state in dropping:
            del self.states[state.partition]
        log.info("partitions revoked", extra={"partitions": _numbers(revoked), "checkpointed": len(dropping)})

    def on_lost(self, lost: list[TopicPartition]) -> None:
        """Evicted from the group: drop the state unsaved (the new owner restores the last
        checkpoint and replays after it; alert ids are stable, so replays overwrite)."""
        self.rejoining, self.lost = False, True
        for number in self._release(lost):
            self.states.pop(number, None)
        self._on_lost()
        log.warning("partitions lost", extra={"partitions": _numbers(lost)})

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        """Pause newly owned partitions; the loop restores their state before resuming them
        (the listener runs on kafka-python's IO thread, which must not block)."""
        self.rejoining = self.lost = False
        self._failures, self._retry_at = 0, 0.0  # a new assignment: restore at once, back-off afresh
        self.assigned |= set(assigned)
        self.to_restore |= {tp.partition for tp in assigned} - set(self.states)
        self.consumer.pause(*assigned)

    def restore_new(self, resume: bool) -> None:
        """Restore each newly owned partition's state, rewind it to its committed offset, and
        (``resume``: no sink is down) resume every owned partition that has its state.

        A restore the broker fails (``transient``) leaves that partition and the ones after it
        paused and unrestored: the loop keeps calling, and they are tried again once the
        back-off has passed (1 s doubling to ``RESTORE_BACKOFF_MAX_S``); anything else raises.
        While ``rejoining`` (a commit refused) it does nothing: the group has probably handed the
        partitions to another member, which consumes them; the rebalance restores them if not."""
        if self.rejoining or time.monotonic() < self._retry_at:
            return
        for number in sorted(self.to_restore):
            try:
                self.states[number] = self._restore(number)
                self._rewind(number)
            except Exception as exc:
                if not transient(exc):
                    raise
                self.states.pop(number, None)  # the rewind failed: not consumed until it succeeds
                self._restore_failed(number, exc)
                break
            self.to_restore.discard(number)
        else:
            self._failures, self.restore_failure = 0, None
        if resume:
            self.consumer.resume(*[tp for tp in self.assigned if tp.partition in self.states])

    def _restore_failed(self, number: int, exc: Exception) -> None:
        self._failures += 1
        delay = min(RESTORE_BACKOFF_S * 2 ** (self._failures - 1), RESTORE_BACKOFF_MAX_S)
        self._retry_at = time.monotonic() + delay
        waiting = _numbers([tp for tp in self.assigned if tp.partition in self.to_restore])
        self.restore_failure = (f"restoring partition {number} failed ({type(exc).__name__}): partitions "
                                f"{waiting} wait, paused; attempt {self._failures + 1} in {delay:g} s")
        log.warning("partition restore failed: retrying", extra={
            "partition": number, "error": type(exc).__name__, "failures": self._failures,
            "retry_in_s": delay, "waiting": waiting})

    def _release(self, tps: list[TopicPartition]) -> list[int]:
        """Forget ``tps``; the partition numbers no longer owned through any input topic."""
        gone = {tp.partition for tp in tps}
        self.assigned -= set(tps)
        self.to_restore -= gone
        if not self.to_restore:
            self._failures, self.restore_failure = 0, None
        still = {tp.partition for tp in self.assigned}
        return sorted(gone - still)

    def _rewind(self, number: int) -> None:
        """Seek partition ``number`` to where the restored state stands: its committed offset, or
        the offsets its last checkpoint recorded in the changelog when further (a kill between
        the changelog's ack and the commit; ``PartitionState.resume_position``). kafka-python
        keeps the fetch position of a partition that is revoked and assigned again, which would
        skip the events held in the dropped engine's reorder buffer."""
        state = self.states[number]
        for tp in [tp for tp in self.assigned if tp.partition == number]:
            # Bounded: without a timeout kafka-python waits for the coordinator for ever; this way a
            # broker away fails the attempt (KafkaTimeoutError) and the back-off retries it.
            committed = self.consumer.committed(tp, timeout_ms=RESTORE_CALL_TIMEOUT_MS)
            position = state.resume_position(tp, committed)
            if position is not None:
                self.consumer.seek(tp, position)
            elif self.rewind_to_beginning:
                self.consumer.seek_to_beginning(tp)


def transient(exc: BaseException) -> bool:
    """A failure the broker may not repeat: a timeout or a lost connection (kafka-python's
    retriable errors), or a restore that ran out of time (the changelog kept coming back empty)."""
    return isinstance(exc, TimeoutError) or (isinstance(exc, KafkaError) and bool(exc.retriable))


def _numbers(tps: list[TopicPartition]) -> str:
    return ",".join(map(str, sorted({tp.partition for tp in tps})))


class RebalanceListener(AsyncConsumerRebalanceListener):  # type: ignore[misc]  # kafka-python ships no types: its base is Any
    """kafka-python 3 runs rebalance listeners on its IO thread, where a blocking
    ``consumer.commit`` fails ("Cannot block on net.run() from the IO thread"). The async
    listener is its supported way out: the revoke checkpoint (sink flush, changelog, commit)
    runs on a worker thread while the listener awaits it with event-loop sleeps, so heartbeats
    and the commit request keep flowing. The main thread is inside ``consumer.poll`` meanwhile
    (rebalances only run there or in ``close``), so the worker has the partition states to itself."""

    def __init__(self, rebalance: Rebalance, consumer: Any) -> None:
        self.rebalance = rebalance
        self.consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await off_io_thread(self.consumer, self.rebalance.on_revoked, sorted(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.rebalance.on_assigned(sorted(assigned))  # non-blocking: pause + note for the loop

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self.rebalance.on_lost(sorted(lost))  # evicted: a commit would fail, the new owner replays


async def off_io_thread(consumer: Any, fn: Callable[[list[TopicPartition]], None], tps: list[TopicPartition]) -> None:
    """Run blocking ``fn(tps)`` on a worker thread; await it on kafka-python's event loop."""
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn(tps)
        except BaseException as exc:  # noqa: BLE001 -- re-raised on the IO thread: the listener failed
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="tokenwatch-revoke", daemon=True).start()
    net = consumer._net  # noqa: SLF001 -- its sleep() is the loop's awaitable; no public equivalent
    while not done.is_set():
        await net.sleep(0.01)
    if errors:
        raise errors[0]
