"""Dead letters of the service's own failures: which record a failure belongs to, and
what a dead letter of it may carry.

A record that raises anywhere (parse, adapter, detector, alert emission) is
dead-lettered with its topic, partition and offset and the run goes on. A
detector judges an event after the reorder buffer releases it, so the record
being submitted is not always the one that failed: ``LastEvent`` notes the event
being judged. The Kafka dead-letter topic carries the redacted record unless an
operator keeps the originals (``service.dead_letter_keep_original``), and never a
revocation handle.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson
from kafka import TopicPartition

from detectors.base import Detector, Finding
from detectors.state import StateStore
from pipeline.ingest.normalize import HANDLE_FIELD
from pipeline.service.partitions import PartitionState
from schemas.events import CanonicalEvent
from schemas.redaction import TokenHasher, redact_text


class LastEvent(Detector):
    """First in each partition's detector list: notes the event the engine is judging, so a
    failure can be traced to that event's record, which may be earlier than the one being
    submitted (events wait in the reorder buffer). It judges nothing and keeps no state."""

    name = "tokenwatch.last_event"
    rules = ()

    def __init__(self) -> None:
        super().__init__()
        self.event_id: str | None = None

    def reset(self) -> None:
        """Before an engine call: no event judged yet."""
        self.event_id = None

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        self.event_id = event.event_id
        return []


def judged_event_tracer(state: PartitionState) -> LastEvent:
    """The partition's tracer, put in front of its detectors the first time it is asked for."""
    detectors = state.engine.detectors
    if detectors and isinstance(detectors[0], LastEvent):
        return detectors[0]
    tracer = LastEvent()
    detectors.insert(0, tracer)
    return tracer


def applied(state: PartitionState, event_id: str) -> bool:
    """The engine records each event id whose effect is in the state (hashed, changelogged)."""
    return state.engine.applied(event_id)


@dataclass
class SourceRecord:
    """Where an input record came from, and its bytes when still at hand (empty for an earlier
    record whose event failed after it was buffered: it is known by its offset only)."""

    tp: TopicPartition
    offset: int
    line: bytes = b""
    format: str = "unknown"

    @property
    def origin(self) -> str:
        return f"{self.tp.topic}:{self.tp.partition}:{self.offset}"

    def at(self, tp: TopicPartition, offset: int) -> bool:
        return self.tp == tp and self.offset == offset


def failure_dead_letter(record: SourceRecord, stage: str, reason: str, error: str | None, hash_token: TokenHasher,
                        keep_bytes: int) -> dict[str, Any]:
    """The dead letter of a record a stage could not handle: the stage, the reason (an exception
    type, never its text), the original's size and SHA-256 and its first ``keep_bytes`` as
    redacted text."""
    doc: dict[str, Any] = {"reason": reason, "stage": stage, "error": error, "format": record.format,
                           "origin": record.origin, "ingested_at": datetime.now(timezone.utc).isoformat()}
    line = record.line
    if not line:
        return doc
    doc.update(raw_bytes=len(line), raw_sha256=hashlib.sha256(line).hexdigest(), truncated=len(line) > keep_bytes)
    try:
        doc["raw_text"] = redact_text(line[:keep_bytes].decode("utf-8", "replace"), hash_token)
    except Exception:  # noqa: BLE001 -- the facts above suffice; a dead letter must not fail
        doc["raw_text_omitted"] = True
    return doc


def _escapable(name: str) -> re.Pattern[bytes]:
    """``name`` as a JSON string may spell any character as ``\\uXXXX``: match every spelling."""
    parts = (b"(?:%s|\\\\u00%02x)" % (re.escape(c.encode()), ord(c)) for c in name)
    return re.compile(b"".join(parts), re.IGNORECASE)


_HANDLE_KEY = _escapable(HANDLE_FIELD)


def original_without_handle(line: bytes) -> bytes | None:
    """The record's bytes as produced when they hold no revocation handle; re-encoded without
    its top-level handle when they do; None when a handle cannot be cut out (the record does
    not parse, or the name appears elsewhere in it): the dead letter then stays redacted."""
    if not _HANDLE_KEY.search(line):
        return line
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(record, dict):
        return None
    record.pop(HANDLE_FIELD, None)
    try:
        stripped = orjson.dumps(record)
    except TypeError:
        return None
    return None if _HANDLE_KEY.search(stripped) else stripped
