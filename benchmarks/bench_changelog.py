"""Changelog records per input record (issue 17): what `tokenwatch run` writes to its state
changelog for the benchmark traffic, by record kind, with a checkpoint every ``--every``
input records (the service checkpoints every 5 s: 5,000 records at 1,000 records/s).

Prints figures, asserts nothing (not part of the test suite). Runs the service's own
partition state and checkpoint code with a producer that counts what it is sent, so no
broker is needed and the figure is the same on every machine. Target: at most 0.3.

Run: ``python benchmarks/bench_changelog.py`` (``--events 60000 --every 5000`` by default).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kafka import TopicPartition  # noqa: E402 -- run as a script: the repository root goes on sys.path first

from benchmarks.traffic import generate  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.config import Settings  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.normalize import Normalizer  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.runtime.build import build_enricher  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.service.checkpoint import checkpoint  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.service.partitions import new_partition_state  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.sinks.base import MemorySink  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from schemas.redaction import make_token_hasher  # noqa: E402 -- run as a script: the repository root goes on sys.path first


class _Consumer:
    def commit(self, offsets: Any) -> None:
        return None


class _Producer:
    """Counts changelog records by kind: the key's prefix, and the table for detector rows."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.bytes = 0

    def send(self, _topic: str, key: bytes, value: bytes | None, **__: Any) -> Any:
        prefix, _, rest = key.partition(b":")
        kind = prefix.decode() if prefix != b"d" else "d:" + "/".join(p.decode() for p in rest.split(b"\x1f")[:2])
        self.kinds[kind + (" (tombstone)" if value is None else "")] += 1
        self.bytes += len(key) + len(value or b"")
        return self

    def get(self, timeout: float = 0) -> None:
        return None

    def flush(self, timeout: float = 0) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--every", type=int, default=5_000, help="input records between checkpoints")
    args = parser.parse_args()

    settings = Settings()
    state = new_partition_state(0, settings, build_enricher(settings))
    normalizer = Normalizer(make_token_hasher(b"benchmark-key-0123456789abcdef"))
    consumer, producer, sink = _Consumer(), _Producer(), MemorySink(name="memory")
    tp = TopicPartition("events", 0)
    records = 0
    for offset, line in enumerate(generate(args.events)):
        records += 1
        for event in normalizer.normalize(line, f"bench:{offset}").events:
            state.submitted(event.event_id, tp, offset)
            state.engine.submit(event)
        state.next_offsets[tp] = offset + 1
        if records % args.every == 0:
            checkpoint(consumer, producer, "changelog", [state], [sink])
            sink.documents.clear()
    checkpoint(consumer, producer, "changelog", [state], [sink])
    total = sum(producer.kinds.values())
    print(f"{records:,} input records, a checkpoint every {args.every:,}: {total:,} changelog records, "
          f"{total / records:.2f} per input record, {producer.bytes / 1e6:.1f} MB")
    for kind, count in producer.kinds.most_common():
        print(f"  {kind:45s} {count:8,}  {count / records:.3f} per input record")


if __name__ == "__main__":
    main()
