"""One `detect --workers` worker's share of the work: raw lines in, what they raised out.

The parent only routes (``pipeline.runtime.routing``); a worker normalises its lines (the
fast path included), applies the trust rules, counts and dead-letters them as the single
process does (``take_line``), and runs its engine. What it raises is tagged with the input
position of the line (and event) that raised it, so the parent can write everything in input
order. A line routed to every worker (it may hold a revocation, ``is_global``) is judged by its
owner; the others normalise it only to submit its revocation-like events, count nothing of
it, and dead-letter nothing of it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from pipeline.config import Settings
from pipeline.ingest.normalize import Clock
from pipeline.kafka.keys import is_global
from pipeline.runtime.build import build_engine, build_enricher, build_reader, settle_heap
from pipeline.runtime.line_tally import Letter, Tally, out_of_range_letter, take_line
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher

Position = tuple[int, int]
"""(line sequence number in the run, 0 for the line's dead letters or n for its n-th event)."""
END: Position = (1 << 62, 0)
"""The position of the end-of-input flush."""

Item = tuple[int, int, bytes | CanonicalEvent, bool]
"""(sequence number, line number, the raw line or an event the parent mapped, copy)."""

ARRIVAL_COUNTERS = ("events", "duplicates", "late_events", "reordered_events", "held_events", "out_of_range_events")
"""Engine counters of an event's arrival: its owner counts them, not the workers given a copy."""


@dataclass(order=True)
class Raised:
    """What one input position gave (``END``: the flush): alerts and dead letters, in the
    order one process writes them."""

    position: Position
    worker: int  # -1: the parent itself (a long line it read)
    alerts: list[Alert] = field(compare=False, default_factory=list)
    letters: list[Letter] = field(compare=False, default_factory=list)


@dataclass
class Totals:
    """A worker's counters at the end of its input, for the run's summary."""

    engine: Counter[str]
    tally: Tally
    repairs: Counter[str]
    cpu_s: float  # the worker's CPU time, start-up included
    idle_s: float  # the time it waited for lines (the parent, or its pipe, slower than the worker)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker builds its reader and engine from; picklable (``clock`` too, if given)."""

    settings: Settings
    hash_key: bytes = field(repr=False)  # the token hash key: token ids must hash as the parent's
    forced_format: str | None = None
    clock: Clock | None = None


class WorkerJudge:
    """A worker's reader, engine and counts."""

    def __init__(self, index: int, spec: WorkerSpec) -> None:
        self.index = index
        settings = spec.settings
        self.reader = build_reader(settings, make_token_hasher(spec.hash_key), spec.forced_format, spec.clock)
        self.engine = build_engine(settings, build_enricher(settings))
        self.tally = Tally()
        settle_heap()

    def judge(self, origin: str, items: list[Item]) -> list[Raised]:
        """Normalise, count and judge one batch; what it raised, by position."""
        raised: list[Raised] = []
        reader, index = self.reader, self.index
        for seq, number, payload, copy in items:
            where = f"{origin}:{number}"
            if not isinstance(payload, bytes):
                events = [payload]
            elif copy:
                events = self._revocations(payload, where)
            else:
                letters: list[Letter] = []
                events = take_line(reader.judge(reader.normalize(payload, where), where), self.tally, letters)
                if letters:
                    raised.append(Raised((seq, 0), index, [], letters))
            for n, event in enumerate(events, start=1):
                alerts, refused = self._submit(event, copy)
                if alerts or refused:
                    raised.append(Raised((seq, n), index, alerts, [out_of_range_letter(late, where) for late in refused]))
        return raised

    def flush(self, idle_s: float) -> tuple[Raised, Totals]:
        totals = Totals(Counter(self.engine.counters), self.tally, Counter(self.reader.normalizer.repairs),
                        time.process_time(), idle_s)
        return Raised(END, self.index, self.engine.flush()), totals

    def _revocations(self, line: bytes, where: str) -> list[CanonicalEvent]:
        """The revocation-like events of a line another worker owns; its repairs are the owner's to count."""
        repairs = self.reader.normalizer.repairs
        kept = Counter(repairs)
        result = self.reader.judge(self.reader.normalize(line, where), where)
        repairs.clear()
        repairs.update(kept)
        return [event for event in result.events if is_global(event)]

    def _submit(self, event: CanonicalEvent, copy: bool) -> tuple[list[Alert], list[CanonicalEvent]]:
        engine = self.engine
        if not copy:
            return engine.submit(event), engine.take_out_of_range()
        counted = [engine.counters[name] for name in ARRIVAL_COUNTERS]
        alerts = engine.submit(event)
        refused = engine.take_out_of_range()
        for name, value in zip(ARRIVAL_COUNTERS, counted, strict=True):  # the owner counts its arrival
            engine.counters[name] = value
        return alerts, [late for late in refused if late.event_id != event.event_id]  # and dead-letters it
