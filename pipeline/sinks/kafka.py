"""Kafka sink: alert documents to the alerts topic, dead letters to the dead-letter topic.

Alerts are JSON keyed by alert id, so a compacted alerts topic keeps the latest
version of each alert (an alert re-emitted at a later checkpoint replaces the
earlier one). A dead letter's value is the *original bytes* of the rejected
record when the caller hands them over (``document["raw_original"]``, bytes),
with the reason, format and source topic/partition/offset as headers — so a
fixed record can be re-produced as is; otherwise the dead-letter record is
written as JSON. The dead-letter topic therefore holds what the input topic
held (possibly bearer tokens): give it the input topic's access controls.

Like every sink it buffers in ``add`` and writes in ``flush``; a record the
broker did not acknowledge stays buffered and ``flush`` raises
:class:`SinkUnavailable` (backpressure), never drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline.kafka.config import KafkaConfig, producer_kwargs
from pipeline.sinks.base import DocKind, FlushResult, SinkUnavailable

RAW_FIELD = "raw_original"
"""Key of the original record bytes in a dead-letter document (not sent to Elasticsearch)."""
SOURCE_FIELD = "source_record"
"""Key of ``{"topic", "partition", "offset"}`` of the rejected record in a dead-letter document."""


class KafkaSink:
    """Writes ``alert`` and ``dead_letter`` documents; other kinds are refused (no topic for them)."""

    name = "kafka"

    def __init__(
        self, config: KafkaConfig, *, producer: KafkaProducer | None = None, flush_timeout_s: float = 30.0
    ) -> None:
        self.config = config
        self._own = producer is None
        self.producer = producer if producer is not None else KafkaProducer(**producer_kwargs(config))
        self.flush_timeout_s = flush_timeout_s
        self._buffer: dict[tuple[str, str], tuple[str, bytes, bytes, list[tuple[str, bytes]]]] = {}

    def start(self) -> None:
        """Topics are created by ``ensure_topics`` at service start; nothing else to prepare."""

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any]) -> None:
        topics = self.config.topics
        if doc_kind == "alert":
            self._buffer[(doc_kind, doc_id)] = (topics.alerts, doc_id.encode(), orjson.dumps(dict(document)), [])
        elif doc_kind == "dead_letter":
            self._buffer[(doc_kind, doc_id)] = (topics.dead_letter, doc_id.encode(), *_dead_letter(document))
        else:
            raise ValueError(f"the kafka sink has no topic for {doc_kind!r} documents")

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> FlushResult:
        if not self._buffer:
            return FlushResult()
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
            raise SinkUnavailable(self.name, reason or "records not acknowledged", self.pending)
        return FlushResult(written=written)

    def close(self) -> None:
        if self._own:
            self.producer.close(timeout=5)


def _dead_letter(document: Mapping[str, Any]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of one dead letter: original bytes + reason/format/source as headers."""
    doc = dict(document)
    raw = doc.pop(RAW_FIELD, None)
    source = doc.get(SOURCE_FIELD) or {}
    headers = [("tokenwatch.reason", str(doc.get("reason", "")).encode())]
    if doc.get("format"):
        headers.append(("tokenwatch.format", str(doc["format"]).encode()))
    for name in ("topic", "partition", "offset"):
        if name in source:
            headers.append((f"tokenwatch.source.{name}", str(source[name]).encode()))
    value = bytes(raw) if isinstance(raw, (bytes, bytearray)) else orjson.dumps(doc)
    return value, headers
