"""One checkpoint: flush sinks → write changed state to the changelog → commit offsets.

The order is what makes a crash safe: offsets are committed only once the
alerts and dead letters of the records before them are written and the state
they built is in the changelog. A sink that cannot take writes raises
``SinkUnavailable`` out of ``flush_sinks``; nothing after it runs, so no offset
passes unflushed data (the caller pauses consumption and retries). An alert
that cannot even be serialized becomes a dead letter instead of stopping the
checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime, timezone
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from detectors.state_codec import dirty_records
from pipeline.metrics import ServiceMetrics
from pipeline.service.partitions import ORIGIN_HEADER, PartitionState
from pipeline.sinks.base import RAW_FIELD, Rejected, Sink, Unencodable, encode
from schemas.alerts import Alert

log = logging.getLogger("tokenwatch.checkpoint")


def stage_open_alerts(
    states: Iterable[PartitionState], sinks: Iterable[Sink], on_staged: Callable[[Alert], None] | None = None,
) -> int:
    """Add every still-open alert that changed since the last checkpoint as an update (same id
    as its final version); an unchanged one is not written again. ``on_staged`` hears of each
    one staged (the service counts alerts by what reaches the sinks)."""
    sinks = list(sinks)
    count = 0
    for state in states:
        still_open: dict[str, bytes] = {}
        for alert in state.open_alerts():
            digest = alert_digest(alert)
            still_open[alert.alert.id] = digest
            if state.staged.get(alert.alert.id) != digest and stage_alert(alert, sinks) is not None:
                count += 1
                if on_staged is not None:
                    on_staged(alert)
        state.staged = still_open
    return count


def alert_digest(alert: Alert) -> bytes:
    """What an alert document is now, to tell whether it changed since it was last written."""
    try:
        return hashlib.blake2b(alert.model_dump_json().encode(), digest_size=16).digest()
    except Exception:  # noqa: BLE001 -- stage_alert reports an unserializable alert; always stage it
        return b""


def stage_alert(alert: Alert, sinks: Iterable[Sink]) -> dict[str, Any] | None:
    """Add one alert to every sink; returns its document. An alert that cannot be serialized
    is dead-lettered with the exception type (its text may quote event content) and None is
    returned: one broken alert never stops the loop or a checkpoint."""
    sinks = list(sinks)
    try:
        document = alert.to_json_dict()
    except Exception as exc:  # noqa: BLE001 -- any failure of one alert's content, named by type
        log.error("alert not serializable", extra={"alert_id": alert.alert.id, "error": type(exc).__name__})
        dead = {"reason": f"alert {alert.alert.id} could not be serialized: {type(exc).__name__}",
                "stage": "alert", "error": type(exc).__name__, "format": "tokenwatch",
                "origin": f"alert:{alert.alert.id}", "ingested_at": datetime.now(timezone.utc).isoformat()}
        for sink in sinks:
            sink.add("dead_letter", f"alert-{alert.alert.id}", dead)
        return None
    for sink in sinks:
        sink.add("alert", alert.alert.id, document)
    return document


def flush_sinks(sinks: Iterable[Sink], rounds: int = 3) -> int:
    """Flush every sink; raises ``SinkUnavailable`` from the first that cannot write.

    A document a sink refuses for itself (a mapping conflict) is not retried
    there; it becomes a dead letter in the *other* sinks (with the refusal as the
    reason) and those are flushed again before this returns, so the checkpoint
    that follows never commits past a document that went nowhere."""
    sinks = list(sinks)
    written = 0
    for _ in range(rounds):
        rerouted = 0
        for sink in sinks:
            result = sink.flush()
            written += result.written
            for rejected in result.rejected:
                log.error("document rejected by sink", extra={"sink": sink.name, "doc_kind": rejected.doc_kind,
                                                               "doc_id": rejected.doc_id, "reason": rejected.reason})
                rerouted += dead_letter_rejected(rejected, sink.name, [s for s in sinks if s is not sink])
        if not rerouted:
            break
    return written


def dead_letter_rejected(rejected: Rejected, refused_by: str, others: Iterable[Sink]) -> int:
    """Hand a refused document to the other sinks as a dead letter; returns how many took it.

    The refused document rides along as ``raw`` unless it cannot be encoded (then the
    other sinks would refuse it too): its kind, id and the reason stay."""
    doc_id = f"rejected-{refused_by}-{rejected.doc_kind}-{rejected.doc_id}"
    document: dict[str, Any] = {
        "reason": f"{refused_by} refused {rejected.doc_kind} {rejected.doc_id}: {rejected.reason}",
        "format": "tokenwatch",
        "origin": f"sink:{refused_by}",
        "ingested_at": datetime.now(timezone.utc).isoformat(),
        "rejected": {"kind": rejected.doc_kind, "id": rejected.doc_id, "status": rejected.status},
    }
    raw = {k: v for k, v in rejected.document.items() if k != RAW_FIELD}  # original bytes stay out
    try:
        encode(raw)
        document["raw"] = raw
    except Unencodable:
        document["raw_omitted"] = True
    taken = 0
    for sink in others:
        sink.add("dead_letter", doc_id, document)
        taken += 1
    if not taken:
        log.error("refused document has no other sink to go to", extra={"doc_id": doc_id})
    return taken


def write_changelog(producer: KafkaProducer, topic: str, states: Iterable[PartitionState],
                    timeout_s: float = 30.0, origin: bytes | None = None) -> int:
    """Send each partition's changed keys to changelog partition = its input partition; wait for acks.
    ``origin`` (the input topics, ``partitions.changelog_origin``) rides on every record as the
    ``ORIGIN_HEADER`` header, so state is never restored onto another topic's partitions."""
    futures = []
    headers = [(ORIGIN_HEADER, origin)] if origin is not None else None
    for state in states:
        for key, value in dirty_records(state.store):
            futures.append(producer.send(topic, key=key, value=value, partition=state.partition, headers=headers))
    producer.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=0)  # raises the send error: the checkpoint fails, offsets stay
    return len(futures)


def commit(consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int]) -> None:
    if offsets:
        consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})


def checkpoint(
    consumer: KafkaConsumer,
    producer: KafkaProducer,
    changelog_topic: str,
    states: list[PartitionState],
    sinks: list[Sink],
    metrics: ServiceMetrics | None = None,
    origin: bytes | None = None,
    on_staged: Callable[[Alert], None] | None = None,
) -> None:
    """The full checkpoint of ``states`` (all assigned, or the ones being revoked)."""
    if not states and not any(sink.pending for sink in sinks):
        return  # nothing assigned yet (joining the group) and nothing buffered
    started = time.perf_counter()
    stage_open_alerts(states, sinks, on_staged)
    written = flush_sinks(sinks)
    changed = write_changelog(producer, changelog_topic, states, origin=origin)
    offsets: dict[TopicPartition, int] = {}
    moved: dict[TopicPartition, int] = {}
    for state in states:
        safe = state.commit_offsets()
        offsets.update(safe)
        moved.update({tp: off for tp, off in safe.items() if state.committed.get(tp) != off})
    commit(consumer, moved)  # an idle checkpoint commits nothing
    for state in states:
        state.committed.update({tp: off for tp, off in moved.items() if tp in state.next_offsets})
    elapsed = time.perf_counter() - started
    if metrics is not None:
        metrics.checkpoint_seconds.observe(elapsed)
        metrics.tracked_tokens.set(sum(len(s.store.tokens) for s in states))
    log.info("checkpoint", extra={"documents": written, "state_records": changed, "partitions": len(states),
                                  "offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()}.__repr__(),
                                  "seconds": round(elapsed, 4)})
