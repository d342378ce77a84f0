"""`tokenwatch detect`: JSON lines in, alert JSON lines out, dead letters aside.

Also how investigations replay history, and what the demo runs: the same engine as
the service, fed from a file or stdin through ``LineReader``, with a summary of what
was read, skipped and raised. With ``workers`` > 1 the lines are still read here and the
events judged by a ``WorkerPool`` (``pipeline.runtime.workers``: routing, output order).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from pipeline.config import Settings
from pipeline.ingest.normalize import Clock
from pipeline.ingest.reading import LongLine, read_lines
from pipeline.runtime.build import build_engine, build_enricher, build_reader, settle_heap, token_hasher
from pipeline.runtime.engine import Enrich
from pipeline.runtime.files import LazyFile, Writer, open_input
from pipeline.runtime.lines import LineResult
from pipeline.runtime.workers import Raised, WorkerPool
from pipeline.terminal import printable
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from schemas.redaction import TokenHasher


@dataclass
class Summary:
    lines: int = 0
    blank_lines: int = 0
    events: int = 0
    per_format: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # events the trust rules let not in, by code
    repairs: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    engine: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def render(self) -> str:
        rate = self.lines / self.seconds if self.seconds > 0 else 0.0
        out = [
            f"tokenwatch detect: {self.lines} lines, {self.events} events in {self.seconds:.2f}s "
            f"({rate:,.0f} lines/s)",
            "  per format: " + _fmt(self.per_format),
            f"  duplicates: {self.engine['duplicates']}, late events: {self.engine['late_events']}, "
            f"reordered: {self.engine['reordered_events']}, "
            f"held ahead of the stream: {self.engine['held_events']}, clock jumps: {self.engine['clock_jumps']}, "
            f"out of range: {self.engine['out_of_range_events']}",
            f"  skipped (unsupported event types): {sum(self.skipped.values())} " + _fmt(self.skipped),
            f"  dead letters: {sum(self.dead_letters.values())} " + _fmt(self.dead_letters),
            f"  refused by trust rules (dead-lettered): {sum(self.refused.values())} " + _fmt(self.refused),
            f"  repaired (cut, replaced or dropped; events kept): {sum(self.repairs.values())} "
            + _fmt(self.repairs),
            f"  alerts: {sum(self.alerts.values())} " + _fmt(self.alerts),
        ]
        return "\n".join(out)


def _fmt(counter: Counter[str]) -> str:
    if not counter:
        return "-"
    return ", ".join(f"{printable(k)}={v}" for k, v in sorted(counter.items()))


def out_of_range_letter(event: CanonicalEvent, origin: str) -> dict[str, object]:
    """The dead letter of an event the engine refused: far ahead of the stream while its
    hold of such events was full. The canonical event is kept (it holds no raw token)."""
    return {
        "reason": "event time out of range: ahead of the stream beyond the held-event bound",
        "format": event.source,
        "origin": origin,
        "event": event.model_dump(mode="json"),
    }


class DetectRun:
    """One pass over input lines into one engine; alerts and dead letters as JSON lines."""

    def __init__(
        self,
        settings: Settings,
        hash_token: TokenHasher,
        alerts_out: Writer,
        dead_out: Writer,
        forced_format: str | None = None,
        enrich: Enrich | None = None,
        clock: Clock | None = None,
        on_alerts: Callable[[list[Alert]], None] | None = None,
        workers: int = 1,
    ) -> None:
        """``workers`` > 1: the engine runs in that many processes, each building its own
        enrichment from ``settings`` (``enrich`` is then unused); call ``close`` if the run
        stops before ``finish``."""
        self.on_alerts = on_alerts  # e.g. the alert store, beside the alerts file
        self.reader = build_reader(settings, hash_token, forced_format, clock)
        self.normalizer = self.reader.normalizer
        self.pool = WorkerPool(settings, workers) if workers > 1 else None
        self.engine = build_engine(settings, enrich) if self.pool is None else None
        self.alerts_out = alerts_out
        self.dead_out = dead_out
        self.summary = Summary()
        self._results = 0  # lines (or long-line slices) read: the position the pool orders output by

    def feed(self, lines: Iterable[bytes | LongLine], origin: str) -> None:
        """Lines as ``read_lines`` gives them: a line longer than ``input.max_line_bytes``
        arrives as a ``LongLine`` and is never held whole."""
        summary = self.summary
        started = time.perf_counter()
        for result in self.reader.results(self._counted(lines), origin):
            if result.blank:
                summary.blank_lines += 1
            else:
                self._take(result)
        summary.seconds += time.perf_counter() - started

    def _counted(self, lines: Iterable[bytes | LongLine]) -> Iterator[bytes | LongLine]:
        for line in lines:
            self.summary.lines += 1
            yield line

    def _take(self, result: LineResult) -> None:
        summary = self.summary
        if result.skipped_entries:
            summary.skipped.update(result.skipped_entries)
        if result.dead_letter is not None:
            summary.dead_letters[result.format] += 1
            self._dead(result.dead_letter)
            if not result.mapped:
                return
        if result.skipped_type is not None:
            summary.skipped[f"{result.normalized.format}:{result.skipped_type}"] += 1
            return
        if result.refused_letter is not None:
            summary.dead_letters[result.format] += 1
            summary.refused.update(refusal.code for _, refusal in result.refused)
            self._dead(result.refused_letter)
        events = result.events
        if events or not result.refused:
            summary.per_format[result.format] += len(events)
        summary.events += len(events)
        self._results += 1
        if self.engine is None:
            if events and self.pool and self.pool.submit(self._results, result.origin, events):
                self._emit(self.pool.ready())
            return
        submit, refused = self.engine.submit, self.engine.take_out_of_range
        for event in events:
            alerts = submit(event)
            if alerts:
                self._write(alerts)
            for late in refused():
                summary.dead_letters[late.source] += 1
                self._dead(out_of_range_letter(late, result.origin))

    def finish(self) -> Summary:
        started = time.perf_counter()
        if self.engine is not None:
            self._write(self.engine.flush())
            self.summary.engine = self.engine.counters
        elif self.pool is not None:
            self._emit(self.pool.finish())
            self.summary.engine = self.pool.counters
        self.summary.repairs = self.normalizer.repairs
        self.summary.seconds += time.perf_counter() - started
        return self.summary

    def close(self) -> None:
        """Stop the workers of a run that ends early (an error); nothing more is written."""
        if self.pool is not None:
            self.pool.close()

    def _emit(self, raised: Iterable[Raised]) -> None:
        """What the workers raised, in the pool's order: alerts, and dead letters of the events
        their engines refused as out of range."""
        for entry in raised:
            if entry.alerts:
                self._write(entry.alerts)
            for late in entry.refused:
                self.summary.dead_letters[late.source] += 1
                self._dead(out_of_range_letter(late, entry.origin))

    def _dead(self, letter: dict[str, object]) -> None:
        self.dead_out.write(orjson.dumps(letter) + b"\n")

    def _write(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.summary.alerts[alert.rule.id] += 1
            self.alerts_out.write(orjson.dumps(alert.to_json_dict()) + b"\n")
        if alerts and self.on_alerts is not None:
            self.on_alerts(alerts)


def run_detect(
    settings: Settings, input_name: str, output: Writer, dead_path: Path, fmt: str,
    on_alerts: Callable[[list[Alert]], None] | None = None, workers: int = 1,
) -> Summary:
    """`tokenwatch detect` over ``input_name`` (``-``: stdin): alerts to ``output``, dead
    letters appended to ``dead_path`` (created only if there is one). ``workers`` > 1 raises
    ``WorkerFailed`` when a worker fails: the output is then incomplete."""
    hasher = token_hasher()
    enricher = build_enricher(settings) if workers <= 1 else None
    settle_heap()
    with LazyFile(dead_path) as dead_out, open_input(input_name) as stream:
        run = DetectRun(settings, hasher, output, dead_out, fmt, enricher, on_alerts=on_alerts, workers=workers)
        try:
            run.feed(read_lines(stream, settings.input.max_line_bytes), "stdin" if input_name == "-" else input_name)
            return run.finish()
        finally:
            run.close()
