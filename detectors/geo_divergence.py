"""Geo divergence: a token or session in two places no one could travel between,
or a token used from a different country or network than it was issued to.

Both rules read the lineage state (``TokenState.issue``, ``.accepted`` and ``.failed``) before
the event is applied. Events may arrive out of order, so a new event is
compared with its predecessor *and* its successor in event time, and an
``issued`` event that arrives after the token's uses is checked against them.
Sessions span several tokens, so the detector keeps the last few locations of
each session in its own ``sessions`` table (:class:`SessionTrail` rows, in
last-update order).

The operator's egress lists (``network.net_class``) decide what a position means.
An in-flight or provider network reaches here unlocated (the enricher gives it an
accuracy wider than the Earth): it is never a point of travel, so a flight is
measured between the ground points around it. A relay is a location to its coarse
accuracy (``enrich.relay_accuracy_km``): a relay far beyond it is still impossible
travel. Neither a relay, an in-flight nor a provider network names the user's
country or counts as a move to hosting; a reputation-listed network counts as
hosting/anonymising (the enricher marks it so).

Deciding and wording are apart: the detector's checks return frozen facts
(``ImpossibleTravel``, ``DivergentUse`` with its ``Divergence`` verdict), built only for an
alert; ``travel_finding`` and ``divergence_finding`` word them (the configured speed passed in).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ClassVar, Final

from detectors import describe
from detectors.base import Detector, Finding, RuleMeta
from detectors.geo import (
    closer_than_km,
    effective_distance_km,
    haversine_km,
    locates,
    speed_kmh,
    travel_horizon_s,
)
from detectors.geo_divergence_config import GeoDivergenceConfig
from detectors.geo_divergence_state import SESSION_TRAIL, SessionPoint, SessionTrail
from detectors.state import NetworkFacts, Observation, StateStore, TokenState, network_facts, value_of
from detectors.tables import Table
from schemas.alerts import EvidenceItem, Severity
from schemas.events import CanonicalEvent, EventKind

_TECHNIQUES = (
    ("T1550.001", "Use Alternate Authentication Material: Application Access Token"),
    ("T1078", "Valid Accounts"),
)

IMPOSSIBLE_TRAVEL = RuleMeta(
    id="geo_divergence.impossible_travel",
    name="Impossible travel",
    category="geo_divergence",
    severity="high",
    risk_score=75,
    techniques=_TECHNIQUES,
    response="revoke_token",
    description=(
        "Two consecutive events of one token (issue or use) or of one session are further apart, "
        "after allowing for geolocation accuracy, than anyone could travel in the time between them."
    ),
)
ISSUE_USE_DIVERGENCE = RuleMeta(
    id="geo_divergence.issue_use_divergence",
    name="Token used from a different country or network than issued",
    category="geo_divergence",
    severity="medium",
    risk_score=45,
    techniques=_TECHNIQUES,
    response="none",
    description=(
        "A successful use comes from another country, or moves to a hosting/VPN/Tor network, compared "
        "with where the token was issued; scored high when the use network is hosting or anonymising."
    ),
)
HOSTING_SEVERITY: Severity = "high"
HOSTING_RISK_SCORE = 70

_TOKEN_KINDS = frozenset({EventKind.ISSUED, EventKind.REFRESHED, EventKind.USED})
_VERB = {"issued": "issued", "refreshed": "issued by a refresh", "used": "used"}
# Egress-list classes whose position is not the user's: no country, no move to hosting.
_NOT_THE_USERS = frozenset({"relay", "in_flight", "provider"})


class _Context:
    """What the issue -> use comparison reads of one event. A plain class: every use of a
    token whose issue was seen builds two, where a ``NamedTuple`` is built by a Python call."""

    __slots__: ClassVar[tuple[str, ...]] = ("country", "asn", "as_org", "egress", "hosting", "net_class", "located")

    def __init__(
        self, country: str | None, asn: int | None, as_org: str | None, egress: str | None, hosting: bool | None,
        net_class: str | None, located: bool,
    ) -> None:
        self.country: Final = country
        self.asn: Final = asn
        self.as_org: Final = as_org
        self.egress: Final = egress
        self.hosting: Final = hosting
        self.net_class: Final = net_class
        self.located: Final = located

    @property
    def users_country(self) -> str | None:
        """The country, when the position is the user's."""
        return self.country if self.located and self.net_class not in _NOT_THE_USERS else None

    @property
    def hosting_move(self) -> bool:
        return self.hosting is True and self.net_class not in _NOT_THE_USERS


@dataclass(frozen=True, slots=True)
class Travel:
    """A move faster than anyone travels, as measured between two located events."""

    distance_km: float
    effective_km: float  # the distance less both positions' accuracy
    elapsed_s: float
    speed_kmh: float  # inf: no time at all between them


@dataclass(frozen=True, slots=True)
class ImpossibleTravel:
    """Two events of one token, or of one session, too far apart for the time between them:
    everything an ``impossible_travel`` alert says."""

    event: CanonicalEvent  # the event judged
    other: Observation | SessionPoint  # its neighbour in event time, as state recorded it
    other_token: str  # the neighbour's token (another one only in a session)
    travel: Travel
    family_id: str | None
    session_id: str | None  # None: the token's own events


@dataclass(frozen=True, slots=True)
class Divergence:
    """What differs between a token's issue and a use of it, when the difference is worth an alert."""

    country_changed: bool
    network_changed: bool
    hosting: bool  # the use's network is hosting or anonymising


@dataclass(frozen=True, slots=True)
class DivergentUse:
    """A use of a token from another country or network than its issue: everything an
    ``issue_use_divergence`` alert says."""

    event: CanonicalEvent  # the use, or the issue when it was logged after the uses it judges
    token_id: str
    family_id: str | None
    issue: Observation
    use: Observation  # the use the summary names (of several: a hosting one first, then the earliest)
    divergence: Divergence  # of ``use``
    use_list: str | None  # the egress list the use's network is on (read from a live use only)
    late_uses: tuple[Observation, ...] = ()  # an issue logged late: every diverging use it judged


class GeoDivergenceDetector(Detector[GeoDivergenceConfig]):
    name: ClassVar[str] = "geo_divergence"
    rules: ClassVar[tuple[RuleMeta, ...]] = (IMPOSSIBLE_TRAVEL, ISSUE_USE_DIVERGENCE)

    def __init__(self, config: GeoDivergenceConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        self._horizon_s = travel_horizon_s(cfg.max_speed_kmh)
        # Plain values: read on every located event (a pydantic attribute costs more).
        self._count_failed = cfg.count_failed_uses
        self._min_km = cfg.min_distance_km
        self._default_accuracy_km = cfg.default_accuracy_km
        self._max_speed = cfg.max_speed_kmh

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind, ref = event.kind, event.token
        if kind not in _TOKEN_KINDS or ref is None:
            return []
        succeeded = event.outcome.result == "success"  # ``event.succeeded``, without its property call
        if not succeeded and (kind is not EventKind.USED or not self._count_failed):
            return []
        token = state.tokens.get(ref.id)
        findings: list[Finding] = []
        here = network_facts(event.network)  # read once per network object, not per event
        if here.lat is not None and here.lon is not None and here.egress is None and locates(here.accuracy_km):
            when = event.epoch
            travel = self._token_travel(event, when, here, token) if token is not None else None
            if travel is not None:
                findings.append(travel_finding(travel, self._max_speed))
            if event.session_id:
                session_travel = self._session_step(event, when, here, state, check=travel is None)
                if session_travel is not None:
                    findings.append(travel_finding(session_travel, self._max_speed))
        if token is not None and succeeded:
            if kind is EventKind.USED:
                if token.issue is not None:
                    divergence = self._use_divergence(event, token, here)
                    if divergence is not None:
                        findings.append(divergence_finding(divergence))
            elif token.issue is None and token.accepted:
                divergence = self._late_issue_divergence(event, token)
                if divergence is not None:
                    findings.append(divergence_finding(divergence))
        return findings

    def expire(self, watermark: float, state: StateStore) -> None:
        """Forget sessions whose newest location is older than any travel could explain.

        Sessions are moved last on every update, so the table is (nearly) in
        update order and the scan stops at the first live one.
        """
        self._sessions(state).forget_before(watermark - self._horizon_s, _newest_time)

    def _sessions(self, state: StateStore) -> Table[str, SessionTrail]:
        return state.table(self.name, "sessions", SESSION_TRAIL)

    # -- impossible travel ---------------------------------------------------
    def _token_travel(
        self, event: CanonicalEvent, when: float, here: NetworkFacts, token: TokenState
    ) -> ImpossibleTravel | None:
        event_id = event.event_id
        before: Observation | None = None
        after: Observation | None = None
        failed_ok = self._count_failed
        for point in _token_points(token):
            if point.event_id == event_id or point.lat is None or point.lon is None or point.egress:
                continue
            if not locates(point.accuracy_km):
                continue
            if not point.success and not failed_ok:
                continue
            if point.time <= when:
                if before is None or point.time >= before.time:
                    before = point
            elif after is None or point.time < after.time:
                after = point
        for other in (before, after):
            if other is None:
                continue
            travel = self._measure(here, when, other.lat, other.lon, other.accuracy_km, other.time)
            if travel is not None:
                assert event.token is not None
                return ImpossibleTravel(event, other, event.token.id, travel, token.family_id, None)
        return None

    def _session_step(
        self, event: CanonicalEvent, when: float, here: NetworkFacts, state: StateStore, check: bool
    ) -> ImpossibleTravel | None:
        """Compare with the session's neighbouring events of *other* tokens (the
        token's own are covered above), then remember this location."""
        session_id = event.session_id
        lat, lon = here.lat, here.lon
        assert session_id is not None and event.token is not None and lat is not None and lon is not None
        sessions = self._sessions(state)
        trail = sessions.get(session_id)
        points = list(trail.points) if trail is not None else []
        event_id, token_id = event.event_id, event.token.id
        index = len(points)
        while index > 0 and points[index - 1].time > when:
            index -= 1
        duplicate = any(point.event_id == event_id for point in points)
        found: ImpossibleTravel | None = None
        if check and not duplicate:
            for i in (index - 1, index):
                if not 0 <= i < len(points) or points[i].token_id == token_id:
                    continue
                other = points[i]
                travel = self._measure(here, when, other.lat, other.lon, other.accuracy_km, other.time)
                if travel is not None:
                    recorded = _observation(state, other.token_id, other.event_id)
                    found = ImpossibleTravel(event, recorded or other, other.token_id, travel, None, session_id)
                    break
        if not duplicate:
            city, country, org = here.city, here.country, here.as_org
            points.insert(index, SessionPoint(
                when, lat, lon, here.accuracy_km, token_id, event_id, value_of(event.kind),
                sys.intern(event.source), sys.intern(country) if country else None,
                sys.intern(city) if city else None, here.asn, sys.intern(org) if org else None,
                here.ip or here.service,
            ))
            if len(points) > self.config.session_history:
                del points[0]
        sessions.put_last(session_id, SessionTrail(tuple(points)))  # last: update order for expire()
        return found

    def _measure(
        self, here: NetworkFacts, when: float, lat: float | None, lon: float | None, accuracy_km: float | None,
        then: float,
    ) -> Travel | None:
        """The travel from ``here`` at ``when`` to (``lat``, ``lon``) at ``then``, when faster than anyone travels."""
        here_lat, here_lon = here.lat, here.lon
        assert here_lat is not None and here_lon is not None and lat is not None and lon is not None
        min_km = self._min_km
        if closer_than_km(here_lat, here_lon, lat, lon, min_km):
            return None
        distance = haversine_km(here_lat, here_lon, lat, lon)
        if distance < min_km:
            return None
        default = self._default_accuracy_km
        effective = effective_distance_km(
            distance,
            default if here.accuracy_km is None else here.accuracy_km,
            default if accuracy_km is None else accuracy_km,
        )
        if effective < min_km:
            return None
        elapsed = abs(when - then)
        speed = speed_kmh(effective, elapsed)
        if speed <= self._max_speed:
            return None
        return Travel(distance, effective, elapsed, speed)

    # -- issue -> use divergence ---------------------------------------------
    def _diverges(self, issue: _Context, use: _Context) -> Divergence | None:
        """What changed from ``issue`` to ``use``, when the change is worth an alert. Networks
        compare by ASN, by AS name (whatever its case: Okta lower-cases them) when an ASN is
        missing, and count as unchanged when either side is unknown."""
        if issue.egress or use.egress:
            return None
        issue_country, use_country = issue.users_country, use.users_country
        issue_asn, issue_org, use_asn, use_org = issue.asn, issue.as_org, use.asn, use.as_org
        country_changed = bool(issue_country and use_country and issue_country != use_country)
        if issue_asn and use_asn:
            net_changed = issue_asn != use_asn
        else:
            net_changed = bool(issue_org and use_org and issue_org.casefold() != use_org.casefold())
        if not (country_changed or net_changed):
            return None
        hosting = use.hosting_move
        cfg = self.config
        if (
            (country_changed and cfg.alert_on_country_change)
            or (net_changed and hosting and cfg.alert_on_asn_change_to_hosting)
            or (net_changed and not country_changed and not cfg.ignore_same_country_isp_change)
        ):
            return Divergence(country_changed, net_changed, hosting)
        return None

    def _use_divergence(self, event: CanonicalEvent, token: TokenState, here: NetworkFacts) -> DivergentUse | None:
        issue = token.issue
        assert issue is not None
        use_ctx = _Context(
            here.country, here.asn, here.as_org, here.egress, here.hosting, here.net_class,
            here.has_geo and locates(here.accuracy_km),
        )
        verdict = self._diverges(_context(issue), use_ctx)
        if verdict is None:
            return None
        assert event.token is not None
        return DivergentUse(
            event, event.token.id, token.family_id, issue, Observation(event), verdict, event.network.net_list
        )

    def _late_issue_divergence(self, event: CanonicalEvent, token: TokenState) -> DivergentUse | None:
        """The issue arrived after uses already recorded: judge those uses now,
        as one finding (the trigger is the issue event, so it can fold only once)."""
        assert event.token is not None
        issue = Observation(event)
        issue_ctx = _context(issue)
        hits: list[tuple[Observation, Divergence]] = []
        for use in token.accepted:
            verdict = self._diverges(issue_ctx, _context(use))
            if verdict is not None:
                hits.append((use, verdict))
        if not hits:
            return None
        use, verdict = max(hits, key=lambda hit: (hit[1].hosting, -hit[0].time))  # hosting first, then earliest
        return DivergentUse(
            event, event.token.id, token.family_id or event.token.family_id, issue, use, verdict, None,
            tuple(hit for hit, _ in hits),
        )


def _token_points(token: TokenState) -> Sequence[Observation]:
    """The token's located events: its issue, then its recent uses in event-time order
    (accepted and failed ones are kept apart in the state)."""
    uses = sorted((*token.accepted, *token.failed), key=_time) if token.failed else token.accepted
    return uses if token.issue is None else [token.issue, *uses]


def _time(obs: Observation) -> float:
    return obs.time


def _newest_time(trail: SessionTrail) -> float:
    return trail.points[-1].time


def _context(obs: Observation) -> _Context:
    return _Context(
        obs.country, obs.asn, obs.as_org, obs.egress, obs.hosting, obs.net_class, locates(obs.accuracy_km)
    )


def _observation(state: StateStore, token_id: str, event_id: str) -> Observation | None:
    token = state.tokens.get(token_id)
    if token is not None:
        for point in _token_points(token):
            if point.event_id == event_id:
                return point
    return None


def _point_evidence(point: SessionPoint) -> EvidenceItem:
    return EvidenceItem(
        event_id=point.event_id, kind=point.kind, time=datetime.fromtimestamp(point.time, tz=timezone.utc),
        source=point.source, token_id=point.token_id, ip=point.ip, country=point.country, city=point.city,
        asn=point.asn, as_org=point.as_org,
    )


# -- wording: the facts above as findings; decides nothing ------------------------------
def travel_finding(found: ImpossibleTravel, max_speed_kmh: float) -> Finding:
    """``found`` as an ``impossible_travel`` alert, against the configured ``max_speed_kmh``:
    both events as evidence, the earlier first."""
    event, other, other_token, travel, session_id = (
        found.event, found.other, found.other_token, found.travel, found.session_id
    )
    token_id = _token_id(event)
    cited = other.evidence(other_token) if isinstance(other, Observation) else _point_evidence(other)
    evidence = (EvidenceItem.of(event), cited) if event.epoch < other.time else (cited, EvidenceItem.of(event))
    details: dict[str, str | int | float | bool | None] = {
        "distance_km": round(travel.distance_km, 1),
        "effective_distance_km": round(travel.effective_km, 1),
        "elapsed_s": round(travel.elapsed_s, 3),
        "speed_kmh": None if math.isinf(travel.speed_kmh) else round(travel.speed_kmh, 1),
        "max_speed_kmh": max_speed_kmh,
        "other_event_id": other.event_id,
        "other_token_id": other_token,
        "scope": "token" if session_id is None else "session",
    }
    if session_id is not None:
        details["session_id"] = session_id
    return Finding(
        rule=IMPOSSIBLE_TRAVEL,
        event=event,
        key=token_id if session_id is None else session_id,
        summary=travel_summary(found, max_speed_kmh),
        evidence=evidence,
        family_id=found.family_id,
        details=details,
    )


def travel_summary(found: ImpossibleTravel, max_speed_kmh: float) -> str:
    """Both places in time order, how far and how fast, and the token (or the session and
    its tokens)."""
    travel, session_id = found.travel, found.session_id
    current: Observation | SessionPoint = Observation(found.event)
    token_id = _token_id(found.event)
    first_token, first, second_token, second = found.other_token, found.other, token_id, current
    if current.time < first.time:  # a tie keeps the neighbour first
        first_token, first, second_token, second = token_id, current, found.other_token, found.other
    if math.isinf(travel.speed_kmh):
        pace = "impossible at any speed"
    else:
        pace = f"at least {travel.speed_kmh:,.0f} km/h against a plausible {max_speed_kmh:,.0f} km/h"
    first_place = describe.place(first, address=False, asn=True)
    second_place = describe.place(second, address=False, asn=True)
    moved = f"{travel.distance_km:,.0f} km away in {second_place} {_later(second.time - first.time)} — {pace}"
    if session_id is None:
        return (
            f"Impossible travel: token {_VERB[first.kind]} in {first_place}, then {_VERB[second.kind]} {moved} "
            f"(token {token_id})."
        )
    tokens = f"token {first_token}" if first_token == second_token else f"tokens {first_token} then {second_token}"
    return (
        f"Impossible travel in one session: a token {_VERB[first.kind]} in {first_place}, "
        f"then a token {_VERB[second.kind]} {moved} (session {session_id}, {tokens})."
    )


def divergence_finding(found: DivergentUse) -> Finding:
    """``found`` as an ``issue_use_divergence`` alert, scored high when the use's network is
    hosting or anonymising: the issue and the use (or every use a late issue judged) as evidence."""
    event, token_id, issue, use, divergence = found.event, found.token_id, found.issue, found.use, found.divergence
    if found.late_uses:
        evidence = (EvidenceItem.of(event), *(late.evidence(token_id) for late in found.late_uses))
    else:
        evidence = (issue.evidence(token_id), EvidenceItem.of(event))
    hosting = divergence.hosting
    return Finding(
        rule=ISSUE_USE_DIVERGENCE,
        event=event,
        key=token_id,
        summary=divergence_summary(found),
        evidence=tuple(sorted(evidence, key=lambda item: item.time)),
        family_id=found.family_id,
        severity=HOSTING_SEVERITY if hosting else ISSUE_USE_DIVERGENCE.severity,
        risk_score=HOSTING_RISK_SCORE if hosting else ISSUE_USE_DIVERGENCE.risk_score,
        details={
            "issue_country": issue.country,
            "use_country": use.country,
            "issue_network": _network_name(issue),
            "use_network": _network_name(use),
            "country_changed": divergence.country_changed,
            "network_changed": divergence.network_changed,
            "use_hosting": hosting,
            "use_net_list": found.use_list,
            "issue_event_id": issue.event_id,
            "use_event_id": use.event_id,
        },
    )


def divergence_summary(found: DivergentUse) -> str:
    """The issue -> use divergence in words, led by what differs: the country (both places
    named), or else the network within one country (both networks named, the country once)."""
    issue, use, divergence, use_list = found.issue, found.use, found.divergence, found.use_list
    others = len(found.late_uses) - 1 if found.late_uses else 0
    network_kind = ""
    if divergence.hosting:
        network_kind = ", a hosting/anonymising network" + (f" on the list {use_list}" if use_list else "")
    more = f" (and {describe.counted(others, 'more such use')})" if others else ""
    if divergence.country_changed:
        lead = f"another country{' and network' if divergence.network_changed else ''} than where it was issued"
        issued, used = (describe.place(obs, address=False, asn=True) for obs in (issue, use))
        issued = f"in {issued}"
    else:
        lead = "another network than where it was issued"
        if issue.country and issue.country == use.country:
            lead += f", in the same country ({issue.country})"
        issued, used = (_network_label(obs) for obs in (issue, use))
        issued = f"on {issued}"
    return (
        f"Token used from {lead}: {_VERB[issue.kind]} {issued}, used {_later(use.time - issue.time)} from "
        f"{used}{network_kind}{more} (token {found.token_id})."
    )


def _token_id(event: CanonicalEvent) -> str:
    ref = event.token
    assert ref is not None
    return ref.id


def _later(seconds: float) -> str:
    """How long after the earlier of two events the later one happened: "20 min later"."""
    return "in the same second" if abs(seconds) < 1 else f"{describe.duration(seconds)} later"


def _network_label(obs: Observation) -> str:
    """A network within a known country, with its city when known: "Vodafone GmbH (AS3209) in Berlin",
    "AS3209", or its address when the AS is unknown."""
    label = describe.network(obs.as_org, obs.asn) or obs.ip or "an unknown network"
    return f"{label} in {obs.city}" if obs.city else label


def _network_name(obs: Observation) -> str | None:
    """How a network reads in alert details: the AS name (``describe.as_name``), else the AS number."""
    return describe.as_name(obs.as_org, obs.asn)
