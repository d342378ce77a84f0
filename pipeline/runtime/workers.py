"""`tokenwatch detect --workers N`: the engine on N processes, routed as `run` partitions are.

The parent reads and normalises every line (dead letters, trust rules and the summary stay
where `--workers 1` keeps them) and routes each line's events by the message-key rule of
``pipeline.kafka.keys`` through Kafka's murmur2 partitioner: worker ``i`` holds what
partition ``i`` of an N-partition input topic would hold, so `detect --workers N` and a `run`
over such a topic compare the same events, and split a principal alike (see ``keys.py``).
Revocations (``is_global``: what the service publishes on its revocations topic) also go to every other worker, as the revocations
topic feeds every partition; unlike that topic, a copy here comes at its place in the input,
so it is submitted as an ordinary event of the worker's stream (it moves that worker's clock
as it moved the one process's), and only its owner counts it.

Each worker runs its own engine (enrichment, event time, detectors, alerter) and answers
every batch with what it raised, tagged with the input position of the event that raised
it. The parent writes those in input order (position, then worker), as soon as every worker
is past that position; alerts from the end-of-input flush come last, merged by event time.
An alert id raised by two workers (a broadcast revocation re-checking uses the key rule split
across them) is written once: the first in that order; another worker's copy is dropped and
counted. A worker that fails stops the run (``WorkerFailed``): never a silent partial output.

Events cross the process boundary pickled (about a third of the normalising cost); the
parent's share of the work (reading, normalising, routing) bounds the speed-up.
"""

from __future__ import annotations

import contextlib
import heapq
import multiprocessing
import os
import queue
import traceback
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from pipeline.config import Settings
from pipeline.kafka.keys import event_key, is_global
from pipeline.runtime.build import build_engine, build_enricher
from schemas.alerts import Alert
from schemas.events import CanonicalEvent

BATCH_EVENTS = 512
"""Events per message to a worker: large enough that pickling and pipes cost little per event."""
IN_FLIGHT = 4
"""Batches a worker may have unanswered: bounds memory and how far output lags input."""
POLL_S = 0.5
MAX_CACHED_KEYS = 100_000

Position = tuple[int, int]
"""(line number, event index in the line): where an event was in the input."""
END: Position = (1 << 62, 0)
"""The position of the end-of-input flush."""


class WorkerFailed(RuntimeError):
    """A worker raised or died: the run's output is incomplete."""


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Router:
    """Which worker owns a line: the Kafka partition its message key maps to (murmur2)."""

    def __init__(self, workers: int) -> None:
        # Kafka's own partitioner, loaded here: `detect` with one process never needs the client.
        from kafka.partitioner.default import murmur2

        self._murmur2 = murmur2
        self.workers = workers
        self._cache: dict[bytes, int] = {}

    def owner(self, events: Sequence[CanonicalEvent]) -> int:
        found = event_key(events)
        if found is None:
            return 0
        key = found[0]
        index = self._cache.get(key)
        if index is None:
            index = (self._murmur2(key) & 0x7FFFFFFF) % self.workers
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[key] = index
        return index


@dataclass(order=True)
class Raised:
    """What a worker raised at one input position (``END``: the flush)."""

    position: Position
    worker: int
    origin: str = field(compare=False, default="")  # "<input>:<line number>" of that event
    alerts: list[Alert] = field(compare=False, default_factory=list)
    refused: list[CanonicalEvent] = field(compare=False, default_factory=list)  # out of range


def _context() -> ForkServerContext | SpawnContext:
    """A fresh interpreter per worker (no open store, file or thread of the parent comes along):
    forked from a server that imported this module once where there is one, else spawned."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def portable(settings: Settings) -> Settings:
    """``settings`` as a plain ``Settings`` (``load_settings`` returns a subclass made at run
    time, which pickle cannot name), its validated sections as they are: a worker reads no
    file or environment again."""
    return Settings.model_construct(_fields_set=settings.model_fields_set, **dict(settings))


# -- the worker process ---------------------------------------------------------------

Item = tuple[Position, str, bool, CanonicalEvent]  # position, origin, copy, event

ARRIVAL_COUNTERS = ("events", "duplicates", "late_events", "reordered_events", "held_events", "out_of_range_events")
"""Engine counters of an event's arrival: its owner counts them, not the workers given a copy."""


def serve(index: int, settings: Settings, inbox: Connection, outbox: Any) -> None:
    """A worker's life: build the engine, judge each batch, flush at the end (``None``).

    Top-level and fed picklable arguments only, so it runs under ``spawn`` too."""
    try:
        engine = build_engine(settings, build_enricher(settings))
        while True:
            batch: list[Item] | None = inbox.recv()
            if batch is None:
                outbox.put(("flushed", index, [Raised(END, index, "", engine.flush())], Counter(engine.counters)))
                return
            raised: list[Raised] = []
            for position, origin, copy, event in batch:
                counted = [engine.counters[name] for name in ARRIVAL_COUNTERS] if copy else []
                alerts = engine.submit(event)
                refused = engine.take_out_of_range()
                if copy:  # the owner counts it, and dead-letters it if refused
                    for name, value in zip(ARRIVAL_COUNTERS, counted, strict=True):
                        engine.counters[name] = value
                    refused = [late for late in refused if late.event_id != event.event_id]
                if alerts or refused:
                    raised.append(Raised(position, index, origin, alerts, refused))
            outbox.put(("batch", index, raised, None))
    except BaseException as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        outbox.put(("failed", index, detail[:2000], None))
        raise


# -- the parent -----------------------------------------------------------------------


class WorkerPool:
    """N engine processes behind one ``submit``; hands back what they raised in input order."""

    def __init__(self, settings: Settings, workers: int) -> None:
        if workers < 2:
            raise ValueError("a worker pool has at least two workers")
        context = _context()
        self.router = Router(workers)
        self.workers = workers
        self.outbox = context.Queue()
        self._pipes: list[Connection] = []
        self._processes: list[BaseProcess] = []
        for index in range(workers):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(
                target=serve, args=(index, portable(settings), receive, self.outbox), name=f"tokenwatch-detect-{index}",
                daemon=True,
            )
            process.start()
            receive.close()
            self._pipes.append(send)
            self._processes.append(process)
        self._batches: list[list[Item]] = [[] for _ in range(workers)]
        self._unanswered: list[deque[Position]] = [deque() for _ in range(workers)]  # first position of each
        self._ready: list[Raised] = []  # a heap, by position then worker
        self._flushed: list[Raised] = []
        self._emitted_by: dict[str, int] = {}
        self.counters: Counter[str] = Counter()  # the engines' counters, summed at the end
        self.merged_duplicates = 0
        self._closed = False

    def submit(self, line: int, origin: str, events: Sequence[CanonicalEvent]) -> bool:
        """Route one line's events: to the owner of its key; revocations to every worker too.
        True when a batch went out (``ready`` may then have more)."""
        owner = self.router.owner(events)
        sent = False
        for number, event in enumerate(events):
            position = (line, number)
            sent |= self._add(owner, (position, origin, False, event))
            if is_global(event):
                for other in range(self.workers):
                    if other != owner:
                        sent |= self._add(other, (position, origin, True, event))
        return sent

    def ready(self) -> Iterator[Raised]:
        """What the workers raised before the earliest position one of them may still raise
        at, in input order; takes the answers already in without waiting for more."""
        self._receive(block=False)
        horizon = self._horizon()
        while self._ready and self._ready[0].position < horizon:
            yield self._dedup(heapq.heappop(self._ready))

    def finish(self) -> Iterator[Raised]:
        """Send what is batched, flush every engine, and hand back all that is left: what was
        raised in input order, then the flushed alerts by event time (then worker)."""
        for worker in range(self.workers):
            self._send(worker)
            self._unanswered[worker].append(END)
            self._post(worker, None)
        while any(self._unanswered):
            self._receive()
        while self._ready:
            yield self._dedup(heapq.heappop(self._ready))
        flushed = sorted(self._flushed)
        timed = (((alert.timestamp, raised.worker, n), raised.worker, alert)
                 for raised in flushed for n, alert in enumerate(raised.alerts))
        for _, worker, alert in sorted(timed, key=lambda entry: entry[0]):
            kept = self._dedup(Raised(END, worker, "", [alert]))
            if kept.alerts:
                yield kept
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent); what they were doing is lost."""
        if self._closed:
            return
        self._closed = True
        for pipe in self._pipes:
            pipe.close()
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        self.outbox.close()

    def _add(self, worker: int, item: Item) -> bool:
        batch = self._batches[worker]
        batch.append(item)
        if len(batch) < BATCH_EVENTS:
            return False
        self._send(worker)
        return True

    def _send(self, worker: int) -> None:
        batch = self._batches[worker]
        if not batch:
            return
        while len(self._unanswered[worker]) >= IN_FLIGHT:
            self._receive()
        self._batches[worker] = []
        self._unanswered[worker].append(batch[0][0])
        self._post(worker, batch)

    def _post(self, worker: int, batch: list[Item] | None) -> None:
        try:
            self._pipes[worker].send(batch)
        except OSError:  # the worker is gone: say why, if it said
            self._check_alive()
            self.close()
            raise WorkerFailed(f"detect worker {worker} stopped reading") from None

    def _horizon(self) -> Position:
        """No worker can still raise anything before this position."""
        horizon = END
        for worker in range(self.workers):
            if self._unanswered[worker]:
                horizon = min(horizon, self._unanswered[worker][0])
            elif self._batches[worker]:
                horizon = min(horizon, self._batches[worker][0][0])
        return horizon

    def _dedup(self, raised: Raised) -> Raised:
        """Drop an alert another worker already raised under the same id (see the module note)."""
        kept = []
        for alert in raised.alerts:
            if self._emitted_by.setdefault(alert.alert.id, raised.worker) == raised.worker:
                kept.append(alert)
            else:
                self.merged_duplicates += 1
        raised.alerts = kept
        return raised

    def _receive(self, block: bool = True) -> None:
        """Take one answer (``block``) or every answer already in; raise if a worker failed."""
        while True:
            try:
                message = self.outbox.get(timeout=POLL_S) if block else self.outbox.get_nowait()
            except queue.Empty:
                self._check_alive()
                if block:
                    continue
                return
            self._take(message)
            if block:
                return

    def _take(self, message: tuple[str, int, Any, Counter[str] | None]) -> None:
        kind, worker, payload, counters = message
        if kind == "failed":
            self.close()
            raise WorkerFailed(f"detect worker {worker} failed: {payload}")
        self._unanswered[worker].popleft()
        target = self._flushed if kind == "flushed" else None
        for raised in payload:
            if target is not None:
                target.append(raised)
            else:
                heapq.heappush(self._ready, raised)
        if counters:
            self.counters.update(counters)

    def _check_alive(self) -> None:
        """A worker that exited without answering failed; its last words may still be queued."""
        dead = [(index, p.exitcode) for index, p in enumerate(self._processes) if p.exitcode not in (None, 0)]
        if not dead:
            return
        with contextlib.suppress(queue.Empty):
            while True:
                self._take(self.outbox.get(timeout=POLL_S))  # raises on a "failed" answer
        self.close()
        index, code = dead[0]
        raise WorkerFailed(f"detect worker {index} died (exit code {code})")
