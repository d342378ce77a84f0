"""Registry of source formats: name -> adapter, plus per-line auto-detection.

Adding a format is adding one module here and one line to ``_ADAPTERS``;
``tests/schemas/test_registry.py`` fails when a module is not registered.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.sources.base import (
    AdapterContext,
    InvalidRecord,
    PartialRecord,
    SourceFormat,
    UnsupportedEventType,
)
from schemas.sources.canonical import CanonicalFormat
from schemas.sources.cloudtrail import CloudTrailFormat
from schemas.sources.entra import EntraFormat
from schemas.sources.gateway import GatewayFormat
from schemas.sources.graph import GraphFormat
from schemas.sources.k8s import K8sAuditFormat
from schemas.sources.k8s_aks import AksAuditFormat
from schemas.sources.k8s_gke import GkeAuditFormat
from schemas.sources.keycloak import KeycloakFormat
from schemas.sources.keycloak_text import log_line_record
from schemas.sources.okta import OktaFormat

_ADAPTERS: tuple[SourceFormat, ...] = (
    CanonicalFormat(),
    GatewayFormat(),
    KeycloakFormat(),
    OktaFormat(),
    EntraFormat(),
    GraphFormat(),
    CloudTrailFormat(),
    K8sAuditFormat(),
    AksAuditFormat(),
    GkeAuditFormat(),
)

FORMATS: dict[str, SourceFormat] = {adapter.name: adapter for adapter in _ADAPTERS}

TEXT_FORMATS: dict[str, Callable[[bytes], dict[str, Any] | None]] = {
    "keycloak": log_line_record,
}
"""Formats that also arrive as non-JSON text lines: name -> a reader that turns such a line
into the JSON record its format's adapter reads (None: not its line)."""

_MATCH_KEYS: frozenset[str] = frozenset().union(*(adapter.match_keys for adapter in _ADAPTERS))
_KEY_FORMATS: dict[str, int] = {
    key: sum(1 << i for i, adapter in enumerate(_ADAPTERS) if key in adapter.match_keys) for key in _MATCH_KEYS
}
"""A match key -> the formats that name it, as bits of their positions in ``_ADAPTERS``."""
_CANDIDATES: dict[int, tuple[SourceFormat, ...]] = {}
"""Bits of formats -> those formats in ``_ADAPTERS`` order (filled as lines need them; at most
one entry per subset of the formats, whatever the input)."""


class UnknownFormat(InvalidRecord):
    """No registered format recognises the record."""


def detect_format(raw: Mapping[str, Any]) -> SourceFormat:
    """Return the one format whose key test matches ``raw``.

    Raises ``UnknownFormat`` when none or more than one match: an ambiguous
    line is a bug in a ``matches`` test and must not be guessed. Only the formats whose
    ``match_keys`` the line has are asked: the others' ``matches`` is false for it.
    """
    mask = 0
    for key in _MATCH_KEYS:  # not ``intersection(raw)``: that walks every key of a hostile record
        if key in raw:
            mask |= _KEY_FORMATS[key]
    candidates = _CANDIDATES.get(mask)
    if candidates is None:
        candidates = _CANDIDATES[mask] = tuple(a for i, a in enumerate(_ADAPTERS) if mask >> i & 1)
    found = [adapter for adapter in candidates if adapter.matches(raw)]
    if len(found) == 1:
        return found[0]
    if not found:
        keys = ", ".join(sorted(str(k) for k in list(raw)[:8]))
        raise UnknownFormat(f"unknown format: no adapter matches keys [{keys}]")
    names = ", ".join(adapter.name for adapter in found)
    raise UnknownFormat(f"ambiguous format: matches {names}")


def parse_text_record(line: bytes, forced: str | None = None) -> dict[str, Any] | None:
    """The record a non-JSON line stands for, from the first text format that reads it (only
    ``forced``'s reader when a format is forced); None when none does."""
    if forced is None:
        readers = tuple(TEXT_FORMATS.values())
    else:
        readers = (TEXT_FORMATS[forced],) if forced in TEXT_FORMATS else ()
    for read in readers:
        record = read(line)
        if record is not None:
            return record
    return None


__all__ = [
    "FORMATS",
    "TEXT_FORMATS",
    "AdapterContext",
    "InvalidRecord",
    "PartialRecord",
    "SourceFormat",
    "UnknownFormat",
    "UnsupportedEventType",
    "detect_format",
    "parse_text_record",
]
