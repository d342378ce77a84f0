"""Which `detect --workers` worker judges a line: the partition the message-key rule gives it.

Worker ``i`` holds what partition ``i`` of an N-partition input topic would hold (Kafka's
murmur2 partitioner over the key of ``pipeline.kafka.keys``), so `detect --workers N` and a
`run` over such a topic compare the same events and split a principal alike. The parent
must stay cheap, or it bounds the speed-up: a gateway or canonical line is keyed from its
parsed record (``quick_key``: a JSON parse and a few lookups); any other line is mapped here
once only to be keyed (``line_key``'s way, with this run's settings, clock and trust rules),
and mapped again by its worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from pipeline.ingest.normalize import Normalizer
from pipeline.ingest.trust import TrustRules
from pipeline.kafka.keys import content_key, event_key, is_global, quick_key
from schemas.events import CanonicalEvent

MAX_CACHED_KEYS = 100_000


class Router:
    """The Kafka partition a message key maps to (murmur2), memoised per key."""

    def __init__(self, workers: int) -> None:
        # Kafka's own partitioner, loaded here: `detect` with one process never needs the client.
        from kafka.partitioner.default import murmur2

        self._murmur2 = murmur2
        self.workers = workers
        self._cache: dict[bytes, int] = {}

    def owner_of(self, key: bytes) -> int:
        index = self._cache.get(key)
        if index is None:
            index = (self._murmur2(key) & 0x7FFFFFFF) % self.workers
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[key] = index
        return index

    def owner(self, events: Sequence[CanonicalEvent]) -> int:
        """The owner of a line that mapped to ``events`` (0 for none: it reaches no engine)."""
        found = event_key(events)
        return 0 if found is None else self.owner_of(found[0])


class LineRouter:
    """A raw line's owner, and whether every worker must see it too (it may hold a revocation)."""

    def __init__(self, workers: int, normalizer: Normalizer, forced_format: str | None = None,
                 trust: TrustRules | None = None) -> None:
        self.router = Router(workers)
        self.normalizer = normalizer  # keys lines no quick reader is sure of; its counts are discarded
        self.trust = trust  # the run's [trust]: events a worker will refuse do not take the key
        self.format = forced_format or "auto"
        self.max_line_bytes = normalizer.config.max_line_bytes
        self.mapped_lines = 0  # lines keyed by mapping them here (the parent's slow path)

    def route(self, line: bytes) -> tuple[int, bool]:
        if len(line) <= self.max_line_bytes:
            try:
                found = quick_key(orjson.loads(line), self.format)
            except orjson.JSONDecodeError:
                found = None
            if found is not None:
                return self.router.owner_of(found[0]), found[1]
        return self._mapped(line)

    def _mapped(self, line: bytes) -> tuple[int, bool]:
        self.mapped_lines += 1
        try:
            result = self.normalizer.normalize(line, "route")
        except Exception:  # noqa: BLE001 -- a line is always routed; its worker writes why it failed
            return self.router.owner_of(content_key(line)), False
        kept = result.events if self.trust is None else self.trust.split_line(result, None)[0]
        found = event_key(kept)
        owner = self.router.owner_of(found[0] if found is not None else content_key(line))
        return owner, any(is_global(event) for event in result.events)
