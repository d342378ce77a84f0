"""One checkpoint: flush sinks → write changed state to the changelog → commit offsets.

The order is what makes a crash safe: offsets are committed only once the
alerts and dead letters of the records before them are written and the state
they built is in the changelog. A sink that cannot take writes raises
``SinkUnavailable`` out of ``flush_sinks``; nothing after it runs, so no offset
passes unflushed data (the caller pauses consumption and retries).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from detectors.state_codec import dirty_records
from pipeline.metrics import ServiceMetrics
from pipeline.service.partitions import PartitionState
from pipeline.sinks.base import Sink

log = logging.getLogger("tokenwatch.checkpoint")


def stage_open_alerts(states: Iterable[PartitionState], sinks: Iterable[Sink]) -> int:
    """Add every still-open alert as an update (same id as its final version)."""
    sinks = list(sinks)
    count = 0
    for state in states:
        for alert in state.open_alerts():
            document = alert.to_json_dict()
            for sink in sinks:
                sink.add("alert", alert.alert.id, document)
            count += 1
    return count


def flush_sinks(sinks: Iterable[Sink]) -> int:
    """Flush every sink; raises ``SinkUnavailable`` from the first that cannot write."""
    written = 0
    for sink in sinks:
        result = sink.flush()
        written += result.written
        for rejected in result.rejected:  # refused for itself (mapping conflict): logged, not retried
            log.error("document rejected by sink", extra={"sink": sink.name, "doc_kind": rejected.doc_kind,
                                                           "doc_id": rejected.doc_id, "reason": rejected.reason})
    return written


def write_changelog(producer: KafkaProducer, topic: str, states: Iterable[PartitionState],
                    timeout_s: float = 30.0) -> int:
    """Send each partition's changed keys to changelog partition = its input partition; wait for acks."""
    futures = []
    for state in states:
        for key, value in dirty_records(state.store):
            futures.append(producer.send(topic, key=key, value=value, partition=state.partition))
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
) -> None:
    """The full checkpoint of ``states`` (all assigned, or the ones being revoked)."""
    if not states and not any(sink.pending for sink in sinks):
        return  # nothing assigned yet (joining the group) and nothing buffered
    started = time.perf_counter()
    stage_open_alerts(states, sinks)
    written = flush_sinks(sinks)
    changed = write_changelog(producer, changelog_topic, states)
    offsets: dict[TopicPartition, int] = {}
    for state in states:
        offsets.update(state.commit_offsets())
    commit(consumer, offsets)
    elapsed = time.perf_counter() - started
    if metrics is not None:
        metrics.checkpoint_seconds.observe(elapsed)
        metrics.tracked_tokens.set(sum(len(s.store.tokens) for s in states))
    log.info("checkpoint", extra={"documents": written, "state_records": changed, "partitions": len(states),
                                  "offsets": {f"{tp.topic}[{tp.partition}]": o for tp, o in offsets.items()}.__repr__(),
                                  "seconds": round(elapsed, 4)})
