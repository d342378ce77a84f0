"""Kafka sink: alert documents to the alerts topic, dead letters to the dead-letter topic.

Alerts are JSON keyed by alert id, so a compacted alerts topic keeps the latest
version of each alert (an alert re-emitted at a later checkpoint replaces the
earlier one). A dead letter's value is the redacted dead-letter document (JSON:
reason, the record with its credentials replaced by keyed hashes, the
original's SHA-256 and size, source topic/partition/offset); its headers
repeat the reason, format, source, SHA-256 and size, and ``tokenwatch.value``
says what the value is. Only when the caller hands over the original bytes
(``add(..., raw=...)``: the service does so when the operator sets
``service.dead_letter_keep_original``, for a topic protected like the input)
is the value those bytes, so a fixed record can be re-produced as is. Events
and actions have no topic here: they are ignored, as the sink contract allows.

Like every sink it buffers in ``add`` and writes in ``flush``; a record the
broker did not acknowledge stays buffered and ``flush`` raises
:class:`SinkUnavailable` (backpressure), never drops it. A document that
cannot be encoded never stops a flush: a dead letter is cut to its facts
(:func:`encodable_dead_letter`), an alert is handed back as rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.kafka.config import KafkaConfig, producer_kwargs
from pipeline.sinks.base import (
    SOURCE_FIELD,
    DocKind,
    FlushResult,
    Rejected,
    SinkUnavailable,
    Unencodable,
    encodable_dead_letter,
    encode,
)

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["SOURCE_FIELD", "KafkaSink"]

Headers = list[tuple[str, bytes]]


class KafkaSink:
    """Writes ``alert`` and ``dead_letter`` documents; other kinds are ignored (no topic for them)."""

    name = "kafka"
    kinds: frozenset[DocKind] = frozenset({"alert", "dead_letter"})
    # Also flushed between checkpoints, as alerts open or change (a produce and its acks:
    # milliseconds): the alerts topic is where an alert is first seen.
    flush_early = True

    def __init__(
        self, config: KafkaConfig, *, producer: KafkaProducer | None = None, flush_timeout_s: float = 30.0
    ) -> None:
        self.config = config
        self._own = producer is None
        self.producer = producer if producer is not None else KafkaProducer(**producer_kwargs(config))
        self.flush_timeout_s = flush_timeout_s
        self._buffer: dict[tuple[str, str], tuple[str, bytes, bytes, Headers]] = {}
        self._rejected: list[Rejected] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSink:
        return cls(settings.kafka)

    def start(self) -> None:
        """Topics are created by ``ensure_topics`` at service start; nothing else to prepare."""

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> None:
        topics = self.config.topics
        if doc_kind == "alert":
            try:
                value = encode(document)
            except Unencodable as exc:
                self._rejected.append(Rejected(doc_kind, doc_id, document, f"not encodable: {exc}"))
                return
            self._buffer[(doc_kind, doc_id)] = (topics.alerts, doc_id.encode(), value, [])
        elif doc_kind == "dead_letter":
            self._buffer[(doc_kind, doc_id)] = (topics.dead_letter, doc_id.encode(), *_dead_letter(document, raw))

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> FlushResult:
        rejected, self._rejected = tuple(self._rejected), []
        if not self._buffer:
            return FlushResult(rejected=rejected)
        futures = []
        reason = ""
        for key, (topic, rkey, value, headers) in list(self._buffer.items()):
            try:
                futures.append((key, self.producer.send(topic, key=rkey, value=value, headers=headers)))
            except KafkaError as exc:  # buffer full, record too large, metadata timeout
                reason = f"{type(exc).__name__}: {exc}"
                break
        try:
            self.producer.flush(timeout=self.flush_timeout_s)
        except KafkaError as exc:
            reason = f"{type(exc).__name__}: {exc}"
        written = 0
        for key, future in futures:
            if future.is_done and future.succeeded():
                del self._buffer[key]
                written += 1
            elif future.is_done and not reason:
                reason = f"{type(future.exception).__name__}: {future.exception}"
        if self._buffer:
            self._rejected.extend(rejected)  # handed back by the flush that succeeds
            raise SinkUnavailable(self.name, reason or "records not acknowledged", self.pending)
        return FlushResult(written=written, rejected=rejected)

    def close(self) -> None:
        if self._own:
            self.producer.close(timeout=5)


def _dead_letter(document: Mapping[str, Any], raw: bytes | None) -> tuple[bytes, Headers]:
    """(value, headers) of one dead letter: the redacted document as JSON, or the original
    bytes when the caller handed them over; the facts as headers either way."""
    doc = dict(document)
    try:
        value = encode(doc)
    except Unencodable as exc:
        doc = encodable_dead_letter(doc, str(exc))
        value = encode(doc)
    kind = b"redacted"
    if isinstance(raw, (bytes, bytearray)):
        value, kind = bytes(raw), b"original"
    return value, [*_headers(doc), ("tokenwatch.value", kind)]


def _headers(doc: Mapping[str, Any]) -> Headers:
    """Reason, format, SHA-256, size and source offset of a dead letter, as record headers."""
    headers = [("tokenwatch.reason", _header(doc.get("reason", "")))]
    for name in ("format", "raw_sha256", "raw_bytes"):
        if doc.get(name) is not None:
            headers.append((f"tokenwatch.{name}", _header(doc[name])))
    source = doc.get(SOURCE_FIELD)
    for name in ("topic", "partition", "offset"):
        if isinstance(source, Mapping) and name in source:
            headers.append((f"tokenwatch.source.{name}", _header(source[name])))
    return headers


def _header(value: object) -> bytes:
    return str(value)[:1000].encode("utf-8", "replace")
