"""Small parsing helpers shared by adapters (times, scopes, content ids)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError

from schemas.events import Outcome
from schemas.sources.base import InvalidRecord, PartialRecord  # noqa: F401  (re-exported)

MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Bounded memo for immutable sub-objects that repeat across records.

    The same token, caller and outcome recur in thousands of log lines;
    building their frozen models once is most of an adapter's cost. Cleared
    wholesale when full: cheap, and correctness never depends on a hit.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self.limit = limit
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> V:
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = value
        return value


def content_id(source: str, raw: Mapping[str, Any]) -> str:
    """Stable id for records whose source gives none: a hash of the content.

    Exact redeliveries hash alike (and are deduplicated); a replayed request
    with any different field does not.
    """
    body = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)
    return f"{source}:{hashlib.blake2b(body, digest_size=12).hexdigest()}"


def epoch_to_utc(value: float, *, millis: bool = False) -> datetime:
    seconds = value / 1000.0 if millis else float(value)
    if not 0 <= seconds <= MAX_EPOCH_SECONDS:
        raise InvalidRecord(f"epoch time out of range: {value!r}")
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def iso_to_utc(value: object, field: str) -> datetime:
    """Parse an ISO 8601 time that must carry a timezone ("Z" or an offset).

    ``field`` names the offending key in the ``InvalidRecord`` reason.
    """
    if not isinstance(value, str):
        raise InvalidRecord(f"{field}: expected an ISO 8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(f"{field}: not an ISO 8601 time: {value[:64]!r}") from None
    if parsed.tzinfo is None:
        raise InvalidRecord(f"{field}: time has no timezone: {value[:64]!r}")
    return parsed.astimezone(timezone.utc)


_HTTP_OUTCOMES: dict[int, Outcome] = {}


def http_outcome(status: int) -> Outcome:
    """The outcome of a request a resource server answered with ``status`` (< 400 is an
    accepted use); shared and cached, since a handful of codes make up every log."""
    found = _HTTP_OUTCOMES.get(status)
    if found is None:
        ok = status < 400
        found = _HTTP_OUTCOMES[status] = Outcome(
            result="success" if ok else "failure", reason=None if ok else f"HTTP {status}"
        )
    return found


def split_scopes(value: str | list[str] | None, sep: str | None = None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(s.strip() for s in value if s and s.strip())
    return tuple(s.strip() for s in value.split(sep) if s.strip())


def explain(error: ValidationError, limit: int = 3) -> str:
    """A one-line reason from a pydantic error, naming the offending fields."""
    parts = []
    for item in error.errors()[:limit]:
        where = ".".join(str(p) for p in item["loc"]) or "record"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - limit
    if more > 0:
        parts.append(f"(+{more} more)")
    return "; ".join(parts)
