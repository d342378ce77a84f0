"""Raw lines -> canonical events, or a dead letter with the reason.

This is the boundary where untrusted bytes meet the schemas. Whatever a line
holds (garbage, truncated JSON, a huge string, wrong types, a timestamp far in
the future, a known format's unknown event type), the result is events, a
counted skip, or a dead letter: never an exception that stops the run.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from schemas.events import CanonicalEvent
from schemas.redaction import TokenHasher, redact_text, redact_value
from schemas.sources import (
    FORMATS,
    AdapterContext,
    InvalidRecord,
    PartialRecord,
    UnsupportedEventType,
    detect_format,
)

Clock = Callable[[], datetime]


HANDLE_FIELD = "tokenwatch_handle"
"""Top-level field of any input record that may carry a sealed revocation handle
(``pipeline.response.handles``): removed before the record is parsed or kept."""


class InputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_line_bytes: int = Field(default=1_048_576, gt=0, description="Longer lines are dead-lettered")
    max_future_skew_s: float = Field(
        default=900.0, ge=0, description="Events dated further ahead of the wall clock are dead-lettered"
    )
    dead_letter_raw_bytes: int = Field(
        default=65_536, gt=0, description="Raw bytes kept in a dead letter (the rest is hashed)"
    )


@dataclass
class Normalized:
    """Outcome of one line: events, or a skip, or a dead letter (or, for a batch
    record with some bad entries, events and a dead letter)."""

    events: list[CanonicalEvent] = field(default_factory=list)
    format: str | None = None
    skipped_type: str | None = None
    dead_letter: dict[str, Any] | None = None


class Normalizer:
    def __init__(
        self,
        hash_token: TokenHasher,
        config: InputConfig | None = None,
        forced_format: str | None = None,
        clock: Clock | None = None,
        accept_handle: Callable[[str], object] | None = None,
    ) -> None:
        self.accept_handle = accept_handle
        self.handle_counts: Counter[str] = Counter()
        if forced_format not in (None, "auto") and forced_format not in FORMATS:
            known = ", ".join(sorted(FORMATS))
            raise ValueError(f"unknown format {forced_format!r}; known: {known}, auto")
        self.config = config or InputConfig()
        self.ctx = AdapterContext(hash_token=hash_token)
        self.hash_token = hash_token
        self.forced = FORMATS[forced_format] if forced_format not in (None, "auto") else None
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    def normalize(self, line: bytes, origin: str) -> Normalized:
        """Map one input line (without newline) from ``origin`` ("file:line")."""
        if len(line) > self.config.max_line_bytes:
            return self._dead(line, origin, f"line of {len(line)} bytes exceeds max_line_bytes", None)
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            return self._dead(line, origin, f"not JSON: {exc.args[0][:120]}", None)
        if not isinstance(raw, dict):
            return self._dead(line, origin, f"not a JSON object but {type(raw).__name__}", None)
        if HANDLE_FIELD in raw:
            self._take_handle(raw.pop(HANDLE_FIELD))
        adapter = self.forced
        partial: PartialRecord | None = None
        try:
            if adapter is None:
                adapter = detect_format(raw)
            elif not adapter.matches(raw):
                raise InvalidRecord(f"does not look like {adapter.name}")
            events = adapter.to_events(raw, self.ctx)
        except PartialRecord as exc:
            partial, events = exc, exc.events
        except UnsupportedEventType as exc:
            # An empty type label would read as "nothing skipped"; name it.
            label = str(exc.event_type) if exc.event_type else "(no event type)"
            return Normalized(format=adapter.name if adapter else None, skipped_type=label)
        except InvalidRecord as exc:
            return self._dead(line, origin, exc.reason, adapter.name if adapter else None, raw)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            name = adapter.name if adapter else None
            return self._dead(line, origin, f"{name or 'adapter'} failed: {type(exc).__name__}: {exc}"[:300], name, raw)
        horizon = self.clock().timestamp() + self.config.max_future_skew_s
        for event in events:
            if event.epoch > horizon:
                reason = f"event time {event.time.isoformat()} is in the future (beyond max_future_skew_s)"
                return self._dead(line, origin, reason, adapter.name, raw)
        if partial is not None:  # keep the good entries, dead-letter the line for the bad ones
            dead = self._dead(line, origin, partial.reason, adapter.name, raw).dead_letter
            return Normalized(events=events, format=adapter.name, dead_letter=dead)
        return Normalized(events=events, format=adapter.name)

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
        keep = self.config.dead_letter_raw_bytes
        record: dict[str, Any] = {
            "reason": reason,
            "format": fmt,
            "origin": origin,
            "ingested_at": self.clock().isoformat(),
            "raw_bytes": len(line),
            "raw_sha256": hashlib.sha256(line).hexdigest(),
        }
        if raw is not None and len(line) <= keep:
            record["raw"] = redact_value(raw, self.hash_token)
        else:
            text = line[:keep].decode("utf-8", "replace")
            record["raw_text"] = redact_text(text, self.hash_token)
            record["truncated"] = len(line) > keep
        return Normalized(format=fmt, dead_letter=record)
