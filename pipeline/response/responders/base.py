"""The responder interface: one adapter per way of revoking (RFC 7009, an IdP admin API, CAEP).

A responder only performs the side effect for one planned target; the policy decides
whether and what to revoke, the executor decides when to retry. Every outcome is one of
four, so retries are uniform across adapters: ``done``, ``retry`` (transient: 429, 5xx,
timeouts; ``after_s`` honours ``Retry-After``), ``config_error`` (our credentials or
settings are wrong: never retried) and ``rejected`` (the server refused this target).
Every request runs under one wall-clock deadline and reads at most a capped body
(``http.bounded_request``): a hostile or broken server costs a worker ``timeout_s``
and ``max_response_bytes`` at most.
"""

from __future__ import annotations

import email.utils
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr

from pipeline.response.responders.http import DeadlineExceeded, Reply, bounded_request
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget, TargetKind

Outcome = Literal["done", "retry", "config_error", "rejected"]
MAX_RETRY_AFTER_S = 86_400.0  # a day: the executor clamps further, to backoff_max_s


@dataclass(frozen=True)
class ResponderResult:
    outcome: Outcome
    reason: str = ""
    after_s: float | None = None  # server-requested delay (Retry-After), retries only
    status: int | None = None  # HTTP status, when there was a response

    @classmethod
    def done(cls, reason: str = "ok", status: int | None = None) -> ResponderResult:
        return cls("done", reason, None, status)

    @classmethod
    def retry(cls, after_s: float | None, reason: str, status: int | None = None) -> ResponderResult:
        return cls("retry", reason, after_s, status)

    @classmethod
    def config_error(cls, reason: str, status: int | None = None) -> ResponderResult:
        return cls("config_error", reason, None, status)

    @classmethod
    def rejected(cls, reason: str, status: int | None = None) -> ResponderResult:
        return cls("rejected", reason, None, status)


@dataclass(frozen=True)
class RevocationHandle:
    """The token string a source supplied so RFC 7009 can revoke it (memory only, never logged)."""

    token_id: str
    token: SecretStr
    token_type: Literal["access_token", "refresh_token"] | None
    expires_at: float  # epoch seconds: purged after this
    family_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None  # the client the token was issued to, when the source sealed it

    def __repr__(self) -> str:  # dataclass repr would be fine (SecretStr masks), but be explicit
        return f"RevocationHandle(token_id={self.token_id!r}, token_type={self.token_type!r})"


def read_secret(env: str | None, file: Path | None, what: str) -> SecretStr:
    """A secret from the named environment variable or file; ``SecretError`` names what is missing."""
    if env:
        value = os.environ.get(env)
        if value:
            return SecretStr(value)
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"cannot read {what} from {file}: {exc.strerror}") from None
        if text:
            return SecretStr(text)
    where = " or ".join(x for x in (f"${env}" if env else "", str(file) if file else "") if x) or "nowhere"
    raise SecretError(f"{what} is not set ({where}): set the *_env variable or the *_file key")


class Responder(ABC):
    """Revokes one target. Subclasses set ``type`` (the registry key) and ``kinds`` they can revoke."""

    type: ClassVar[str]
    kinds: ClassVar[frozenset[TargetKind]]
    needs_handle: ClassVar[bool] = False  # RFC 7009 needs the token string itself

    def __init__(self, name: str, config: Any, transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.config = config
        # No keep-alive: every request opens its own connection, so the deadline's watchdog
        # always knows the socket to shut down (revocations are rare; a handshake is cheap).
        self.http = httpx.Client(
            timeout=config.timeout_s, verify=config.verify_tls, transport=transport, follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    @abstractmethod
    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        """Revoke ``target`` (with ``handle`` when ``needs_handle``); never raises for HTTP trouble."""

    def fallback(self) -> str | None:
        """The responder that revokes a target when no revocation handle arrived (None: none)."""
        return None

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def send(self, method: str, url: str, **kwargs: Any) -> Reply | ResponderResult:
        """One request within ``timeout_s`` in all, reading at most ``max_response_bytes`` of the
        body; a passed deadline, transport errors and timeouts become ``retry`` results."""
        cfg = self.config
        try:
            return bounded_request(self.http, method, url, cfg.timeout_s, cfg.max_response_bytes, **kwargs)
        except DeadlineExceeded:
            return ResponderResult.retry(None, f"no complete answer from {_host(url)} within {cfg.timeout_s:g}s")
        except httpx.TimeoutException as exc:
            return ResponderResult.retry(None, f"timeout talking to {_host(url)}: {type(exc).__name__}")
        except httpx.UnsupportedProtocol:
            return ResponderResult.config_error(f"unsupported URL scheme for {_host(url)} (use https)")
        except httpx.TransportError as exc:
            return ResponderResult.retry(None, f"cannot reach {_host(url)}: {type(exc).__name__}")


RESPONDERS: dict[str, type[Responder]] = {}


def register(cls: type[Responder]) -> type[Responder]:
    RESPONDERS[cls.type] = cls
    return cls


def classify(response: Reply, what: str) -> ResponderResult:
    """The common mapping of an HTTP status to an outcome (adapters refine 2xx/400/404)."""
    status = response.status_code
    if 200 <= status < 300:
        return ResponderResult.done(f"{what}: HTTP {status}", status)
    if status in (401, 403):
        return ResponderResult.config_error(f"{what}: HTTP {status} (check the client credentials and roles)", status)
    if status == 429 or status >= 500:
        return ResponderResult.retry(retry_after(response.headers.get("Retry-After")), f"{what}: HTTP {status}", status)
    return ResponderResult.rejected(f"{what}: HTTP {status}{_error_text(response)}", status)


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    The server does not get to park an action: at most ``MAX_RETRY_AFTER_S``, a date in the
    past is 0, and anything unparseable is None (plain backoff)."""
    if not value:
        return None
    value = value.strip()[:64]
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)  # any digit string: a float (64 digits at most), capped
    try:
        when = email.utils.parsedate_to_datetime(value)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _error_text(response: Reply) -> str:
    """The OAuth ``error`` (never the body: it may echo what we sent)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        code = body.get("error") or body.get("err") or body.get("errorCode")
        if isinstance(code, str):
            return f" {code}"
    return ""


def _host(url: str) -> str:
    return httpx.URL(url).host or url
