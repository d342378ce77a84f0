"""Backfill order: several exported files merged into one stream by event time.

A history is usually exported per source (one file per format or per day), each
file in its own time order. Sent one file after another, a later file's events
arrive hours "late" for the service's watermark; merged by event time they
arrive as the sources produced them. The merge is a k-way merge over the files
(``heapq.merge``): one pending line per file is held, whatever the files' sizes.

A line's time is the earliest event time it maps to. A line that maps to no
event (garbage, a skipped type) has no time of its own and keeps its place
after the line before it in its file, so the service still dead-letters it
beside its neighbours.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.ingest.config import InputConfig
from pipeline.ingest.reading import LongLine
from pipeline.ingest.trust import TrustRules
from pipeline.kafka.keys import LineKey, line_key
from schemas.redaction import TokenHasher


@dataclass(frozen=True, slots=True)
class KeyedLine:
    """One input line with where it came from and its message key (``key`` is None for a
    blank line or one too long to hold)."""

    origin: str
    line: bytes | LongLine
    key: LineKey | None


def input_files(names: Iterable[str]) -> list[Path]:
    """The files named, a directory standing for its regular, non-hidden files in name
    order. Raises ``FileNotFoundError`` for a name that does not exist and ``ValueError``
    for a directory with no files, so a typo is never an empty backfill."""
    files: list[Path] = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            if not found:
                raise ValueError(f"{name}: directory has no files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise FileNotFoundError(f"{name}: no such file or directory")
    return files


def keyed_lines(
    lines: Iterable[bytes | LongLine], origin: str, hash_token: TokenHasher, format_name: str = "auto",
    config: InputConfig | None = None, trust: TrustRules | None = None, topic: str | None = None,
) -> Iterator[KeyedLine]:
    """Each line of one input, keyed as the service will map it (``line_key``: its ``[input]``,
    and its ``[trust]`` rules for ``topic``)."""
    for number, line in enumerate(lines, 1):
        where = f"{origin}:{number}"
        if isinstance(line, LongLine):
            yield KeyedLine(where, line, None)
            continue
        line = line.rstrip(b"\r\n")
        yield KeyedLine(where, line, line_key(line, hash_token, format_name, config, trust, topic) if line.strip() else None)


def merge_by_time(streams: list[Iterator[KeyedLine]]) -> Iterator[KeyedLine]:
    """One stream from several, each assumed in its own time order, ordered by event
    time; ties and timeless lines keep their input order (stream, then line)."""

    def timed(index: int, stream: Iterator[KeyedLine]) -> Iterator[tuple[float, int, int, KeyedLine]]:
        last = float("-inf")
        for position, item in enumerate(stream):
            epoch = item.key.epoch if item.key is not None else None
            if epoch is not None:
                last = max(last, epoch)  # a file slightly out of order does not reorder the merge
            yield last, index, position, item

    for *_, item in heapq.merge(*(timed(index, stream) for index, stream in enumerate(streams))):
        yield item
