"""The adapter interface: one module per source format implements it.

An adapter is pure: raw vendor JSON in, canonical events out. It raises
``InvalidRecord`` (dead-lettered with the reason) for malformed input and
``UnsupportedEventType`` (counted and skipped) for event types of its format
that tokenwatch has no use for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any, ClassVar, Protocol

from schemas.events import CanonicalEvent
from schemas.redaction import TokenHasher


class InvalidRecord(ValueError):
    """The record belongs to a format but cannot be mapped; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidFields(InvalidRecord):
    """The vendor model refused fields of the record; ``errors`` locate them in the raw
    record (pydantic's ``loc``, ``type`` and ``ctx``), so that a field too long can be cut
    and a malformed optional field dropped before the record is mapped again."""

    def __init__(self, reason: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(reason)
        self.errors = errors


class PartialRecord(InvalidRecord):
    """A batch record (e.g. a CloudTrail log file) of which some entries are malformed.

    ``events`` are those of the good entries, ``reason`` names the bad ones: the
    normalizer keeps the events and dead-letters the line with the reason, so
    one bad entry neither loses the others nor vanishes.
    """

    def __init__(self, reason: str, events: list[CanonicalEvent]) -> None:
        super().__init__(reason)
        self.events = events


class UnsupportedEventType(Exception):
    """A well-formed event of a known format that no detector needs."""

    def __init__(self, event_type: str) -> None:
        super().__init__(event_type)
        self.event_type = event_type


@dataclass(frozen=True)
class AdapterContext:
    """What adapters need from outside without doing I/O themselves.

    ``trusted_proxies`` are the operator's own proxies and load balancers: in a
    forwarded-for chain, the caller is the rightmost address that is not one of
    them (``common.client_address``). ``repairs`` counts what adapters dropped or
    cut from a record instead of refusing it (shared with the normalizer)."""

    hash_token: TokenHasher
    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    repairs: Counter[str] = field(default_factory=Counter)


class SourceFormat(Protocol):
    name: ClassVar[str]
    match_keys: ClassVar[frozenset[str]]
    """Top-level keys of which every record ``matches`` accepts holds at least one (a
    necessary condition): auto-detection asks only the formats whose keys a line has.
    ``tests/schemas/test_match_keys.py`` checks it on every sample line and on generated ones."""

    def matches(self, raw: Mapping[str, Any]) -> bool:
        """Cheap key test used for per-line auto-detection; must not overlap other formats."""
        ...

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        """Map one raw record to zero or more canonical events."""
        ...
