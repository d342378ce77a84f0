"""Responders by type name; importing this package registers every adapter (see RESPONDERS)."""

from collections.abc import Mapping
from typing import Any

import httpx

from pipeline.config import ConfigError
from pipeline.response.responders import caep, entra, keycloak, okta, rfc7009  # noqa: F401 -- imported to register the responders
from pipeline.response.responders.base import (
    RESPONDERS,
    Responder,
    ResponderResult,
    RevocationHandle,
)


def build_responders(configs: Mapping[str, Any], transport: httpx.BaseTransport | None = None) -> dict[str, Responder]:
    """One live responder per configured name (``[response.responders.<name>]``); a ``fallback``
    must name another configured responder that needs no handle (checked here, at start)."""
    built = {
        name: RESPONDERS[cfg.type](name, cfg, transport)
        for name, cfg in configs.items()
    }
    for name, responder in built.items():
        fallback = responder.fallback()
        if fallback is None:
            continue
        other = built.get(fallback)
        if other is None or other.needs_handle:
            for live in built.values():
                live.close()
            raise ConfigError(f"[response.responders.{name}] fallback = {fallback!r}: name a configured responder "
                             "that needs no revocation handle (keycloak, okta, entra, caep)")
    return built


__all__ = ["build_responders", "RESPONDERS", "Responder", "ResponderResult", "RevocationHandle"]
