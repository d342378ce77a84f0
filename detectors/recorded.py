"""Events rebuilt from what the state recorded, for findings about the past: a late
revocation, or a late issue, re-judges uses already processed and cites each with a
``used`` event that keeps the original event id (so the alert id is the one in-order
processing would have produced)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import get_args

from detectors.state import Observation, TokenState
from schemas.events import (
    Binding,
    BindingMethod,
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Subject,
    TokenRef,
    TokenType,
)

_BINDING_METHODS: dict[str, BindingMethod] = {method: method for method in get_args(BindingMethod)}


def use_event(use: Observation, token_state: TokenState) -> CanonicalEvent:
    """A minimal ``used`` event from a recorded use, with its original event id,
    so a retroactive alert cites (and hashes to) the use it is about."""
    ip, service = use.ip, use.service
    geo = None
    if use.country or use.city or use.lat is not None:
        geo = Geo(country=use.country, city=use.city, lat=use.lat, lon=use.lon, accuracy_km=use.accuracy_km)
    proof = None
    if use.binding and ":" in use.binding:
        method, value = use.binding.split(":", 1)
        if method in _BINDING_METHODS:
            proof = Binding(method=_BINDING_METHODS[method], value=value)
    bound = None
    if token_state.binding and ":" in token_state.binding:
        method, value = token_state.binding.split(":", 1)
        if method in _BINDING_METHODS:
            bound = Binding(method=_BINDING_METHODS[method], value=value)
    try:
        token_type = TokenType(token_state.type)
    except ValueError:
        token_type = TokenType.UNKNOWN
    return CanonicalEvent(
        event_id=use.event_id,
        kind=EventKind.USED,
        time=datetime.fromtimestamp(use.time, tz=timezone.utc),
        source=use.source,
        token=TokenRef(
            id=token_state.token_id,
            type=token_type,
            family_id=token_state.family_id,
            parent_id=token_state.parent_id,
            expires_at=datetime.fromtimestamp(token_state.expires_at, tz=timezone.utc) if token_state.expires_at else None,
            audience=token_state.audience,
            binding=bound,
        ),
        subject=Subject(id=token_state.subject_id) if token_state.subject_id else None,
        client_id=use.client_id or token_state.client_id,
        session_id=token_state.session_id,
        scopes=use.scopes,
        network=Network(
            ip=ip, service=service, geo=geo, asn=use.asn, as_org=use.as_org, hosting=use.hosting, egress=use.egress
        ),
        request=Request(id=use.request_id, proof=proof),
        outcome=Outcome(result="success" if use.success else "failure"),
    )
