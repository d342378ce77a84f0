"""`tokenwatch detect`: JSON lines in, alert JSON lines out, dead letters aside.

Also how investigations replay history, and what the demo runs: the same engine as
the service, fed from a file or stdin through ``LineReader``, with a summary of what
was read, skipped and raised. With ``workers`` > 1 the lines are read and routed here, and
normalised and judged by a ``WorkerPool`` (``pipeline.runtime.workers``: routing, output order).
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
from pipeline.runtime.build import build_engine, build_enricher, build_reader, settle_heap
from pipeline.runtime.engine import Enrich
from pipeline.runtime.files import LazyFile, Writer, open_input
from pipeline.runtime.line_tally import Letter, out_of_range_letter, take_line
from pipeline.runtime.lines import LineResult
from pipeline.runtime.workers import Raised, WorkerFailed, WorkerPool, WorkerSpec
from pipeline.secrets import token_hash_key
from pipeline.terminal import printable
from schemas.alerts import Alert
from schemas.redaction import TokenHasher, make_token_hasher


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


class DetectStopped(WorkerFailed):
    """A worker failed, so the run stopped: what it wrote until then is only part of its output."""

    def __init__(self, reason: WorkerFailed, summary: Summary) -> None:
        super().__init__(str(reason))
        self.alerts_written = sum(summary.alerts.values())  # also what went to ``on_alerts``
        self.dead_letters_written = sum(summary.dead_letters.values())


def _fmt(counter: Counter[str]) -> str:
    if not counter:
        return "-"
    return ", ".join(f"{printable(k)}={v}" for k, v in sorted(counter.items()))


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
        hash_key: bytes | None = None,
    ) -> None:
        """``workers`` > 1: lines are normalised and judged in that many processes, each
        building its reader and enrichment from ``settings`` (``enrich`` is then unused), its
        token hasher from ``hash_key`` (the key of ``hash_token``; default: the configured
        key) and its clock from ``clock`` (which must then be picklable); call ``close`` if
        the run stops before ``finish``."""
        self.on_alerts = on_alerts  # e.g. the alert store, beside the alerts file
        self.reader = build_reader(settings, hash_token, forced_format, clock)
        self.normalizer = self.reader.normalizer
        self.pool = None
        if workers > 1:
            key = hash_key if hash_key is not None else token_hash_key()
            self.pool = WorkerPool(WorkerSpec(settings, key, forced_format, clock), workers)
        self.engine = build_engine(settings, enrich) if self.pool is None else None
        self.alerts_out = alerts_out
        self.dead_out = dead_out
        self.summary = Summary()
        self._seq = 0  # lines (and long-line events) routed: the position the pool orders output by

    def feed(self, lines: Iterable[bytes | LongLine], origin: str) -> None:
        """Lines as ``read_lines`` gives them: a line longer than ``input.max_line_bytes``
        arrives as a ``LongLine`` and is never held whole."""
        summary = self.summary
        started = time.perf_counter()
        if self.pool is not None:
            self._route(lines, origin, self.pool)
        else:
            for result in self.reader.results(self._counted(lines), origin):
                if result.blank:
                    summary.blank_lines += 1
                else:
                    self._take(result)
        summary.seconds += time.perf_counter() - started

    def _route(self, lines: Iterable[bytes | LongLine], origin: str, pool: WorkerPool) -> None:
        """Raw lines to the workers, as ``LineReader.results`` would take them; a long line
        (never held whole, so never sent) is mapped here and its events sent."""
        summary = self.summary
        pool.start_input(origin)
        for number, line in enumerate(lines, start=1):
            summary.lines += 1
            if isinstance(line, LongLine):
                self._route_long(line, f"{origin}:{number}", number, pool)
                continue
            line = line.rstrip(b"\r\n")
            if not line.strip():
                summary.blank_lines += 1
                continue
            self._seq += 1
            if pool.submit_line(self._seq, number, line):
                self._emit(pool.ready())

    def _route_long(self, line: LongLine, where: str, number: int, pool: WorkerPool) -> None:
        for normalized in self.normalizer.normalize_long(line, where):
            letters: list[Letter] = []
            events = take_line(self.reader.judge(normalized, where), self.summary, letters)
            self._seq += 1
            if letters:
                pool.add_letters((self._seq, 0), letters)
            if events and pool.submit_events(self._seq + 1, number, events):
                self._emit(pool.ready())
            self._seq += len(events)

    def _counted(self, lines: Iterable[bytes | LongLine]) -> Iterator[bytes | LongLine]:
        for line in lines:
            self.summary.lines += 1
            yield line

    def _take(self, result: LineResult) -> None:
        letters: list[Letter] = []
        events = take_line(result, self.summary, letters)
        for letter in letters:
            self._dead(letter)
        if self.engine is None:
            return
        submit, refused = self.engine.submit, self.engine.take_out_of_range
        for event in events:
            alerts = submit(event)
            if alerts:
                self._write(alerts)
            for late in refused():
                self._dead(out_of_range_letter(late, result.origin))

    def finish(self) -> Summary:
        started = time.perf_counter()
        if self.engine is not None:
            self._write(self.engine.flush())
            self.summary.engine = self.engine.counters
        elif self.pool is not None:
            self._emit(self.pool.finish())
            self.summary.engine = self.pool.counters
            self.pool.tally.add_to(self.summary)
            self.normalizer.repairs.update(self.pool.repairs)
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
            for letter in entry.letters:
                self._dead(letter)

    def _dead(self, letter: Letter) -> None:
        self.summary.dead_letters[letter[0]] += 1
        self.dead_out.write(orjson.dumps(letter[1]) + b"\n")

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
    ``DetectStopped`` when a worker fails: what was written by then is incomplete."""
    key = token_hash_key()
    enricher = build_enricher(settings) if workers <= 1 else None
    settle_heap()
    with LazyFile(dead_path) as dead_out, open_input(input_name) as stream:
        run = DetectRun(settings, make_token_hasher(key), output, dead_out, fmt, enricher, on_alerts=on_alerts,
                        workers=workers, hash_key=key)
        try:
            run.feed(read_lines(stream, settings.input.max_line_bytes), "stdin" if input_name == "-" else input_name)
            return run.finish()
        except WorkerFailed as exc:
            raise DetectStopped(exc, run.summary) from exc
        finally:
            run.close()
