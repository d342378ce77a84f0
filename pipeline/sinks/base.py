"""The sink contract: buffer in ``add``, write in ``flush`` at a checkpoint, never drop.

The service loop checkpoints in the order flush sinks → changelog → commit
offsets, so a sink must either write everything it buffered or raise
:class:`SinkUnavailable` and keep the buffer for the retry (backpressure: the
caller pauses consumption and calls ``flush`` again later). Documents the
destination refuses on their own merits (a mapping conflict) are not retried
forever: ``flush`` hands them back as :class:`Rejected` so the caller can
dead-letter them; so are documents that cannot even be encoded (nested too deep,
a lone surrogate): a sink never lets one document's content stop a flush.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import orjson

if TYPE_CHECKING:
    from pipeline.config import Settings

DocKind = Literal["alert", "event", "dead_letter", "action"]
DOC_KINDS: tuple[DocKind, ...] = ("alert", "event", "dead_letter", "action")

SOURCE_FIELD = "source_record"
"""Key of ``{"topic", "partition", "offset"}`` of the rejected record in a dead-letter document."""


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


def encode(document: Mapping[str, Any]) -> bytes:
    """The JSON bytes of one document; raises :class:`Unencodable` (a ``ValueError``) when
    orjson refuses it (nesting over 254, a lone surrogate, a non-string key, a huge int)."""
    try:
        return orjson.dumps(dict(document))
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise Unencodable(f"{type(exc).__name__}: {exc}"[:200]) from None


class Unencodable(ValueError):
    """A document whose content cannot be written as JSON. The message is orjson's own
    (a fixed sentence naming the problem), never a piece of the document."""


_DEAD_LETTER_FACTS = ("reason", "stage", "error", "format", "origin", "ingested_at", "raw_bytes", "raw_sha256",
                      "truncated", "event_id")


def encodable_dead_letter(document: Mapping[str, Any], problem: str) -> dict[str, Any]:
    """What is left of a dead letter that cannot be encoded whole: its scalar facts (reason,
    origin, source offset, size, SHA-256) without the record copy, and why it was cut.
    Always encodable, so the record it stands for still reaches the dead-letter sinks."""
    kept: dict[str, Any] = {name: _plain(document[name]) for name in _DEAD_LETTER_FACTS if name in document}
    source = document.get(SOURCE_FIELD)
    if isinstance(source, Mapping):
        kept[SOURCE_FIELD] = {k: _plain(source[k]) for k in ("topic", "partition", "offset") if k in source}
    kept["encoding_error"] = problem
    return kept


def _plain(value: Any) -> str | int | float | bool | None:
    """A scalar orjson always accepts: valid UTF-8, a 64-bit int, at most 1,000 characters."""
    if value is None or isinstance(value, bool) or isinstance(value, float):
        return value
    if isinstance(value, int) and -2**63 <= value < 2**64:
        return value
    text = value if isinstance(value, str) else type(value).__name__
    return text[:1000].encode("utf-8", "replace").decode("utf-8")


@runtime_checkable
class Sink(Protocol):
    """What the service loop calls; a sink is registered by name in ``pipeline.sinks.SINKS``.

    Every sink takes every document kind: one it does not keep (``kinds``) is ignored, so
    the caller hands each document to all sinks alike (``pipeline.sinks.fanout.Fanout``)."""

    name: str
    kinds: frozenset[DocKind]  # the document kinds it keeps; ``add`` of another kind does nothing
    flush_early: bool  # flushed as alerts open or change (cheap, e.g. Kafka), not only at checkpoints

    def start(self) -> None:
        """Prepare the destination (templates, topics); raises ``SinkUnavailable`` if it is down."""

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> None:
        """Buffer one document; a later ``add`` of the same (kind, id) replaces it. No I/O.
        ``raw``: the original record bytes of a dead letter, when the operator keeps them
        (``service.dead_letter_keep_original``); a sink that has no place for them ignores them."""

    def flush(self) -> FlushResult:
        """Write the buffer; on success it is empty. Raises ``SinkUnavailable`` keeping it."""

    @property
    def pending(self) -> int:
        """Documents buffered and not yet written."""

    def close(self) -> None:
        """Release connections; does not flush (the caller checkpoints first)."""


class RegisteredSink(Protocol):
    """A sink class as ``pipeline.sinks.SINKS`` holds it: built from the settings by name."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Sink:
        """The sink the settings describe (no I/O: ``start`` connects)."""
        ...


@dataclass
class MemorySink:
    """An in-process sink for tests of the service loop: can be told to be down. Keeps the
    original bytes a dead letter came with in ``originals``, as the Kafka sink writes them."""

    name: str = "memory"
    down: str | None = None
    kinds: frozenset[DocKind] = frozenset(DOC_KINDS)
    flush_early: bool = True
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    originals: dict[tuple[str, str], bytes] = field(default_factory=dict)
    flushes: int = 0
    _buffer: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _rejected: list[Rejected] = field(default_factory=list)

    @classmethod
    def from_settings(cls, settings: Settings) -> MemorySink:
        """Keeps every document in process memory: for trials and tests, not for production."""
        return cls()

    def start(self) -> None:
        if self.down:
            raise SinkUnavailable(self.name, self.down, self.pending)

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> None:
        """Like the real sinks: an unencodable dead letter is cut to its facts, any other
        unencodable document is handed back as rejected by the next ``flush``."""
        if doc_kind not in self.kinds:
            return
        try:
            encode(document)
        except Unencodable as exc:
            if doc_kind != "dead_letter":
                self._rejected.append(Rejected(doc_kind, doc_id, document, f"not encodable: {exc}"))
                return
            document = encodable_dead_letter(document, str(exc))
        self._buffer[(doc_kind, doc_id)] = dict(document)
        if raw is not None and doc_kind == "dead_letter":
            self.originals[(doc_kind, doc_id)] = bytes(raw)

    def flush(self) -> FlushResult:
        if self.down:
            raise SinkUnavailable(self.name, self.down, self.pending)
        written = len(self._buffer)
        self.documents.update(self._buffer)
        self._buffer.clear()
        self.flushes += 1
        rejected, self._rejected = tuple(self._rejected), []
        return FlushResult(written=written, rejected=rejected)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Nothing to release; the buffer stays (closing never drops)."""
