"""Input lines with bounded memory: no line is read whole beyond the cap.

``for line in file`` reads a line whole, however long: one 1.2 GB line ends in
``MemoryError``. ``read_lines`` reads at most ``max_line_bytes`` of a line; a
longer one comes out as a ``LongLine`` whose rest is still in the stream, to be
read piece by piece (a CloudTrail log file, record by record) or skipped while
its size and SHA-256 are taken for the dead letter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import IO

CHUNK_BYTES = 1 << 20


class LongLine:
    """A line longer than the cap: ``head`` has been read, the rest is in the stream.

    Whoever takes it reads the rest through ``read`` (a file-like view that ends at the
    line's end) or leaves it to ``finish``; either way ``size`` and ``sha256`` cover the
    whole line once it is consumed."""

    def __init__(self, head: bytes, stream: IO[bytes]) -> None:
        self._done = head.endswith(b"\n")  # the whole line is in the head (it ends just past the cap)
        if self._done:
            head = head.rstrip(b"\r\n")
        self.head = head
        self._stream = stream
        self._pending = head
        self._digest = hashlib.sha256(head)
        self.size = len(head)

    def read(self, size: int = -1) -> bytes:
        """File-like: the line's bytes from the start (head included), never past its end."""
        if size == 0:  # readers probe the type of what read returns this way
            return b""
        if self._pending:
            take = len(self._pending) if size is None or size < 0 else size
            out, self._pending = self._pending[:take], self._pending[take:]
            return out
        if self._done:
            return b""
        chunk = self._stream.readline(CHUNK_BYTES if size is None or size < 0 else size)
        if not chunk or chunk.endswith(b"\n"):
            self._done = True
            chunk = chunk.rstrip(b"\r\n")
        self._digest.update(chunk)
        self.size += len(chunk)
        return chunk

    def finish(self) -> None:
        """Consume what is left of the line (hashing it), so the next line can be read."""
        self._pending = b""
        while self.read(CHUNK_BYTES):
            pass

    @property
    def sha256(self) -> str:
        """SHA-256 of the line without its newline, as for any other dead letter; call
        after ``finish``."""
        return self._digest.hexdigest()


def read_lines(stream: IO[bytes], max_line_bytes: int) -> Iterator[bytes | LongLine]:
    """Lines (with their newline) of at most ``max_line_bytes`` plus newline; longer ones
    as ``LongLine``, finished before the next line is read, whatever the consumer did."""
    while True:
        line = stream.readline(max_line_bytes + 2)  # the cap, plus a CR LF line ending
        if not line:
            return
        if len(line.rstrip(b"\r\n")) <= max_line_bytes and (line.endswith(b"\n") or len(line) <= max_line_bytes):
            yield line
            continue
        long_line = LongLine(line, stream)
        yield long_line
        long_line.finish()
