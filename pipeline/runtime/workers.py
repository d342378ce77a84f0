"""`tokenwatch detect --workers N`: N processes that each normalise and judge their share.

The parent does only the cheapest work: it reads lines and routes each raw line by the
message-key rule (``pipeline.runtime.routing``: worker ``i`` holds what partition ``i`` of an
N-partition input topic would hold under `run`), in batches of ``BATCH_LINES``. A line that
may hold a revocation (``is_global``: what the service publishes on its revocations topic)
goes to every other worker too, at its place in the input, as the revocations topic feeds
every partition; only its owner counts it (``pipeline.runtime.worker_judge``).

Each worker normalises its lines, counts and dead-letters them as one process does, runs its
own engine (enrichment, event time, detectors, alerter), and answers every batch with what it
raised, tagged with the input position that raised it. The parent writes those in input
order (position, then worker), as soon as every worker is past that position; alerts from the
end-of-input flush come last, merged by event time; the workers' counts are summed at the
end. An alert id raised by two workers (a revocation's copy re-checking uses the key rule
split across them) is written once: the first in that order; another worker's copy is dropped
and counted. A worker that fails or dies stops the run (``WorkerFailed``): never a silent
partial output, never a wait for good (each answers on its own pipe, watched together with its
life: ``pipeline.runtime.worker_answers``); the other workers are stopped. A line longer than
``input.max_line_bytes`` (a CloudTrail log file, read record by record) is never held whole,
so it is not sent: the parent maps it and sends its events.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import signal
import time
import traceback
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from pipeline.config import Settings
from pipeline.ingest.trust import TrustRules
from pipeline.kafka.keys import is_global
from pipeline.runtime.build import build_normalizer
from pipeline.runtime.line_tally import Letter, Tally
from pipeline.runtime.parent_watch import exit_with_parent
from pipeline.runtime.routing import LineRouter
from pipeline.runtime.worker_answers import Answer, Answers, WorkerFailed
from pipeline.runtime.worker_judge import END, Item, Position, Raised, WorkerJudge, WorkerSpec
from pipeline.runtime.worker_server import ensure_server, worker_context
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher

BATCH_LINES = 512
"""Lines per message to a worker: large enough that pickling and pipes cost little per line."""
IN_FLIGHT = 4
"""Batches a worker may have unanswered: bounds memory and how far output lags input."""
STOP_WAIT_S = 5.0
"""How long a worker told to stop (SIGTERM) may take before it is killed."""
MAX_WORKERS = 16
"""The default never starts more: each worker holds its own state and geo tables."""

__all__ = ["END", "MAX_WORKERS", "Raised", "WorkerFailed", "WorkerPool", "WorkerSpec", "default_workers", "serve"]


def default_workers() -> int:
    """The cores this process may run on, at most ``MAX_WORKERS``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def portable(settings: Settings) -> Settings:
    """``settings`` as a plain ``Settings`` (``load_settings`` returns a subclass made at run
    time, which pickle cannot name), its validated sections as they are: a worker reads no
    file or environment again."""
    return Settings.model_construct(_fields_set=settings.model_fields_set, **dict(settings))


# -- the worker process ---------------------------------------------------------------


def serve(index: int, spec: WorkerSpec, inbox: Any, outbox: Any) -> None:
    """A worker's life: build its reader and engine, judge each batch, flush at the end (``None``);
    ``outbox``: the sending end of its own answer pipe.

    Top-level and fed picklable arguments only, so it runs under ``spawn`` too. It exits at once
    when the parent is gone (``parent_watch``), and leaves Ctrl-C to the parent, which stops every
    worker: the terminal sends it to the whole process group, and each worker printed a traceback
    (forked from a server ``ensure_server`` started, a worker has it blocked already)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    try:
        judge = WorkerJudge(index, spec)
        idle_s = 0.0
        while True:
            waited = time.perf_counter()
            message: tuple[str, list[Item]] | None = inbox.get()
            idle_s += time.perf_counter() - waited
            if message is None:
                flushed, totals = judge.flush(idle_s)
                outbox.send(("flushed", index, [flushed], totals))
                return
            outbox.send(("batch", index, judge.judge(*message), None))
    except BaseException as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with contextlib.suppress(OSError):  # the parent may be gone: then nobody is waiting
            outbox.send(("failed", index, detail[:2000], None))
        raise


# -- the parent -----------------------------------------------------------------------


class WorkerPool:
    """N worker processes behind ``submit_line``; hands back what they raised in input order."""

    def __init__(self, spec: WorkerSpec, workers: int) -> None:
        if workers < 2:
            raise ValueError("a worker pool has at least two workers")
        spec = WorkerSpec(portable(spec.settings), spec.hash_key, spec.forced_format, spec.clock)
        normalizer = build_normalizer(spec.settings, make_token_hasher(spec.hash_key), spec.forced_format, spec.clock)
        self.router = LineRouter(workers, normalizer, spec.forced_format, TrustRules(spec.settings.trust))
        self.workers = workers
        context = worker_context()
        if isinstance(context, ForkServerContext):
            ensure_server()  # unless started early: Ctrl-C stays the parent's (``ensure_server``)
        self._answers = Answers(context, workers)
        # A queue per worker, not a pipe: its put never blocks (a thread feeds the pipe), so a
        # worker still busy with its last batch never holds up the parent routing to the others.
        self._inboxes: list[Any] = []
        self._processes: list[BaseProcess] = []
        self._closed = False
        self._finished = False
        try:
            for index in range(workers):
                inbox = context.Queue()
                self._inboxes.append(inbox)
                process = context.Process(
                    target=serve, args=(index, spec, inbox, self._answers.writers[index]),
                    name=f"tokenwatch-detect-{index}", daemon=True,
                )
                process.start()
                self._processes.append(process)
                self._answers.attach(index, process)
        except BaseException:  # Ctrl-C meanwhile: the workers started ignore it, and would wait for ever
            self.close()
            raise
        self._origin = ""
        self._batches: list[list[Item]] = [[] for _ in range(workers)]
        self._unanswered: list[deque[Position]] = [deque() for _ in range(workers)]  # first position of each
        self._ready: list[Raised] = []  # a heap, by position then worker
        self._flushed: list[Raised] = []
        self._emitted_by: dict[str, int] = {}
        self.counters: Counter[str] = Counter()  # the engines' counters, summed at the end
        self.tally = Tally()  # the workers' line counts, summed at the end
        self.repairs: Counter[str] = Counter()  # the workers' normaliser repairs, summed at the end
        self.cpu_s: list[float] = []  # each worker's CPU seconds, start-up included
        self.idle_s: list[float] = []  # each worker's seconds waiting for lines
        self.merged_duplicates = 0

    def start_input(self, origin: str) -> None:
        """Lines that follow come from ``origin`` (their dead letters say ``origin:line``)."""
        if origin != self._origin:
            for worker in range(self.workers):
                self._send(worker)
            self._origin = origin

    def submit_line(self, seq: int, number: int, line: bytes) -> bool:
        """Route one raw line (``seq``: its place in the run; ``number``: in its input) to the
        owner of its key, and to every worker if it may hold a revocation. True when a batch
        went out (``ready`` may then have more)."""
        owner, broadcast = self.router.route(line)
        sent = self._add(owner, (seq, number, line, False))
        if broadcast:
            for other in range(self.workers):
                if other != owner:
                    sent |= self._add(other, (seq, number, line, True))
        return sent

    def submit_events(self, first_seq: int, number: int, events: Sequence[CanonicalEvent]) -> bool:
        """Route events the parent mapped (from a long line), the i-th at place ``first_seq + i``."""
        owner = self.router.router.owner(events)
        sent = False
        for seq, event in enumerate(events, start=first_seq):
            sent |= self._add(owner, (seq, number, event, False))
            if is_global(event):
                for other in range(self.workers):
                    if other != owner:
                        sent |= self._add(other, (seq, number, event, True))
        return sent

    def add_letters(self, position: Position, letters: list[Letter]) -> None:
        """Dead letters the parent wrote itself (a long line's), to go out in input order."""
        heapq.heappush(self._ready, Raised(position, -1, [], letters))

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
        self._finished = True
        while self._ready:
            yield self._dedup(heapq.heappop(self._ready))
        flushed = sorted(self._flushed)
        timed = (((alert.timestamp, raised.worker, n), raised.worker, alert)
                 for raised in flushed for n, alert in enumerate(raised.alerts))
        for _, worker, alert in sorted(timed, key=lambda entry: entry[0]):
            kept = self._dedup(Raised(END, worker, [alert]))
            if kept.alerts:
                yield kept
        self.close()

    def close(self) -> None:
        """Stop every worker (idempotent); what they were doing is lost."""
        if self._closed:
            return
        self._closed = True
        for process in self._processes:
            if self._finished:  # each has answered its flush and is on its way out
                process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(STOP_WAIT_S)
            if process.is_alive():
                process.kill()
                process.join()
        for inbox in self._inboxes:
            inbox.cancel_join_thread()  # a batch no worker will read must not hold up our exit
            inbox.close()
        self._answers.close()

    def _add(self, worker: int, item: Item) -> bool:
        batch = self._batches[worker]
        batch.append(item)
        if len(batch) < BATCH_LINES:
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
        self._unanswered[worker].append((batch[0][0], 0))
        self._post(worker, (self._origin, batch))

    def _post(self, worker: int, message: tuple[str, list[Item]] | None) -> None:
        """Queue a message (a dead worker is found while waiting for answers: ``_receive``)."""
        self._inboxes[worker].put(message)

    def _horizon(self) -> Position:
        """No worker can still raise anything before this position."""
        horizon = END
        for worker in range(self.workers):
            if self._unanswered[worker]:
                horizon = min(horizon, self._unanswered[worker][0])
            elif self._batches[worker]:
                horizon = min(horizon, (self._batches[worker][0][0], 0))
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
        """Take the answers already in (``block``: at least one); a worker that failed or died
        stops every worker and raises ``WorkerFailed``."""
        try:
            answers = self._answers.take(block)
        except WorkerFailed:
            self.close()
            raise
        for answer in answers:
            self._take(answer)

    def _take(self, answer: Answer) -> None:
        kind, worker, payload, totals = answer
        self._unanswered[worker].popleft()
        target = self._flushed if kind == "flushed" else None
        for raised in payload:
            if target is not None:
                target.append(raised)
            else:
                heapq.heappush(self._ready, raised)
        if totals is not None:
            self.counters.update(totals.engine)
            totals.tally.add_to(self.tally)
            self.repairs.update(totals.repairs)
            self.cpu_s.append(totals.cpu_s)
            self.idle_s.append(totals.idle_s)
