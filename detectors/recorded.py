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


def use_event(use: Observation, ts: TokenState) -> CanonicalEvent:
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
    if ts.binding and ":" in ts.binding:
        method, value = ts.binding.split(":", 1)
        if method in _BINDING_METHODS:
            bound = Binding(method=_BINDING_METHODS[method], value=value)
    try:
        token_type = TokenType(ts.type)
    except ValueError:
        token_type = TokenType.UNKNOWN
    return CanonicalEvent(
        event_id=use.event_id,
        kind=EventKind.USED,
        time=datetime.fromtimestamp(use.time, tz=timezone.utc),
        source=use.source,
        token=TokenRef(
            id=ts.token_id,
            type=token_type,
            family_id=ts.family_id,
            parent_id=ts.parent_id,
            expires_at=datetime.fromtimestamp(ts.expires_at, tz=timezone.utc) if ts.expires_at else None,
            audience=ts.audience,
            binding=bound,
        ),
        subject=Subject(id=ts.subject_id) if ts.subject_id else None,
        client_id=use.client_id or ts.client_id,
        session_id=ts.session_id,
        scopes=use.scopes,
        network=Network(
            ip=ip, service=service, geo=geo, asn=use.asn, as_org=use.as_org, hosting=use.hosting, egress=use.egress
        ),
        request=Request(id=use.request_id, proof=proof),
        outcome=Outcome(result="success" if use.success else "failure"),
    )
