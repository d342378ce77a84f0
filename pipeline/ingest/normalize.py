"""Raw lines -> canonical events, or a dead letter with the reason.

This is the boundary where untrusted bytes meet the schemas. Whatever a line
holds (garbage, truncated JSON, a huge string, wrong types, a timestamp far in
the future, a known format's unknown event type), the result is events, a
counted skip, or a dead letter: never an exception that stops the run.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from ipaddress import ip_network
from types import MappingProxyType
from typing import Any

import ijson
import orjson

from pipeline.ingest.config import InputConfig
from pipeline.ingest.reading import LongLine
from pipeline.ingest.untrusted import NotJSON, RepairingReader, bound_value, parse_line, repair_fields
from schemas.events import CanonicalEvent
from schemas.fast import FastMapper, fast_mappers
from schemas.redaction import TokenHasher, redact_text, redact_value
from schemas.sources import (
    FORMATS,
    AdapterContext,
    InvalidRecord,
    PartialRecord,
    SourceFormat,
    UnsupportedEventType,
    detect_format,
    parse_text_record,
)
from schemas.sources.base import InvalidFields

Clock = Callable[[], datetime]


HANDLE_FIELD = "tokenwatch_handle"
"""Top-level field of any input record that may carry a sealed revocation handle
(``pipeline.response.handles``): removed before the record is parsed or kept."""


MAX_BAD_ENTRIES = 20
"""Bad entries of a batch record (a CloudTrail log file) quoted in its dead letter."""

MAX_REPAIR_KINDS = 200
"""Distinct repair counters (summary lines, metric labels) kept per run."""

STREAM_SLICE_EVENTS = 1000
"""Events handed on at a time while a long CloudTrail log file is read."""

_REPAIR_ROUNDS = 4


NO_SKIPPED_ENTRIES: Mapping[str, int] = MappingProxyType({})


@dataclass
class Normalized:
    """Outcome of one line: events, or a skip, or a dead letter (or, for a batch
    record with some bad entries, events and a dead letter)."""

    events: list[CanonicalEvent] = field(default_factory=list)
    format: str | None = None
    skipped_type: str | None = None
    dead_letter: dict[str, Any] | None = None
    # Entries of a batch (a log file, an envelope) of types no detector needs: "format:type" -> count.
    # Read only; one shared empty mapping by default (a Counter per line was ~1.5 % of detect).
    skipped_entries: Mapping[str, int] = field(default_factory=lambda: NO_SKIPPED_ENTRIES)
    # The format of each event when an envelope mixed formats (None: all are ``format``): trust
    # judges each record by its own format, never by the envelope's majority.
    event_formats: tuple[str, ...] | None = None


class Normalizer:
    def __init__(
        self,
        hash_token: TokenHasher,
        config: InputConfig | None = None,
        forced_format: str | None = None,
        clock: Clock | None = None,
        accept_handle: Callable[[str], object] | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.accept_handle = accept_handle
        self.handle_counts: Counter[str] = Counter()
        # What was cut, replaced or dropped from records instead of refusing them, by kind.
        self.repairs: Counter[str] = Counter()
        if forced_format not in (None, "auto") and forced_format not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise ValueError(f"unknown format {forced_format!r}; known: {known}, auto")
        self.config = config or InputConfig()
        proxies = tuple(ip_network(cidr.strip(), strict=False) for cidr in trusted_proxies)
        self.ctx = AdapterContext(hash_token=hash_token, trusted_proxies=proxies, repairs=self.repairs)
        self.hash_token = hash_token
        self.forced = FORMATS[forced_format] if forced_format not in (None, "auto") else None
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        # Now as epoch seconds, read once a line for the future-time check (time.time unless a
        # clock is given: building an aware datetime per line cost ~0.5 us).
        self._now: Callable[[], float] = time.time if clock is None else (lambda: clock().timestamp())
        # Per format, a mapper that reads a record with msgspec first (``schemas.fast``).
        self.fast: dict[str, FastMapper] = fast_mappers() if self.config.fast_path else {}

    def normalize(self, line: bytes, origin: str) -> Normalized:
        """Map one input line (without newline) from ``origin`` ("file:line")."""
        cap = self.config.max_line_bytes
        if len(line) > cap:
            if _opens_log_file(line):  # read record by record as if streamed: one result for the line
                parts = list(self.normalize_long(LongLine(line[:cap], io.BytesIO(line[cap:])), origin))
                events = [event for part in parts for event in part.events]
                return Normalized(events=events, format=parts[-1].format, dead_letter=parts[-1].dead_letter)
            return self._dead(line, origin, f"line of {len(line)} bytes exceeds max_line_bytes", None)
        try:
            raw = parse_line(line, self.config.max_depth, self.repairs)
        except NotJSON as exc:
            # A text format's line (Keycloak's plain log lines) stands for a record of its format.
            raw = parse_text_record(line, self.forced.name if self.forced else None)
            if raw is None:
                return self._dead(line, origin, exc.reason, None)
        if not isinstance(raw, dict):
            return self._dead(line, origin, f"not a JSON object but {type(raw).__name__}", None)
        if HANDLE_FIELD in raw:
            sealed = raw.pop(HANDLE_FIELD)
            if sealed is not None:  # a gateway logs null for a request that carried no token
                self._take_handle(sealed)
        envelope = envelope_entries(raw)
        if envelope is not None:
            return self._envelope(*envelope, line, origin)
        adapter = self.forced
        try:
            if adapter is None:
                adapter = detect_format(raw)
            elif not adapter.matches(raw):
                raise InvalidRecord(f"does not look like {adapter.name}")
        except InvalidRecord as exc:
            return self._dead(line, origin, exc.reason, None, raw)
        entries = log_file_entries(adapter, raw)
        if entries is not None:
            return self._batch(entries, line, origin, adapter)
        try:
            events = self._map(adapter, raw)
        except PartialRecord as exc:  # an adapter's own batch: keep the good entries
            dead = self._dead(line, origin, exc.reason, adapter.name, raw).dead_letter
            return Normalized(events=exc.events, format=adapter.name, dead_letter=dead)
        except UnsupportedEventType as exc:
            return Normalized(format=adapter.name, skipped_type=_type_label(exc))
        except InvalidRecord as exc:
            return self._dead(line, origin, exc.reason, adapter.name, raw)
        return Normalized(events, adapter.name)  # positional: keywords cost ~0.4 us a line here

    def _map(self, adapter: SourceFormat, raw: dict[str, Any]) -> list[CanonicalEvent]:
        """One record's events. Fields the vendor model refuses are cut (too long) or dropped
        (malformed, optional) and the record mapped again: what the attacker writes never
        costs the event. Raises ``InvalidRecord`` when the record's identity is unusable.
        The format's fast mapper goes first; what it refuses or is unsure of goes the
        pydantic way, which alone words dead letters and repairs."""
        fast = self.fast.get(adapter.name)
        events = fast.to_events(raw, self.ctx) if fast is not None else None
        made: Counter[str] | None = None
        if events is None:
            events, made = self._validated(adapter, raw)
        horizon = self._now() + self.config.max_future_skew_s
        for event in events:
            if event.epoch > horizon:
                raise InvalidRecord(
                    f"event time {event.time.isoformat()} is in the future (beyond max_future_skew_s)"
                )
        if made:
            for kind, count in made.items():
                if kind not in self.repairs and len(self.repairs) >= MAX_REPAIR_KINDS:
                    kind = f"{adapter.name}: other fields"  # a map's keys are the record's own: stay bounded
                self.repairs[kind] += count
        return events

    def _validated(self, adapter: SourceFormat, raw: dict[str, Any]) -> tuple[list[CanonicalEvent], Counter[str] | None]:
        """The pydantic way: the adapter's vendor model, with the repair rounds; also the
        repairs made, to count once the events are accepted."""
        first: InvalidRecord | None = None
        made: Counter[str] | None = None  # counted only when the repaired record maps
        for _ in range(_REPAIR_ROUNDS):
            try:
                events = adapter.to_events(raw, self.ctx)
                break
            except InvalidFields as exc:
                first = first or exc
                made = made if made is not None else Counter()
                if not repair_fields(raw, exc.errors, adapter.name, made):
                    raise first from None
            except UnsupportedEventType:
                raise
            except InvalidRecord as exc:
                raise (first or exc) from None
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
                raise InvalidRecord(f"{adapter.name} failed: {type(exc).__name__}: {exc}"[:300]) from None
        else:
            raise first or InvalidRecord(f"{adapter.name}: record could not be repaired")
        return events, made

    def _batch(self, entries: list[Any], line: bytes, origin: str, adapter: SourceFormat) -> Normalized:
        """A batch record (a CloudTrail log file): each entry is mapped on its own, so a bad,
        future or oversized entry costs that entry, never the file; the line's dead letter
        names and quotes the bad ones."""
        batch = _Batch(adapter.name)
        for index, entry in enumerate(entries):
            self._entry(adapter, index, entry, batch)
        if not batch.events and not batch.bad and batch.skipped:  # the whole line is of skipped types
            label = next(iter(batch.skipped)).split(":", 1)[1] if len(batch.skipped) == 1 else batch.key
            return Normalized(format=adapter.name, skipped_type=label)
        dead = None
        if batch.bad:
            dead = self._batch_dead(origin, batch, len(entries), len(line), hashlib.sha256(line).hexdigest())
        return Normalized(events=batch.events, format=adapter.name, dead_letter=dead, skipped_entries=batch.skipped)

    def _envelope(self, key: str, entries: list[Any], line: bytes, origin: str) -> Normalized:
        """A transport's batch of records of any format (Azure diagnostic settings to Event
        Hubs, ``{"records": [...]}``; a Kubernetes audit webhook's ``EventList``): each record
        is recognised and mapped on its own, a bad one costs itself and is named in the
        line's dead letter."""
        batch = _Batch(key, key=key)
        for index, entry in enumerate(entries):
            self._entry(self.forced, index, entry, batch, as_text=key == "logEvents")
        fmt = batch.formats.most_common(1)[0][0] if batch.formats else key
        batch.format = fmt  # its dead letter names the envelope's (main) format
        if not batch.events and not batch.bad and batch.skipped:  # the whole line is of skipped types
            label = next(iter(batch.skipped)).split(":", 1)[1] if len(batch.skipped) == 1 else key
            return Normalized(format=fmt, skipped_type=label)
        dead = None
        if batch.bad:
            dead = self._batch_dead(origin, batch, len(entries), len(line), hashlib.sha256(line).hexdigest())
        mixed = tuple(batch.event_formats) if len(batch.formats) > 1 else None
        return Normalized(events=batch.events, format=fmt, dead_letter=dead, skipped_entries=batch.skipped,
                          event_formats=mixed)

    def normalize_long(self, line: LongLine, origin: str) -> Iterator[Normalized]:
        """A line longer than ``max_line_bytes``: a CloudTrail log file is read record by
        record (events come out in slices, memory stays bounded by one record); anything
        else is a dead letter with its size and hash, never read whole."""
        adapter = FORMATS["cloudtrail"]
        if not _opens_log_file(line.head) or self.forced not in (None, adapter):
            line.finish()
            reason = f"line of {line.size} bytes exceeds max_line_bytes"
            record = self._letter(origin, reason, None, line.size, line.sha256)
            head = line.head[: self.config.dead_letter_raw_bytes].decode("utf-8", "replace")
            record.update(raw_text=redact_text(head, self.hash_token), truncated=True)
            yield Normalized(dead_letter=record)
            return
        batch = _Batch(adapter.name)
        total = 0
        try:
            for entry in ijson.items(RepairingReader(line, self.repairs), "Records.item", use_float=True):
                self._entry(adapter, total, bound_value(entry, self.config.max_depth, self.repairs), batch)
                total += 1
                if len(batch.events) >= STREAM_SLICE_EVENTS:
                    yield Normalized(events=batch.events, format=adapter.name)
                    batch.events = []
        except (ijson.JSONError, ValueError) as exc:
            batch.bad.append((total, f"log file unreadable after {total} records: {str(exc)[:200]}", None))
        line.finish()
        dead = self._batch_dead(origin, batch, total, line.size, line.sha256) if batch.bad else None
        yield Normalized(events=batch.events, format=adapter.name, dead_letter=dead, skipped_entries=batch.skipped)

    def _entry(self, adapter: SourceFormat | None, index: int, entry: Any, batch: _Batch, as_text: bool = False) -> None:
        """One entry of a batch; ``adapter`` None: recognise the entry's own format;
        ``as_text``: the entries are records as JSON text (CloudWatch Logs messages)."""
        try:
            if as_text and isinstance(entry, str):
                entry = self._text_entry(entry)
            if not isinstance(entry, dict):
                raise InvalidRecord(f"expected an object, got {type(entry).__name__}")
            if adapter is None:
                adapter = detect_format(entry)
            elif not adapter.matches(entry):
                raise InvalidRecord(f"does not look like {adapter.name}")
            batch.formats[adapter.name] += 1
            mapped = self._map(adapter, entry)
            batch.events.extend(mapped)
            batch.event_formats.extend([adapter.name] * len(mapped))
        except UnsupportedEventType as exc:
            batch.skipped[f"{adapter.name if adapter else batch.format}:{_type_label(exc)}"] += 1
        except InvalidRecord as exc:
            batch.bad.append((index, exc.reason.removeprefix(f"{adapter.name}: ") if adapter else exc.reason, entry))

    def _text_entry(self, text: str) -> Any:
        """A record carried as text: parsed with the limits of an input line."""
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > self.config.max_line_bytes:
            raise InvalidRecord(f"message of {len(data)} bytes exceeds max_line_bytes")
        try:
            return parse_line(data, self.config.max_depth, self.repairs)
        except NotJSON as exc:
            raw = parse_text_record(data, self.forced.name if self.forced else None)  # Keycloak's log text
            if raw is None:
                raise InvalidRecord(f"message is {exc.reason}") from None
            return raw

    def _batch_dead(self, origin: str, batch: _Batch, total: int, size: int, sha256: str) -> dict[str, Any]:
        bad = batch.bad
        first, why, _ = bad[0]
        indices = ", ".join(str(index) for index, _, _ in bad[:MAX_BAD_ENTRIES])
        if len(bad) > MAX_BAD_ENTRIES:
            indices += ", …"
        reason = f"{batch.format}: {batch.key}[{first}]: {why} ({len(bad)} of {total} records invalid: {indices})"
        record = self._letter(origin, reason[:1000], batch.format, size, sha256)
        record["records"] = [
            {"index": index, "reason": why, **(self._quote(entry) if entry is not None else {})}
            for index, why, entry in bad[:MAX_BAD_ENTRIES]
        ]
        return record

    def _take_handle(self, sealed: object) -> None:
        """A revocation handle rides along with the record (sealed to tokenwatch's key): it is
        taken out before the record goes anywhere, opened by ``accept_handle`` and kept in
        memory only. Without a key configured it is dropped, never stored."""
        if self.accept_handle is None:
            self.handle_counts["ignored"] += 1
            return
        try:
            if not isinstance(sealed, str):
                raise ValueError("a revocation handle must be a string")
            self.accept_handle(sealed)
            self.handle_counts["accepted"] += 1
        except ValueError:  # HandleError: counted, never logged with its content
            self.handle_counts["refused"] += 1

    def _dead(
        self, line: bytes, origin: str, reason: str, fmt: str | None, raw: Any = None
    ) -> Normalized:
        record = self._letter(origin, reason, fmt, len(line), hashlib.sha256(line).hexdigest())
        if raw is not None and len(line) <= self.config.dead_letter_raw_bytes:
            record.update(self._quote(raw))
        else:
            keep = self.config.dead_letter_raw_bytes
            record["raw_text"] = redact_text(line[:keep].decode("utf-8", "replace"), self.hash_token)
            record["truncated"] = len(line) > keep
        return Normalized(format=fmt, dead_letter=record)

    def _letter(self, origin: str, reason: str, fmt: str | None, size: int, sha256: str) -> dict[str, Any]:
        return {
            "reason": redact_text(reason, self.hash_token),  # a reason may quote the record
            "format": fmt,
            "origin": origin,
            "ingested_at": self.clock().isoformat(),
            "raw_bytes": size,
            "raw_sha256": sha256,
        }

    def _quote(self, raw: Any) -> dict[str, Any]:
        """A parsed record for a dead letter, credentials replaced by their hashes; one that
        serialises larger than ``dead_letter_raw_bytes`` is kept as cut text instead."""
        redacted = redact_value(raw, self.hash_token)
        try:
            size = len(orjson.dumps(redacted))
        except (TypeError, orjson.JSONEncodeError):
            return {"raw_text": "[unserialisable record]", "truncated": True}
        if size <= self.config.dead_letter_raw_bytes:
            return {"raw": redacted}
        text = orjson.dumps(redacted)[: self.config.dead_letter_raw_bytes].decode("utf-8", "replace")
        return {"raw_text": text, "truncated": True}


def _type_label(exc: UnsupportedEventType) -> str:
    """An empty type label would read as "nothing skipped"; name it."""
    return str(exc.event_type)[:256] if exc.event_type else "(no event type)"


@dataclass
class _Batch:
    """What the entries of one batch record gave so far."""

    format: str
    events: list[CanonicalEvent] = field(default_factory=list)
    bad: list[tuple[int, str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    key: str = "Records"  # the envelope's list, as its dead letter names entries
    formats: Counter[str] = field(default_factory=Counter)
    event_formats: list[str] = field(default_factory=list)  # one per event, in order


def _opens_log_file(head: bytes) -> bool:
    """A CloudTrail log file as written to S3 starts ``{"Records":[``."""
    start = head[:64].lstrip()
    return start.startswith(b"{") and b'"Records"' in start


def envelope_entries(raw: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The records of a transport's envelope, with the key that holds them: Azure
    diagnostic settings streamed to Event Hubs (``{"records": [...]}``, one key), a
    Kubernetes audit webhook's ``EventList`` (``items``), an Amazon EventBridge event
    (``detail``) and a CloudWatch Logs subscription payload (``logEvents[].message``,
    JSON text). None for anything else."""
    records = raw.get("records")
    if isinstance(records, list) and len(raw) == 1:
        return "records", records
    if "detail-type" in raw and "source" in raw and isinstance(raw.get("detail"), dict):
        return "detail", [raw["detail"]]  # an Amazon EventBridge event (CloudTrail API calls, Okta Log Streaming)
    if raw.get("messageType") == "DATA_MESSAGE" and isinstance(raw.get("logEvents"), list):
        # A CloudWatch Logs subscription's payload (decompressed): each log event's message is one record.
        return "logEvents", [e.get("message") if isinstance(e, dict) else e for e in raw["logEvents"]]
    if raw.get("kind") == "EventList" and isinstance(raw.get("items"), list) and str(
            raw.get("apiVersion", "")).startswith("audit.k8s.io/"):
        return "items", raw["items"]
    return None


def log_file_entries(adapter: SourceFormat, raw: dict[str, Any]) -> list[Any] | None:
    """The records of a batch envelope (a CloudTrail log file ``{"Records": [...]}``), each
    mapped on its own; None for a single record."""
    if adapter.name == "cloudtrail" and "eventSource" not in raw and isinstance(raw.get("Records"), list):
        records: list[Any] = raw["Records"]  # checked to be a list above
        return records
    return None
