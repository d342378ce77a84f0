"""One HTTP request under a wall-clock deadline and a response-size cap.

httpx timeouts bound each read, not the request: a server that drips a byte per
second never trips a 5 s read timeout and holds the worker for as long as it likes,
and a server that answers with a 400 MB body gets it all read into memory. Here a
request gets one deadline for connect, send, headers and body: a watchdog shuts the
socket down when it passes, so even a read blocked in the middle of the headers
returns at once. The body is read raw, in chunks, and reading stops past the cap
(what we use from a body is an OAuth error code: a few bytes). A compressed body
is never inflated; it is dropped, so a small gzip bomb costs nothing either.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Reply:
    """What a responder sees of a response: status, headers, and at most the capped body."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    truncated: bool = False  # the body was longer than the cap and was not read further

    def json(self) -> Any:
        """The body as JSON; ``ValueError`` when it is not (also when truncated or too deep)."""
        if self.truncated:
            raise ValueError("response body over the size cap")
        try:
            return json.loads(self.content)
        except RecursionError:  # "[[[[…" nested past the parser's limit
            raise ValueError("response body nested too deep") from None


class DeadlineExceeded(Exception):
    """The request's wall-clock deadline passed (raised between body chunks)."""


class _Watchdog:
    """Shuts the request's sockets down at the deadline (learnt from httpcore's ``trace``
    events as connections open: keep-alive is off, so every request opens its own)."""

    def __init__(self) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with self._lock:
                self._sockets.append(sock)
                if self.fired:
                    _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    """Shut the descriptor down; a blocked ``recv`` in the request's thread returns at once.
    ``socket.socket.shutdown`` (not ``SSLSocket.shutdown``) leaves the TLS object alone,
    which that thread may still be inside."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # already closed, or never connected
        pass


def bounded_request(client: httpx.Client, method: str, url: str, deadline_s: float, max_bytes: int,
                    **kwargs: Any) -> Reply:
    """Send one request and read at most ``max_bytes`` of its body, all within ``deadline_s``.

    Raises ``DeadlineExceeded`` when the deadline passes, else httpx's own errors."""
    deadline = time.monotonic() + deadline_s
    dog = _Watchdog()
    timer = threading.Timer(deadline_s, dog.fire)
    timer.daemon = True
    timer.start()
    try:
        with client.stream(method, url, timeout=httpx.Timeout(deadline_s), extensions={"trace": dog.trace},
                           **kwargs) as response:
            body, truncated = bytearray(), False
            # A response built in memory (httpx.MockTransport in tests) arrives already read.
            chunks = [response.content] if response.is_stream_consumed else response.iter_raw()
            for chunk in chunks:
                if time.monotonic() >= deadline:
                    raise DeadlineExceeded
                body += chunk
                if len(body) > max_bytes:
                    truncated = True
                    break  # leaving the block closes the connection: the rest is never read
            encoded = response.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity")
            content = b"" if truncated or encoded else bytes(body)
            return Reply(response.status_code, response.headers, content, truncated)
    except DeadlineExceeded:
        raise
    except Exception:
        if dog.fired or time.monotonic() >= deadline:
            raise DeadlineExceeded from None
        raise
    finally:
        timer.cancel()
