"""Findings -> alerts: deterministic ids, folding, severity and MITRE mapping.

Repeated findings of one rule for one key (token or session) that arrive
within ``fold_window_s`` of each other in event time fold into one alert with
a count. An alert is emitted once its window has closed (event time moved past
it) or at the end of input, so batch output holds each alert exactly once.
The id hashes the rule, the key and the first triggering event, so replaying
the same events after a crash reproduces the same alert ids.

Given the lineage state, an alert also names whom its token belongs to as issuance
recorded it (``lineage_of``): a use without ``sub`` still names the admin, so the
response policy's protections cannot be stepped around by leaving a claim out.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from detectors.base import Finding
from detectors.state import StateStore
from pipeline.runtime.config import AlertingConfig
from schemas.alerts import (
    SEVERITY_ORDER,
    Alert,
    AlertCore,
    ClientDoc,
    EvidenceItem,
    GeoLocation,
    ResponseDoc,
    RuleRef,
    SessionDoc,
    Severity,
    SourceAs,
    SourceAsOrg,
    SourceDoc,
    SourceGeo,
    Technique,
    Threat,
    TokenDoc,
    UserDoc,
)


@dataclass(frozen=True)
class Lineage:
    """What lineage state knows of an alert's token, whatever the trigger claims or omits.

    ``ambiguous``: the token itself names no owner and its session or family links tokens of
    several users (or clients), so no single one can be named."""

    user_id: str | None = None
    client_id: str | None = None
    session_id: str | None = None
    family_id: str | None = None
    ambiguous: bool = False
    # Tokens the IdP's issuance and refresh events placed in the family (a family revocation
    # may use their revocation handles; a handle's own family claim is not evidence).
    family_tokens: tuple[str, ...] = ()


MAX_FAMILY_TOKENS = 64


def lineage_of(finding: Finding, state: StateStore) -> Lineage:
    """The finding's token as issuance recorded it: its subject, client, session and family;
    for an owner the token itself does not name, the one subject (client) of the tokens
    linked to its session or family."""
    event = finding.event
    ref = event.token
    token = state.token(finding.token_id or (ref.id if ref else None))
    known = Lineage(
        user_id=token.subject_id, client_id=token.client_id, session_id=token.session_id,
        family_id=token.family_id,
    ) if token is not None else Lineage()
    family_of = finding.family_id or (ref.family_id if ref else None) or known.family_id
    if family_of:
        issued = [t.token_id for t in state.linked_tokens(state.families.get(family_of)) if t.issue is not None]
        known = replace(known, family_tokens=tuple(issued[:MAX_FAMILY_TOKENS]))
    if known.user_id and known.client_id:
        return known
    session = known.session_id or event.session_id  # issuance's record first: a use's sid is a claim
    family = finding.family_id or (ref.family_id if ref else None) or known.family_id
    linked = [*state.linked_tokens(state.sessions.get(session) if session else None),
              *state.linked_tokens(state.families.get(family) if family else None)]
    users = [known.user_id] if known.user_id else sorted({t.subject_id for t in linked if t.subject_id})
    clients = [known.client_id] if known.client_id else sorted({t.client_id for t in linked if t.client_id})
    return replace(
        known,
        user_id=users[0] if len(users) == 1 else None,
        client_id=clients[0] if len(clients) == 1 else None,
        ambiguous=len(users) > 1 or len(clients) > 1,
    )


def alert_id(rule_id: str, key: str, first_event_id: str) -> str:
    digest = hashlib.sha256(f"{rule_id}\x1f{key}\x1f{first_event_id}".encode()).hexdigest()
    return f"tw-{digest[:24]}"


@dataclass
class _OpenAlert:
    first: Finding
    last_seen: datetime
    lineage: Lineage = Lineage()
    count: int = 1
    severity: Severity = "low"
    risk_score: int = 0
    evidence: list[EvidenceItem] = field(default_factory=list)
    triggers: set[str] = field(default_factory=set)
    published: bool = False  # handed out by take_changed at least once
    opened: int = 0  # the order alerts were opened in: closing hands them out in it


class Alerter:
    """Folds findings into alerts and hands out the ones whose window closed."""

    def __init__(self, config: AlertingConfig | None = None) -> None:
        self.config = config or AlertingConfig()
        self._open: dict[tuple[str, str], _OpenAlert] = {}
        # (last seen as known when filed, opened, key), earliest first: ``close_ready`` takes
        # only what is due instead of scanning every open alert. An entry whose alert folded
        # later findings since is filed again under its new last seen when it comes up.
        self._closing: list[tuple[float, int, tuple[str, str]]] = []
        self._opened = itertools.count()
        self._changed: set[tuple[str, str]] = set()
        self.per_rule: Counter[str] = Counter()

    def add(self, finding: Finding, lineage: StateStore | None = None) -> list[Alert]:
        """Fold ``finding`` in; returns an alert closed because this one started anew.
        ``lineage`` (the engine's state, already updated with the finding's event) fills in
        what a new alert's trigger left out about its token: owner, client, session, family."""
        key = (finding.rule.id, finding.key)
        current = self._open.get(key)
        closed: list[Alert] = []
        time = finding.event.time
        if current is not None:
            if finding.event.event_id in current.triggers:
                return closed
            if abs((time - current.last_seen).total_seconds()) <= self.config.fold_window_s:
                self._fold(current, finding)
                self._changed.add(key)
                return closed
            closed.append(self._build(self._open.pop(key)))
        known = lineage_of(finding, lineage) if lineage is not None else Lineage()
        opened = _OpenAlert(first=finding, last_seen=time, lineage=known, opened=next(self._opened))
        self._fold(opened, finding, first=True)
        self._open[key] = opened
        heapq.heappush(self._closing, (opened.last_seen.timestamp(), opened.opened, key))
        self._changed.add(key)
        self.per_rule[finding.rule.id] += 1
        return closed

    def close_ready(self, watermark: float) -> list[Alert]:
        """Alerts whose fold window ended before ``watermark`` (epoch seconds)."""
        horizon = watermark - self.config.fold_window_s
        closing: list[tuple[float, int, tuple[str, str]]] = self._closing
        done: list[tuple[int, tuple[str, str]]] = []
        while closing and closing[0][0] < horizon:
            _, opened, key = heapq.heappop(closing)
            current = self._open.get(key)
            if current is None or current.opened != opened:
                continue  # closed already (a finding after its window started a new one)
            last_seen = current.last_seen.timestamp()
            if last_seen < horizon:
                done.append((opened, key))
            else:
                heapq.heappush(closing, (last_seen, opened, key))  # folded later findings since
        done.sort()  # the order they were opened in, as ever
        return [self._build(self._open.pop(key)) for _, key in done]

    def flush(self) -> list[Alert]:
        alerts = [self._build(a) for a in self._open.values()]
        self._open.clear()
        self._closing.clear()
        return alerts

    def take_changed(self) -> list[tuple[Alert, bool]]:
        """Open alerts created or updated since the last call, each with whether it is
        new: a streaming service publishes them at once (as updates under their id)
        instead of waiting for the fold window to close."""
        changed: list[tuple[Alert, bool]] = []
        for key in self._changed:
            current = self._open.get(key)
            if current is not None:
                changed.append((self._build(current), not current.published))
                current.published = True
        self._changed.clear()
        return changed

    def snapshot(self) -> list[Alert]:
        """The alerts still folding, as they stand now (published as updates under their ids)."""
        return [self._build(a) for a in self._open.values()]

    @property
    def open_count(self) -> int:
        return len(self._open)

    def _fold(self, target: _OpenAlert, finding: Finding, first: bool = False) -> None:
        if not first:
            target.count += 1
            target.last_seen = max(target.last_seen, finding.event.time)
        target.triggers.add(finding.event.event_id)
        severity = finding.severity or finding.rule.severity
        if SEVERITY_ORDER[severity] > SEVERITY_ORDER.get(target.severity, -1) or first:
            target.severity = severity
        target.risk_score = max(target.risk_score, finding.risk_score or finding.rule.risk_score)
        seen = {item.event_id for item in target.evidence}
        for item in finding.evidence:
            if item.event_id not in seen and len(target.evidence) < self.config.max_evidence:
                target.evidence.append(item)
                seen.add(item.event_id)

    def _build(self, open_alert: _OpenAlert) -> Alert:
        finding = open_alert.first
        event, rule = finding.event, finding.rule
        evidence = sorted(open_alert.evidence, key=lambda item: item.time)
        first_seen = min([item.time for item in evidence] + [event.time])
        known = open_alert.lineage
        user_id = (event.subject.id if event.subject else None) or known.user_id
        return Alert(
            timestamp=event.time,
            alert=AlertCore(
                id=alert_id(rule.id, finding.key, event.event_id),
                severity=open_alert.severity,
                risk_score=open_alert.risk_score,
                summary=finding.summary,
                first_seen=first_seen,
                last_seen=max(open_alert.last_seen, first_seen),
                count=open_alert.count,
            ),
            rule=RuleRef(id=rule.id, name=rule.name, category=rule.category),
            token=TokenDoc(
                id=finding.token_id or (event.token.id if event.token else None),
                family_id=finding.family_id or (event.token.family_id if event.token else None) or known.family_id,
                type=event.token.type.value if event.token else None,
            ),
            user=UserDoc(id=user_id, name=event.subject.name if event.subject else None),
            client=ClientDoc(id=event.client_id or known.client_id),
            session=SessionDoc(id=known.session_id or event.session_id),
            source=_source_doc(finding),
            evidence=evidence,
            threat=Threat(technique=[Technique(id=i, name=n) for i, n in rule.techniques]),
            response=ResponseDoc(action=rule.response, state="pending" if rule.response != "none" else "none"),
            details={**finding.details, **_lineage_details(known, user_id, event.client_id, event.session_id)},
        )


def _lineage_details(
    known: Lineage, user_id: str | None, client_id: str | None, session_id: str | None = None
) -> dict[str, Any]:
    """What lineage says beyond the alert's own user and client fields (which it fills when
    the trigger left them out): the response policy checks these too. The session is
    lineage's when it knows one (a use's ``sid`` claim cannot point a session revocation at
    someone else's session); a trigger that claims another is noted."""
    details: dict[str, Any] = {}
    if known.session_id and session_id and session_id != known.session_id:
        details["claimed_session_id"] = session_id
    if known.family_tokens:
        details["lineage_family_tokens"] = json.dumps(list(known.family_tokens))  # details hold scalars
    if known.user_id and known.user_id != user_id:
        details["lineage_user_id"] = known.user_id
    if known.client_id and client_id and known.client_id != client_id:
        details["lineage_client_id"] = known.client_id
    if known.ambiguous:
        details["lineage_ambiguous"] = True
    return details


def _source_doc(finding: Finding) -> SourceDoc:
    net = finding.event.network
    geo = net.geo
    return SourceDoc(
        ip=net.ip or net.service,
        geo=SourceGeo(
            country_iso_code=geo.country,
            city_name=geo.city,
            location=GeoLocation(lat=geo.lat, lon=geo.lon) if geo.lat is not None and geo.lon is not None else None,
        )
        if geo
        else None,
        as_=SourceAs(number=net.asn, organization=SourceAsOrg(name=net.as_org))
        if net.asn or net.as_org
        else None,
        hosting=net.hosting,
        net_class=net.net_class,
        net_list=net.net_list,
    )
