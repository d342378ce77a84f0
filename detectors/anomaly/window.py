"""One token's behaviour window as the anomaly detector keeps it, and its changelog codec.

A window opens at a token's first use and closes ``window_s`` later (event time);
``features.update_window`` folds each use into it in place (so the detector marks the
row changed after each use). Open windows live in the table ``anomaly/open_windows``
keyed by token id; windows a later use closed wait in ``anomaly/closed_windows`` for the
next batch to judge them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.anomaly.plain import (
    items,
    maybe_flag,
    maybe_text,
    maybe_whole,
    number,
    text,
    texts,
    whole,
)
from detectors.tables import register_codec
from schemas.events import CanonicalEvent


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """What an alert needs of one use to cite it (and to stand for the window)."""

    event_id: str
    time: float
    source: str
    token_id: str | None
    family_id: str | None
    token_type: str | None
    subject: str | None
    client_id: str | None
    session_id: str | None
    ip: str | None
    asn: int | None
    as_org: str | None
    country: str | None
    city: str | None
    hosting: bool | None
    user_agent: str | None
    succeeded: bool
    request_id: str | None
    scopes: tuple[str, ...]
    method: str | None
    resource: str | None

    @classmethod
    def of(cls, event: CanonicalEvent) -> EvidenceRecord:
        net, geo, req, tok = event.network, event.network.geo, event.request, event.token
        return cls(
            event.event_id, event.epoch, event.source, tok.id if tok else None,
            tok.family_id if tok else None, tok.type.value if tok else None,
            event.subject.id if event.subject else None, event.client_id, event.session_id,
            net.ip, net.asn, net.as_org, geo.country if geo else None, geo.city if geo else None,
            net.hosting, net.user_agent, event.succeeded, req.id if req else None,
            tuple(event.scopes), req.method if req else None, req.resource if req else None,
        )


def _encode_record(r: EvidenceRecord) -> list[Any]:
    return [r.event_id, r.time, r.source, r.token_id, r.family_id, r.token_type, r.subject, r.client_id,
            r.session_id, r.ip, r.asn, r.as_org, r.country, r.city, r.hosting, r.user_agent, r.succeeded,
            r.request_id, list(r.scopes), r.method, r.resource]


def _decode_record(value: Any) -> EvidenceRecord:
    v = items(value, 21)
    if type(v[16]) is not bool:
        raise TypeError("evidence record without an outcome")
    return EvidenceRecord(
        text(v[0]), number(v[1]), text(v[2]), maybe_text(v[3]), maybe_text(v[4]), maybe_text(v[5]),
        maybe_text(v[6]), maybe_text(v[7]), maybe_text(v[8]), maybe_text(v[9]), maybe_whole(v[10]),
        maybe_text(v[11]), maybe_text(v[12]), maybe_text(v[13]), maybe_flag(v[14]), maybe_text(v[15]), v[16],
        maybe_text(v[17]), tuple(texts(v[18])), maybe_text(v[19]), maybe_text(v[20]),
    )


@dataclass(slots=True)
class WindowNotes:
    """Novelties remembered (a few of each) to word an alert: what was new and what drifted."""

    networks: list[tuple[str, int | None, str | None]] = field(default_factory=list)  # (network, ASN, AS org)
    agents: list[str] = field(default_factory=list)
    countries: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # new for the subject
    client_resources: list[str] = field(default_factory=list)  # new for the client
    scopes: list[str] = field(default_factory=list)
    drift: list[tuple[str, str, str]] = field(default_factory=list)  # (device field, before, after)


@dataclass(slots=True)
class BehaviourWindow:
    """One token's activity from its first use for ``window_s``: counts, what it used,
    how many uses were new for its subject or client, and change inside the window."""

    token: str
    start: float
    end: float  # the latest use
    subject: str
    client: str | None
    requests: int = 0
    failures: int = 0
    hosting: int = 0  # uses from hosting/VPN/Tor networks
    # uses with something the subject (or client) never used before
    new_ip_uses: int = 0
    new_network_uses: int = 0
    new_agent_uses: int = 0
    new_country_uses: int = 0
    new_resource_uses: int = 0
    new_client_resource_uses: int = 0
    new_scope_uses: int = 0
    # what the window used: the same names as the profile's memory of them
    ips: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)
    countries: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)
    scopes: set[str] = field(default_factory=set)
    notes: WindowNotes = field(default_factory=WindowNotes)
    evidence: list[EvidenceRecord] = field(default_factory=list)  # the first use, then novelties
    # device drift against the session's previous use, and roaming between networks
    agent_changes: int = 0
    device_changes: int = 0
    key_changes: int = 0
    network_switches: int = 0
    network_returns: int = 0
    last_network: str | None = None
    networks_left: list[str] = field(default_factory=list)
    network_path: list[str] = field(default_factory=list)  # for the wording

    @classmethod
    def opened(cls, token: str, start: float, subject: str, client: str | None) -> BehaviourWindow:
        return cls(token, start, start, subject, client)


_COUNTS = ("requests", "failures", "hosting", "new_ip_uses", "new_network_uses", "new_agent_uses",
           "new_country_uses", "new_resource_uses", "new_client_resource_uses", "new_scope_uses",
           "agent_changes", "device_changes", "key_changes", "network_switches", "network_returns")
_SETS = ("ips", "networks", "countries", "agents", "resources", "scopes")


def _encode_notes(n: WindowNotes) -> list[Any]:
    return [[list(x) for x in n.networks], n.agents, n.countries, n.resources, n.client_resources, n.scopes,
            [list(x) for x in n.drift]]


def _decode_notes(value: Any) -> WindowNotes:
    v = items(value, 7)
    networks = [(text(x[0]), maybe_whole(x[1]), maybe_text(x[2])) for x in (items(n, 3) for n in items(v[0]))]
    drift = [(text(x[0]), text(x[1]), text(x[2])) for x in (items(d, 3) for d in items(v[6]))]
    return WindowNotes(networks, texts(v[1]), texts(v[2]), texts(v[3]), texts(v[4]), texts(v[5]), drift)


def encode_window(w: BehaviourWindow) -> list[Any]:
    """[token, start, end, subject, client, [counts], [[sorted set]...], notes, [evidence],
    last network, networks left, network path]; sets sorted so a row's bytes are stable."""
    return [w.token, w.start, w.end, w.subject, w.client, [getattr(w, name) for name in _COUNTS],
            [sorted(getattr(w, name)) for name in _SETS], _encode_notes(w.notes),
            [_encode_record(r) for r in w.evidence], w.last_network, w.networks_left, w.network_path]


def decode_window(value: Any) -> BehaviourWindow:
    v = items(value, 12)
    window = BehaviourWindow(text(v[0]), number(v[1]), number(v[2]), text(v[3]), maybe_text(v[4]))
    for name, count in zip(_COUNTS, items(v[5], len(_COUNTS)), strict=True):
        setattr(window, name, whole(count))
    for name, used in zip(_SETS, items(v[6], len(_SETS)), strict=True):
        setattr(window, name, set(texts(used)))
    window.notes = _decode_notes(v[7])
    window.evidence = [_decode_record(r) for r in items(v[8])]
    window.last_network = maybe_text(v[9])
    window.networks_left = texts(v[10])
    window.network_path = texts(v[11])
    return window


def window_start(win: BehaviourWindow) -> float:
    """Open windows are kept in start order (``expire`` closes the due ones from the front)."""
    return win.start


WINDOW = register_codec("anomaly.window", encode_window, decode_window, order=window_start)
