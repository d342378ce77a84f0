"""The answers of the `detect --workers` processes: one pipe each, watched with the worker's life.

One result queue shared by every worker had one write lock and one byte stream: a worker killed
(the out-of-memory killer, ``kill -9``) while writing an answer left the lock held or half a
message in the stream, and the parent waiting on it for good. Here each worker writes only to
its own pipe, whose other end only the parent holds, and the parent waits on every pipe together
with every worker's ``sentinel`` (``multiprocessing.connection.wait``): a death is seen at once,
whatever the worker was doing, and a message it cut short reads as the end of its pipe.
"""

from __future__ import annotations

import contextlib
import signal
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from pipeline.runtime.worker_judge import Totals

Answer = tuple[str, int, Any, Totals | None]
"""(kind: "batch", "flushed" or "failed"; the worker; what it raised or why it failed; its totals)."""

EXIT_WAIT_S = 5.0
"""How long a worker whose pipe ended may take to exit before it is reported as it is."""


class WorkerFailed(RuntimeError):
    """A worker raised or died: the run's output is incomplete."""


def exit_words(code: int | None) -> str:
    """A process's end as a reader wants it: the signal by name (SIGKILL: maybe out of memory)."""
    if code is None:
        return "closed its answer pipe without exiting"
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    words = f"killed by {name}, exit code {code}"
    return words + "; the kernel's out-of-memory killer sends it" if -code == signal.SIGKILL else words


class Answers:
    """The parent's ends of the workers' answer pipes, and the workers they come from."""

    def __init__(self, context: ForkServerContext | SpawnContext, workers: int) -> None:
        pipes = [context.Pipe(duplex=False) for _ in range(workers)]
        self._readers: list[Connection] = [reader for reader, _ in pipes]
        self.writers: list[Connection] = [writer for _, writer in pipes]  # each to its worker, then closed here
        self._processes: dict[int, BaseProcess] = {}
        self._pending: set[int] = set()  # workers whose "flushed" answer has not come
        self._watched: dict[Any, int] = {}  # a reader or a process sentinel: its worker

    def attach(self, worker: int, process: BaseProcess) -> None:
        """``process`` started with ``writers[worker]``; from now on only it holds that end, so
        its death ends the pipe."""
        self.writers[worker].close()
        self._processes[worker] = process
        self._pending.add(worker)
        self._watched[self._readers[worker]] = worker
        self._watched[process.sentinel] = worker

    def take(self, block: bool) -> list[Answer]:
        """Every answer already in; with ``block``, at least one. Raises ``WorkerFailed`` when a
        worker reported a failure, or died or closed its pipe before its "flushed" answer."""
        answers: list[Answer] = []
        while self._watched:
            ready = wait(list(self._watched), timeout=None if block and not answers else 0)
            if not ready:
                break
            for handle in ready:
                worker = self._watched.get(handle)
                if worker is None:  # it answered its last meanwhile
                    continue
                if handle is self._readers[worker]:
                    answers.append(self._receive(worker))
                else:
                    answers.extend(self._last_words(worker))
        return answers

    def close(self) -> None:
        """Close the parent's ends (idempotent); the workers are stopped by their owner first."""
        self._watched.clear()
        for connection in (*self._readers, *self.writers):
            connection.close()

    def _receive(self, worker: int) -> Answer:
        try:
            answer: Answer = self._readers[worker].recv()
        except (EOFError, OSError):  # the worker's end closed, maybe in the middle of a message
            raise self._died(worker) from None
        return self._checked(answer)

    def _last_words(self, worker: int) -> list[Answer]:
        """A worker exited: what it wrote before, if it ends with its "flushed" answer."""
        answers: list[Answer] = []
        reader = self._readers[worker]
        with contextlib.suppress(EOFError, OSError):
            while worker in self._pending and reader.poll():
                answers.append(self._checked(reader.recv()))
        if worker in self._pending:
            raise self._died(worker)
        return answers

    def _checked(self, answer: Answer) -> Answer:
        kind, worker, payload, _ = answer
        if kind == "failed":
            raise WorkerFailed(f"detect worker {worker} failed: {payload}")
        if kind == "flushed":  # its last answer: what it does next (exit) is no news
            self._pending.discard(worker)
            self._watched.pop(self._readers[worker], None)
            self._watched.pop(self._processes[worker].sentinel, None)
        return answer

    def _died(self, worker: int) -> WorkerFailed:
        process = self._processes[worker]
        process.join(EXIT_WAIT_S)
        return WorkerFailed(f"detect worker {worker} (pid {process.pid}) died ({exit_words(process.exitcode)}) "
                            "before it answered all its lines")
