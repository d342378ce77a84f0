"""Responders by type name; importing this package registers every adapter (see RESPONDERS)."""

from pipeline.response.responders import caep, entra, keycloak, okta, rfc7009  # noqa: F401  (registration)
from pipeline.response.responders.base import (
    RESPONDERS,
    Responder,
    ResponderResult,
    RevocationHandle,
)



def build_responders(configs: dict, transport: object | None = None) -> dict[str, Responder]:
    """One live responder per configured name (``[response.responders.<name>]``)."""
    return {name: RESPONDERS[cfg.type](name, cfg, transport) for name, cfg in configs.items()}  # type: ignore[arg-type]


__all__ = ["build_responders", "RESPONDERS", "Responder", "ResponderResult", "RevocationHandle"]
