"""Event factories for detector tests: small, explicit, already enriched.

Times are seconds after ``T0`` so a test reads as a timeline. Places are
named (``BERLIN_HOME`` …) with their IP, network and coordinates so tests do
not depend on the offline geo database.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from detectors import build_detectors
from detectors.state import StateStore
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import Alert
from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Revocation,
    Subject,
    TokenRef,
    TokenType,
)

T0 = datetime(2026, 11, 24, 9, 0, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


@dataclass(frozen=True)
class Place:
    ip: str
    country: str
    city: str
    lat: float
    lon: float
    asn: int
    as_org: str
    hosting: bool = False
    egress: str | None = None
    accuracy_km: float = 25.0

    def network(self, user_agent: str = "Mozilla/5.0") -> Network:
        return Network(
            ip=self.ip,
            user_agent=user_agent,
            geo=Geo(country=self.country, city=self.city, lat=self.lat, lon=self.lon,
                    accuracy_km=self.accuracy_km, source="city_db"),
            asn=self.asn,
            as_org=self.as_org,
            hosting=self.hosting,
            egress=self.egress,
        )


BERLIN_HOME = Place("79.200.1.10", "DE", "Berlin", 52.52, 13.405, 3320, "Deutsche Telekom AG")
BERLIN_MOBILE = Place("79.200.77.3", "DE", "Berlin", 52.50, 13.39, 3320, "Deutsche Telekom AG")
HAMBURG_SAME_ASN = Place("79.201.5.5", "DE", "Hamburg", 53.55, 9.99, 3320, "Deutsche Telekom AG")
MUNICH_OTHER_ISP = Place("84.150.2.2", "DE", "Munich", 48.14, 11.58, 6805, "Telefonica Germany")
FRANKFURT_HOSTING = Place("88.198.10.10", "DE", "Frankfurt", 50.11, 8.68, 24940, "Hetzner Online GmbH", hosting=True)
SINGAPORE_VPS = Place("139.59.1.1", "SG", "Singapore", 1.29, 103.85, 14061, "DigitalOcean, LLC", hosting=True)
NEW_YORK_HOME = Place("24.45.1.1", "US", "New York", 40.71, -74.0, 6128, "Cablevision Systems")
CORP_VPN_TOKYO = Place("203.0.113.10", "JP", "Tokyo", 35.68, 139.69, 2516, "KDDI", egress="corp-vpn")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(
    kind: EventKind | str,
    t: float,
    *,
    token: str | None = None,
    token_type: TokenType | str = TokenType.ACCESS,
    family: str | None = None,
    parent: str | None = None,
    expires_in: float | None = 300.0,
    audience: tuple[str, ...] = (),
    bound: Binding | None = None,
    subject: str | None = "alice",
    client: str | None = "portal",
    session: str | None = None,
    grant_type: str | None = None,
    scopes: tuple[str, ...] | list[str] = (),
    required: tuple[str, ...] | list[str] = (),
    place: Place | None = BERLIN_HOME,
    user_agent: str = "Mozilla/5.0",
    request_id: str | None = None,
    proof: Binding | None = None,
    success: bool = True,
    status: int | None = None,
    revoke: str | None = None,
    event_id: str | None = None,
    source: str = "test",
) -> CanonicalEvent:
    """Build one canonical event; ``revoke`` is the revocation target for ``revoked``."""
    kind = EventKind(kind)
    token_ref = None
    if token is not None:
        token_ref = TokenRef(
            id=token,
            type=TokenType(token_type),
            family_id=family,
            parent_id=parent,
            issued_at=at(t) if kind in (EventKind.ISSUED, EventKind.REFRESHED) else None,
            expires_at=at(t + expires_in) if expires_in is not None and kind is not EventKind.REVOKED else None,
            audience=tuple(audience),
            binding=bound,
        )
    request = None
    if kind is EventKind.USED:
        code = status if status is not None else (200 if success else 401)
        request = Request(id=request_id or f"req-{next(_ids)}", method="GET", resource="/api", status=code, proof=proof)
    return CanonicalEvent(
        event_id=event_id or f"ev-{next(_ids)}",
        kind=kind,
        time=at(t),
        source=source,
        token=token_ref,
        subject=Subject(id=subject, kind="user") if subject else None,
        client_id=client,
        session_id=session,
        grant_type=grant_type,
        scopes=tuple(scopes),
        required_scopes=tuple(required),
        network=place.network(user_agent) if place else Network(),
        request=request,
        outcome=Outcome(result="success" if success else "failure"),
        revocation=Revocation(target=revoke) if kind is EventKind.REVOKED else None,  # type: ignore[arg-type]  # revoke is a plain str; Revocation validates the literal
    )


def engine(config: dict[str, Any] | None = None, **engine_kw: Any) -> Engine:
    """An engine with every enabled detector, configured per detector name
    (``{"replay": {"refresh_grace_s": 10}, "geo_divergence": {"enabled": False}}``)."""
    return Engine(build_detectors(config), StateStore(), Alerter(), EngineConfig(**engine_kw))


def run(events: list[CanonicalEvent], config: dict[str, Any] | None = None, **engine_kw: Any) -> list[Alert]:
    """Feed events in list order (processing order) and return every alert."""
    eng = engine(config, **engine_kw)
    alerts: list[Alert] = []
    for ev in events:
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    return alerts


def rule_hits(alerts: list[Alert]) -> list[tuple[str, str | None]]:
    """(rule id, token id) per alert, sorted: what detector tests assert on."""
    return sorted((a.rule.id, a.token.id) for a in alerts)
