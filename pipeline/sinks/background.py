"""A sink whose checkpoint flush runs on a worker thread, off the service loop.

An Elasticsearch bulk request takes tens of milliseconds, and most of a second when a day's
first document creates its index; flushed on the loop, it holds every event behind it. The
service's periodic checkpoint *starts* this sink's flush and commits its offsets once it has
finished (with the changelog's acks): the checkpoint stays the unit of consistency, only the
loop no longer waits for it.

The wrapped sink is never touched by two threads at once: documents added while a flush runs
are kept here and handed to it once the flush is over (a newer version of a document then
replaces the one being written, as in the sink's own buffer).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from pipeline.sinks.base import DocKind, FlushResult, Sink


class BackgroundSink:
    """Wraps a sink: ``start_flush`` / ``finished`` / ``result`` for the periodic checkpoint;
    ``flush`` (a rebalance, the shutdown, a retry while a sink is down) stays synchronous."""

    flush_early = False

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self.name = inner.name
        self.kinds: frozenset[DocKind] = inner.kinds
        self._staged: dict[tuple[DocKind, str], tuple[Mapping[str, Any], bytes | None]] = {}
        self._thread: threading.Thread | None = None
        self._outcome: FlushResult | BaseException | None = None

    def start(self) -> None:
        self.inner.start()

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> None:
        if doc_kind not in self.kinds:
            return
        if self._thread is None:
            self.inner.add(doc_kind, doc_id, document, raw)
        else:
            self._staged[(doc_kind, doc_id)] = (document, raw)

    @property
    def pending(self) -> int:
        return len(self._staged) + self.inner.pending

    def start_flush(self) -> None:
        """Start flushing what the sink holds now, on a worker thread (one at a time)."""
        if self._thread is not None:
            return
        self._outcome = None
        self._thread = threading.Thread(target=self._run, name=f"flush-{self.name}", daemon=True)
        self._thread.start()

    def finished(self) -> bool:
        return self._thread is None or not self._thread.is_alive()

    def result(self) -> FlushResult:
        """Wait for the flush started last; its result, or what it raised (``SinkUnavailable``)."""
        outcome = self._join()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome if outcome is not None else FlushResult()

    def flush(self) -> FlushResult:
        """Synchronous: the flush in flight, then everything since."""
        earlier = self.result()
        now = self.inner.flush()
        return FlushResult(written=earlier.written + now.written, rejected=earlier.rejected + now.rejected)

    def close(self) -> None:
        self._join()
        self.inner.close()

    def _run(self) -> None:
        try:
            self._outcome = self.inner.flush()
        except BaseException as exc:  # noqa: BLE001 -- handed to the loop thread by result()
            self._outcome = exc

    def _join(self) -> FlushResult | BaseException | None:
        thread = self._thread
        if thread is None:
            return None
        thread.join()
        self._thread = None
        outcome, self._outcome = self._outcome, None
        for (doc_kind, doc_id), (document, raw) in self._staged.items():
            self.inner.add(doc_kind, doc_id, document, raw)
        self._staged.clear()
        return outcome
