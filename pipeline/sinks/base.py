"""The sink contract: buffer in ``add``, write in ``flush`` at a checkpoint, never drop.

The service loop checkpoints in the order flush sinks → changelog → commit
offsets, so a sink must either write everything it buffered or raise
:class:`SinkUnavailable` and keep the buffer for the retry (backpressure: the
caller pauses consumption and calls ``flush`` again later). Documents the
destination refuses on their own merits (a mapping conflict) are not retried
forever: ``flush`` hands them back as :class:`Rejected` so the caller can
dead-letter them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

DocKind = Literal["alert", "event", "dead_letter", "action"]
DOC_KINDS: tuple[DocKind, ...] = ("alert", "event", "dead_letter", "action")


class SinkUnavailable(Exception):
    """The destination cannot take writes now; everything buffered is kept for a retry."""

    def __init__(self, sink: str, reason: str, pending: int) -> None:
        super().__init__(f"{sink} unavailable ({pending} documents kept for retry): {reason}")
        self.sink = sink
        self.reason = reason
        self.pending = pending


BackpressureError = SinkUnavailable
"""Alias: the name the style guide uses for the same condition."""


@dataclass(frozen=True)
class Rejected:
    """One document the destination refused for itself (not for its health): dead-letter it."""

    doc_kind: str
    doc_id: str
    document: Mapping[str, Any]
    reason: str
    status: int | None = None


@dataclass(frozen=True)
class FlushResult:
    """What one successful ``flush`` did: ``written`` documents, and the ``rejected`` ones."""

    written: int = 0
    rejected: tuple[Rejected, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.rejected


@runtime_checkable
class Sink(Protocol):
    """What the service loop calls; a sink is registered by name in ``pipeline.sinks.SINKS``."""

    name: str

    def start(self) -> None:
        """Prepare the destination (templates, topics); raises ``SinkUnavailable`` if it is down."""

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any]) -> None:
        """Buffer one document; a later ``add`` of the same (kind, id) replaces it. No I/O."""

    def flush(self) -> FlushResult:
        """Write the buffer; on success it is empty. Raises ``SinkUnavailable`` keeping it."""

    @property
    def pending(self) -> int:
        """Documents buffered and not yet written."""

    def close(self) -> None:
        """Release connections; does not flush (the caller checkpoints first)."""


@dataclass
class MemorySink:
    """An in-process sink for tests of the service loop: can be told to be down."""

    name: str = "memory"
    down: str | None = None
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    flushes: int = 0
    _buffer: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def start(self) -> None:
        if self.down:
            raise SinkUnavailable(self.name, self.down, self.pending)

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any]) -> None:
        if doc_kind not in DOC_KINDS:
            raise ValueError(f"unknown document kind {doc_kind!r}")
        self._buffer[(doc_kind, doc_id)] = dict(document)

    def flush(self) -> FlushResult:
        if self.down:
            raise SinkUnavailable(self.name, self.down, self.pending)
        written = len(self._buffer)
        self.documents.update(self._buffer)
        self._buffer.clear()
        self.flushes += 1
        return FlushResult(written=written)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Nothing to release; the buffer stays (closing never drops)."""
