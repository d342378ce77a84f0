"""Small parsing helpers shared by adapters (times, scopes, content ids)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from enum import Enum, auto
from ipaddress import ip_address
from typing import Any, Generic, TypeVar

import orjson
from pydantic import ValidationError

from schemas.events import Outcome
from schemas.sources.base import (
    AdapterContext,
    InvalidFields,
    InvalidRecord,
)

MAX_EPOCH_SECONDS = 253402300799  # 9999-12-31

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Bounded memo for immutable sub-objects that repeat across records.

    The same token, caller and outcome recur in thousands of log lines;
    building their frozen models once is most of an adapter's cost. Cleared
    wholesale when full: cheap, and correctness never depends on a hit.
    """

    get: Callable[[K], V | None]
    """The memo's item for ``key``, or None: the dict's own ``get`` (a lookup or more per
    record; a method wrapping it cost a Python call each)."""

    def __init__(self, limit: int = 65_536) -> None:
        self.limit = limit
        self._items: dict[K, V] = {}
        self.get = self._items.get  # cleared in place, never replaced: stays this dict's

    def put(self, key: K, value: V) -> V:
        if _long_key(key):  # a user agent of 2 KB per entry would pin 130 MB: not worth keeping
            return value
        if len(self._items) >= self.limit:
            self._items.clear()
        self._items[key] = value
        return value


# Documented caps (README "Hostile input") of the free-text fields an attacker writes.
# A longer value is cut with ``cut`` (never refused), so the event still flows.
MAX_ID = 512  # request ids, session ids, token ids named by a source
MAX_USER_AGENT = 2048
MAX_RESOURCE = 8192  # paths, URIs
MAX_NAME = 1024  # display names, user names
MAX_CHAIN_ENTRIES = 64  # forwarded-for entries read, from the right
MAX_CHAIN_CHARS = 4096


def cut(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else its head and a marker naming the
    original length and a hash of the whole, in ``limit`` characters: two long values that
    share a head stay distinct (request ids, user agents), and a reader sees the cut."""
    if len(text) <= limit:
        return text
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    marker = f"…[cut {len(text)} chars #{digest}]"
    if limit <= len(marker):
        return marker[:limit]
    return text[: limit - len(marker)] + marker


def client_address(value: object, ctx: AdapterContext, where: str) -> str | None:
    """The caller's IP address from a field that may hold a forwarded-for chain.

    One rule for every adapter: entries are read right to left (a list, or a
    comma-separated string; ports and IPv6 brackets are stripped); the operator's
    trusted proxies are passed over; the first other entry is the caller. Entries to
    its left were written by the client and are never believed. A caller entry that is
    not an IP address gives None, counted in ``ctx.repairs`` as a dropped field.
    """
    if not value:
        return None
    # Only the right end of a chain is the proxies' and the caller's: a chain padded on the
    # client's side is read from its tail, never cut to its head.
    if isinstance(value, str) and len(value) > MAX_CHAIN_CHARS:
        value = value[-MAX_CHAIN_CHARS:].split(",", 1)[-1]
    elif isinstance(value, list) and len(value) > MAX_CHAIN_ENTRIES:
        value = value[-MAX_CHAIN_ENTRIES:]
    key = (value, ctx.trusted_proxies) if isinstance(value, str) and len(value) <= 256 else None
    found = _ADDRESSES.get(key, _Miss.MISS) if key is not None else _Miss.MISS
    if found is _Miss.MISS:
        found = _caller(value, ctx.trusted_proxies)
        if key is not None:
            if len(_ADDRESSES) >= _ADDRESSES_MAX:
                _ADDRESSES.clear()
            _ADDRESSES[key] = found
    if found is None:
        ctx.repairs[f"{where}: not an IP address (dropped)"] += 1
    return found


class _Miss(Enum):
    """A cache miss, told apart from a cached None (an enum member, so the type checker narrows on it)."""

    MISS = auto()


_ADDRESSES: dict[tuple[str, Any], str | None] = {}
_ADDRESSES_MAX = 65_536


def _caller(value: object, proxies: tuple[Any, ...]) -> str | None:
    entries: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            entries.extend(entry for entry in item.split(",") if entry.strip())
    innermost = None
    for entry in reversed(entries):
        address = _parse_address(entry)
        if address is None:
            return None
        if not any(address in proxy for proxy in proxies):
            return str(address)
        innermost = address
    return str(innermost) if innermost is not None else None  # only our proxies: the first of them called


def _parse_address(entry: str) -> Any:
    text = entry.strip().strip('"')
    if text.startswith("["):  # [v6]:port
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        return ip_address(text)
    except ValueError:
        return None


MEMO_MAX_KEY_CHARS = 256


def _long_key(key: object) -> bool:
    if isinstance(key, str):
        return len(key) > MEMO_MAX_KEY_CHARS
    if isinstance(key, tuple):
        return any(isinstance(part, str) and len(part) > MEMO_MAX_KEY_CHARS for part in key)
    return False


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


def invalid(prefix: str, error: ValidationError) -> InvalidFields:
    """The ``InvalidRecord`` for a vendor model that refused the raw record, carrying the
    field errors (locations in the raw record) so the normalizer can cut or drop the
    offending optional fields and map the record again."""
    errors = [
        {"loc": item["loc"], "type": item["type"], "ctx": item.get("ctx") or {}}
        for item in error.errors(include_url=False, include_input=False)
    ]
    return InvalidFields(f"{prefix}{explain(error)}", errors)


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
