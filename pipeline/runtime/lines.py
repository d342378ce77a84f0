"""The one loop from input lines to events: normalise, skip, dead-letter, trust.

`detect`, training, the notebooks and the demo read lines through ``LineReader.results``;
the service, which handles one Kafka record at a time and names the stage that failed,
calls its two steps (``normalize`` then ``judge``) itself. Each normalised line comes out
as one typed ``LineResult``; what to do with it (submit, count, write the dead letters)
stays with the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.ingest.normalize import Normalized, Normalizer
from pipeline.ingest.reading import LongLine
from pipeline.ingest.trust import Refusal, TrustRules, refused_letter
from schemas.events import CanonicalEvent


@dataclass(frozen=True, slots=True)
class LineResult:
    """What one line (or one slice of a long log-file line) became.

    ``events`` are those the trust rules let in, ready for the engine; ``refused`` are the
    others, with ``refused_letter`` their dead letter. A normaliser dead letter and events
    can come together (a batch record with some bad entries)."""

    origin: str  # "<input>:<line number>"
    normalized: Normalized
    events: list[CanonicalEvent] = field(default_factory=list)
    refused: list[tuple[CanonicalEvent, Refusal]] = field(default_factory=list)
    refused_letter: dict[str, Any] | None = None
    blank: bool = False

    @property
    def format(self) -> str:
        return self.normalized.format or "unknown"

    @property
    def dead_letter(self) -> dict[str, Any] | None:
        """The normaliser's dead letter (the record, or some entries of it, unreadable)."""
        return self.normalized.dead_letter

    @property
    def skipped_type(self) -> str | None:
        """The record's event type when no detector needs it (nothing else happens to it)."""
        return self.normalized.skipped_type

    @property
    def skipped_entries(self) -> Mapping[str, int]:
        return self.normalized.skipped_entries

    @property
    def mapped(self) -> int:
        """Events the line mapped to, before the trust rules."""
        return len(self.normalized.events)


_BLANK = Normalized()


class LineReader:
    """A normaliser and the trust rules, applied to lines as one step each."""

    def __init__(self, normalizer: Normalizer, trust: TrustRules) -> None:
        self.normalizer = normalizer
        self.trust = trust

    def normalize(self, line: bytes, origin: str) -> Normalized:
        return self.normalizer.normalize(line, origin)

    def judge(self, result: Normalized, origin: str, topic: str | None = None) -> LineResult:
        """Split the line's events into those ``topic`` (None: the detect input) may carry and
        the refused ones. A skipped type is not judged: nothing of it goes on."""
        kept, refused = self.trust.split_line(result, topic)
        if not refused:
            return LineResult(origin, result, kept)
        letter = refused_letter(refused, result.format or "unknown", origin, self.normalizer.hash_token)
        return LineResult(origin, result, kept, refused, letter)

    def results(self, lines: Iterable[bytes | LongLine], origin: str, topic: str | None = None) -> Iterator[LineResult]:
        """One result per line, blank lines included (``blank``), lazily: a long CloudTrail log
        file comes out in slices, each judged before the next is read. Lines as ``read_lines``
        gives them (a ``LongLine`` is never held whole) or plain bytes."""
        for number, line in enumerate(lines, start=1):
            where = f"{origin}:{number}"
            if isinstance(line, LongLine):
                for result in self.normalizer.normalize_long(line, where):
                    yield self.judge(result, where, topic)
                continue
            line = line.rstrip(b"\r\n")
            if not line.strip():
                yield LineResult(where, _BLANK, blank=True)
                continue
            yield self.judge(self.normalizer.normalize(line, where), where, topic)

    def events(self, lines: Iterable[bytes | LongLine], origin: str) -> Iterator[CanonicalEvent]:
        """Only the events that would reach the engine (what training and the notebooks read):
        dead letters, skipped types and refused events left out."""
        for result in self.results(lines, origin):
            yield from result.events
