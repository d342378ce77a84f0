"""What `detect` counts and dead-letters of each line it reads, in one place.

The single process and every `detect --workers` worker take lines through ``take_line``, so
the counts the workers send back add up to what one process counts, and their dead letters
are the same documents.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.runtime.lines import LineResult
from schemas.events import CanonicalEvent

Letter = tuple[str, dict[str, object]]
"""A dead letter and the format the summary counts it under."""


class LineCounts(Protocol):
    """The per-line counters of the ``detect`` summary."""

    events: int
    per_format: Counter[str]
    skipped: Counter[str]
    refused: Counter[str]


@dataclass
class Tally:
    """A worker's ``LineCounts``, summed into the summary at the end of the run."""

    events: int = 0
    per_format: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def add_to(self, counts: LineCounts) -> None:
        counts.events += self.events
        counts.per_format.update(self.per_format)
        counts.skipped.update(self.skipped)
        counts.refused.update(self.refused)


def take_line(result: LineResult, counts: LineCounts, letters: list[Letter]) -> list[CanonicalEvent]:
    """Count one line's result, append its dead letters (the normaliser's, then the trust
    rules'), and return the events that go on to the engine."""
    normalized = result.normalized  # what the result's properties read, read once
    if normalized.skipped_entries:
        counts.skipped.update(normalized.skipped_entries)
    fmt = result.format
    if normalized.dead_letter is not None:
        letters.append((fmt, normalized.dead_letter))
        if not normalized.events:
            return []
    if normalized.skipped_type is not None:
        counts.skipped[f"{normalized.format}:{normalized.skipped_type}"] += 1
        return []
    if result.refused_letter is not None:
        letters.append((fmt, result.refused_letter))
        counts.refused.update(refusal.code for _, refusal in result.refused)
    events = result.events
    if events or not result.refused:
        counts.per_format[fmt] += len(events)
    counts.events += len(events)
    return events


def out_of_range_letter(event: CanonicalEvent, origin: str) -> Letter:
    """The dead letter of an event the engine refused: far ahead of the stream while its
    hold of such events was full. The canonical event is kept (it holds no raw token)."""
    return event.source, {
        "reason": "event time out of range: ahead of the stream beyond the held-event bound",
        "format": event.source,
        "origin": origin,
        "event": event.model_dump(mode="json"),
    }
