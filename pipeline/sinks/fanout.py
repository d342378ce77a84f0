"""Every sink as one: the only place a document is handed to each sink in turn.

The service (records, dead letters, alerts, the response's breaker alerts) and the
checkpoint (open alerts, refused documents rerouted as dead letters) all add through a
``Fanout``; none of them asks which sink it holds, since every sink takes every kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pipeline.sinks.base import DocKind, Sink


class Fanout:
    """An ordered, fixed set of sinks; ``add`` hands one document to all of them."""

    def __init__(self, sinks: Iterable[Sink] = ()) -> None:
        self.sinks: tuple[Sink, ...] = tuple(sinks)

    @classmethod
    def of(cls, sinks: Iterable[Sink]) -> Fanout:
        """``sinks`` as a fan-out (itself when it already is one)."""
        return sinks if isinstance(sinks, Fanout) else cls(sinks)

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> int:
        """Hand one document to every sink; returns how many sinks there are (0: it went nowhere)."""
        for sink in self.sinks:
            sink.add(doc_kind, doc_id, document, raw)
        return len(self.sinks)

    def keeps(self, doc_kind: DocKind) -> bool:
        """Whether any sink keeps this kind (a caller may then skip building the document)."""
        return any(doc_kind in sink.kinds for sink in self.sinks)

    def without(self, sink: Sink) -> Fanout:
        """The other sinks: where a document ``sink`` refused goes as a dead letter."""
        return Fanout(other for other in self.sinks if other is not sink)

    def where(self, flush_early: bool) -> Fanout:
        """The sinks flushed between checkpoints (``True``) or only at them (``False``)."""
        return Fanout(sink for sink in self.sinks if sink.flush_early == flush_early)

    @property
    def pending(self) -> int:
        return sum(sink.pending for sink in self.sinks)

    def __iter__(self) -> Iterator[Sink]:
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)
