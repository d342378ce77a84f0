"""Global revocation state: every instance learns every revocation.

Detection state is partitioned, but a revocation must reach wherever the
revoked token is used next, and that can be another partition (a gateway
that names only the token, an IdP that names only the user). So each
instance publishes the revocation-like events it reads from its own input
partitions (``revoked``, ``session_ended``, ``principal_disabled``; successful
ones only — a failed revocation revoked nothing) to the revocations topic,
and every instance reads that whole topic without a consumer group and feeds
each event to all the partition engines it owns. The engine drops the copy
that comes back to the partition it came from (same event id). Responders
publish the revocations they carry out to the same topic, so post-revocation
detection arms on every instance at once.

The topic holds canonical event JSON (token ids already keyed hashes; no raw
token ever). Records are kept in memory for ``retention_s`` of event time and
replayed into a partition restored on this instance: the changelog of the
previous owner may predate a revocation it had not checkpointed yet. A replay
of a revocation the state already holds changes nothing (state keeps the
earliest) and re-raises, under the same alert id, only what it raised before.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterable

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from pydantic import ValidationError

from pipeline.kafka.config import KafkaConfig, consumer_kwargs
from pipeline.kafka.keys import is_global
from schemas.events import CanonicalEvent

log = logging.getLogger("tokenwatch.revocations")



class RevocationFeed:
    """Publishes this instance's revocations and reads every instance's."""

    def __init__(self, config: KafkaConfig, producer: KafkaProducer, retention_s: float) -> None:
        self.topic = config.topics.revocations
        self.producer = producer
        self.retention_s = retention_s
        self.consumer = KafkaConsumer(**consumer_kwargs(config, group=False))
        self.known: OrderedDict[str, CanonicalEvent] = OrderedDict()
        self.rejected = 0
        self._newest = float("-inf")

    def start(self, timeout_s: float = 60.0, idle_polls: int = 2) -> int:
        """Assign every partition of the topic from the beginning and read what is there
        (until fetches come back empty at the end), so the first partition restored on
        this instance already gets every revocation still retained. Returns the count."""
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        deadline = time.monotonic() + timeout_s
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.2)  # created moments ago; metadata not there yet
            partitions = self.consumer.partitions_for_topic(self.topic) or set()
        if not partitions:
            raise RuntimeError(f"revocations topic {self.topic!r} has no partitions (was it created?)")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        self.consumer.assign(tps)
        self.consumer.seek_to_beginning(*tps)
        empty = 0
        while empty < idle_polls and time.monotonic() < deadline:
            fresh = self.poll(timeout_ms=200)
            empty = 0 if fresh else empty + 1
        return len(self.known)

    def publish(self, event: CanonicalEvent) -> None:
        """Send ``event`` to every instance (asynchronously; the checkpoint flushes the producer
        before it commits, so a revocation read from input is on the topic before its offset
        is committed)."""
        self.producer.send(self.topic, key=event.event_id.encode(), value=event.model_dump_json().encode())

    def poll(self, timeout_ms: int = 0) -> list[CanonicalEvent]:
        """Revocations published since the last poll, by any instance (this one included)."""
        fresh: list[CanonicalEvent] = []
        for records in self.consumer.poll(timeout_ms=timeout_ms).values():
            for record in records:
                event = self._parse(record.value, record.offset)
                if event is not None and event.event_id not in self.known:
                    self.known[event.event_id] = event
                    fresh.append(event)
                    self._newest = max(self._newest, event.epoch)
        if fresh:
            self._forget_old()
        return fresh

    def retained(self) -> Iterable[CanonicalEvent]:
        """Every revocation still inside the retention, oldest first as read."""
        return list(self.known.values())

    def close(self) -> None:
        self.consumer.close()

    def _parse(self, value: bytes | None, offset: int) -> CanonicalEvent | None:
        try:
            event = CanonicalEvent.model_validate_json(value or b"")
        except ValidationError as exc:
            # Written only by tokenwatch; a bad record is a bug or a foreign producer: count, say so.
            self.rejected += 1
            log.error("unreadable revocation record skipped",
                      extra={"topic": self.topic, "offset": offset, "reason": str(exc.errors()[:1])})
            return None
        if not is_global(event):
            self.rejected += 1
            log.error("non-revocation event on the revocations topic skipped",
                      extra={"topic": self.topic, "offset": offset, "kind": event.kind.value})
            return None
        return event

    def _forget_old(self) -> None:
        horizon = self._newest - self.retention_s
        stale = [key for key, event in self.known.items() if event.epoch < horizon]
        for key in stale:
            del self.known[key]
