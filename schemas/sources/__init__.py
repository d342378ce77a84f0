"""Registry of source formats: name -> adapter, plus per-line auto-detection.

Adding a format is adding one module here and one line to ``_ADAPTERS``;
``tests/schemas/test_registry.py`` fails when a module is not registered.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from schemas.sources.keycloak import KeycloakFormat
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
)

FORMATS: dict[str, SourceFormat] = {adapter.name: adapter for adapter in _ADAPTERS}


class UnknownFormat(InvalidRecord):
    """No registered format recognises the record."""


def detect_format(raw: Mapping[str, Any]) -> SourceFormat:
    """Return the one format whose key test matches ``raw``.

    Raises ``UnknownFormat`` when none or more than one match: an ambiguous
    line is a bug in a ``matches`` test and must not be guessed.
    """
    found = [adapter for adapter in _ADAPTERS if adapter.matches(raw)]
    if len(found) == 1:
        return found[0]
    if not found:
        keys = ", ".join(sorted(str(k) for k in list(raw)[:8]))
        raise UnknownFormat(f"unknown format: no adapter matches keys [{keys}]")
    names = ", ".join(adapter.name for adapter in found)
    raise UnknownFormat(f"ambiguous format: matches {names}")


__all__ = [
    "FORMATS",
    "AdapterContext",
    "InvalidRecord",
    "PartialRecord",
    "SourceFormat",
    "UnknownFormat",
    "UnsupportedEventType",
    "detect_format",
]
