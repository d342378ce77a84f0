"""Where `detect` reads and writes: a file or the standard streams, and the dead-letter
file, created only when the first dead letter arrives (a clean run leaves none behind)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol


class Writer(Protocol):
    """What a detect run writes alerts and dead letters to: a file, a buffer, a ``LazyFile``."""

    def write(self, data: bytes, /) -> int: ...


class LazyFile:
    """The dead-letter file, opened for appending on its first write (a ``Writer``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: IO[bytes] | None = None

    def write(self, data: bytes) -> int:
        if self.handle is None:
            self.handle = open(self.path, "ab")
        return self.handle.write(data)

    def close(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()

    def __enter__(self) -> LazyFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@contextlib.contextmanager
def open_input(name: str) -> Iterator[IO[bytes]]:
    """``name``, or standard input for ``-``."""
    if name == "-":
        yield sys.stdin.buffer
        return
    with open(name, "rb", buffering=1 << 20) as handle:
        yield handle


@contextlib.contextmanager
def open_output(name: str) -> Iterator[IO[bytes]]:
    """``name`` (truncated), or standard output for ``-``."""
    if name == "-":
        yield sys.stdout.buffer
        sys.stdout.flush()
        return
    with open(name, "wb", buffering=1 << 16) as handle:
        yield handle
