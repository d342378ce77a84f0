"""Behaviour features of one token's activity window, computed as events arrive.

A window opens at a token's first use and closes ``window_s`` later (event
time). Each ``used`` event updates its window in place (counts, distinct sets,
how many requests were new for the subject or the client), so closing a window
costs a few arithmetic steps, never a look back at history. Features compare
the window with two baselines kept beside it: the subject's profile (hours,
networks, user agents, countries, resources, scopes, usual request count) and
the client's (resources, usual breadth). The window and the profiles are the
detector's table rows (``window.BehaviourWindow``, ``profile.BehaviourProfile``).

Two kinds of change *inside* a window are counted as well. Device drift: a use whose
browser family/OS, device id or DPoP/mTLS key differs from the previous use of the
same session (or token, when no session is known), as Okta's session protection
re-evaluates a session on a device-context change (``detectors.device``). Roaming:
switches between networks, and returns to a network the token had left; a phone
handing over from home to its carrier is one switch and no return, a token shared
between two places (A, B, A) returns.

The feature list is versioned by its names: a model file records the names it was
trained on, and ``model.load`` refuses a file whose list differs (retrain).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import TypeVar

from detectors.anomaly.profile import USED, BehaviourProfile
from detectors.anomaly.window import BehaviourWindow, EvidenceRecord
from detectors.device import DeviceContext, drift
from schemas.events import CanonicalEvent

FEATURES: tuple[str, ...] = (
    "requests",                   # log1p(requests in the window)
    "rate_ratio",                 # log2 of requests vs the subject's usual per window
    "distinct_resources",         # log1p(distinct resources)
    "resource_ratio",             # log2 of distinct resources vs the client's usual per window
    "new_resource_share",         # share of requests to resources the subject never used
    "new_client_resource_share",  # share of requests to resources the client never called
    "distinct_ips",
    "distinct_networks",
    "distinct_countries",
    "distinct_user_agents",
    "new_ip_share",               # share of requests from addresses new for the subject
    "new_network_share",          # share of requests from networks new for the subject
    "new_user_agent_share",
    "new_country_share",
    "hosting_share",              # share of requests from hosting/VPN/Tor networks
    "failure_ratio",
    "hour_rarity",                # 1 = the subject is never active at this hour, 0 = usual hour
    "scope_breadth",              # distinct scopes the requests required
    "new_scope_share",            # share of requests requiring a scope the subject never needed
    "agent_changes",              # uses whose browser family/OS differs from the session's previous use
    "device_changes",             # uses whose device id differs from the session's previous use
    "key_changes",                # uses whose proven DPoP/mTLS key differs from the session's previous use
    "network_switches",           # changes of network between consecutive uses of the token
    "network_returns",            # switches back to a network the token had left (interleaving)
)
INDEX = {name: i for i, name in enumerate(FEATURES)}

T = TypeVar("T")

_ID_SEGMENT = re.compile(r"^(\d+|[0-9a-fA-F-]{8,}|[A-Za-z0-9_-]{20,})$")
_MAX_NOTES = 3  # new networks / agents / resources remembered per window for the wording
_MAX_EVIDENCE = 6
_MAX_PATH = 6  # networks of the window's switch sequence kept for the wording
_MAX_LEFT = 16  # networks a window remembers having left (to count returns)


@lru_cache(maxsize=65_536)
def resource_key(method: str | None, path: str | None) -> str | None:
    """A request's resource with ids folded ("GET /orders/{id}"), so novelty means a new
    kind of resource, not a new order number; query strings dropped."""
    if not path:
        return None
    path = path.split("?", 1)[0]
    parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/")[:5]]
    return f"{method or 'GET'} {'/'.join(parts)}"


def update_window(
    win: BehaviourWindow, event: CanonicalEvent, subj: BehaviourProfile | None, client: BehaviourProfile | None,
    previous: DeviceContext | None = None,
) -> DeviceContext:
    """Fold one ``used`` event into its window, judging novelty against the profiles as
    they are now (profiles learn only when windows close) and device drift against
    ``previous``, the device context of the session's (or token's) previous use.
    Returns this use's device context, for the caller to remember as the next previous."""
    net = event.network
    when = event.epoch
    if when > win.end:
        win.end = when
    win.requests += 1
    if not event.succeeded:
        win.failures += 1
    if net.hosting:
        win.hosting += 1
    notes = win.notes
    new_for_subject = False
    ip = net.ip or net.service
    if ip:
        win.ips.add(ip)
        if subj is not None and ip not in subj.ips:
            win.new_ip_uses += 1
    network = f"AS{net.asn}" if net.asn else (net.as_org.casefold() if net.as_org else None)
    if network:
        win.networks.add(network)
        if subj is not None and network not in subj.networks:
            win.new_network_uses += 1
            new_for_subject = _note(notes.networks, (network, net.asn, net.as_org)) or new_for_subject
        new_for_subject = _roam(win, network) or new_for_subject
    country = net.geo.country if net.geo else None
    if country:
        win.countries.add(country)
        if subj is not None and country not in subj.countries:
            win.new_country_uses += 1
            new_for_subject = _note(notes.countries, country) or new_for_subject
    agent = net.user_agent
    if agent:
        win.agents.add(agent)
        if subj is not None and agent not in subj.agents:
            win.new_agent_uses += 1
            new_for_subject = _note(notes.agents, agent) or new_for_subject
    req = event.request
    resource = resource_key(req.method, req.resource) if req is not None else None
    if resource:
        win.resources.add(resource)
        if subj is not None and resource not in subj.resources:
            win.new_resource_uses += 1
            _note(notes.resources, resource)
        if client is not None and resource not in client.resources:
            win.new_client_resource_uses += 1
            _note(notes.client_resources, resource)
    scopes = event.required_scopes
    if scopes:
        win.scopes.update(scopes)
        if subj is not None:
            fresh = [s for s in scopes if s not in subj.scopes]
            if fresh:
                win.new_scope_uses += 1
                for scope in fresh:
                    _note(notes.scopes, scope)
    context = DeviceContext.of(event)
    if previous is not None:
        for name in drift(previous, context):
            _count_drift(win, name)
            before, after = getattr(previous, name), getattr(context, name)
            new_for_subject = _note(notes.drift, (name, before, after)) or new_for_subject
    # Records are built only for the first event and novelties (the hot path stays cheap);
    # the latest of them is the alert's trigger.
    if not win.evidence or (new_for_subject and len(win.evidence) < _MAX_EVIDENCE):
        win.evidence.append(EvidenceRecord.of(event))
    return context


def _count_drift(win: BehaviourWindow, name: str) -> None:
    if name == "agent":
        win.agent_changes += 1
    elif name == "device":
        win.device_changes += 1
    else:
        win.key_changes += 1


def _roam(win: BehaviourWindow, network: str) -> bool:
    """Count a switch from the window's last network, and a return when the token goes
    back to a network it had left; True when this use switched."""
    last = win.last_network
    win.last_network = network
    if last is None or last == network:
        if last is None:
            win.network_path.append(network)
        return False
    win.network_switches += 1
    left = win.networks_left
    if network in left:
        win.network_returns += 1
    if last not in left and len(left) < _MAX_LEFT:
        left.append(last)
    if len(win.network_path) < _MAX_PATH:
        win.network_path.append(network)
    return True


def _note(notes: list[T], value: T) -> bool:
    """Remember a novelty once; True when it was not noted yet."""
    if value in notes or len(notes) >= _MAX_NOTES:
        return False
    notes.append(value)
    return True


def vector(win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None) -> list[float]:
    """The window's features, in ``FEATURES`` order."""
    n = win.requests or 1
    distinct_res = len(win.resources)
    known_client = client is not None and client.windows > 0
    client_breadth = client.usual_resources if client is not None and known_client else distinct_res
    return [
        math.log1p(win.requests),
        math.log2((win.requests + 1) / (subj.usual_requests + 1)),
        math.log1p(distinct_res),
        math.log2((distinct_res + 1) / (client_breadth + 1)),
        win.new_resource_uses / n,
        win.new_client_resource_uses / n if known_client else 0.0,
        float(len(win.ips)),
        float(len(win.networks)),
        float(len(win.countries)),
        float(len(win.agents)),
        win.new_ip_uses / n,
        win.new_network_uses / n,
        win.new_agent_uses / n,
        win.new_country_uses / n,
        win.hosting / n,
        win.failures / n,
        hour_rarity(subj.hours, hour_of(win.start)),
        float(len(win.scopes)),
        win.new_scope_uses / n,
        float(win.agent_changes),
        float(win.device_changes),
        float(win.key_changes),
        float(win.network_switches),
        float(win.network_returns),
    ]


def hour_of(epoch: float) -> int:
    return int(epoch // 3600) % 24


def hour_rarity(hours: list[float], hour: int, prior: float = 0.5) -> float:
    """1 minus the subject's activity in hour±1 relative to a uniform day (clipped at 0).
    A pseudo-count per hour keeps a young profile close to uniform (no verdict yet)."""
    total = sum(hours) + 24 * prior
    near = hours[(hour - 1) % 24] + hours[hour] + hours[(hour + 1) % 24] + 3 * prior
    return max(0.0, 1.0 - (near / total) / (3 / 24))


def active_hours(hours: list[float]) -> tuple[int, int] | None:
    """The subject's usual span of hours (UTC): the shortest circular span holding the
    hours with at least a quarter of the busiest hour's activity; (start, end) exclusive."""
    peak = max(hours) if hours else 0.0
    if peak <= 0:
        return None
    busy = [h for h in range(24) if hours[h] >= peak / 4]
    best: tuple[int, int] | None = None
    for start in busy:  # the span starting at each busy hour that covers all of them
        length = max((h - start) % 24 for h in busy) + 1
        if best is None or length < best[1]:
            best = (start, length)
    assert best is not None
    return best[0], (best[0] + best[1]) % 24


def learn(profile: BehaviourProfile, win: BehaviourWindow, used: tuple[str, ...], max_items: int,
          decay: float) -> None:
    """Teach a profile one closed window: usual counts (a running mean that becomes an
    exponential one), the hour, and what was used (most recently used kept first out).
    ``used`` names the window's sets the profile remembers (``SUBJECT_USED``/``CLIENT_USED``)."""
    profile.windows += 1
    alpha = max(1.0 / profile.windows, 1.0 - decay)
    profile.usual_requests += alpha * (win.requests - profile.usual_requests)
    profile.usual_resources += alpha * (len(win.resources) - profile.usual_resources)
    profile.last_window_end = max(profile.last_window_end, win.end)
    hours = profile.hours
    for h in range(24):
        hours[h] *= decay
    hours[hour_of(win.start)] += 1.0
    when = win.end
    for name in used:
        seen: dict[str, float] = getattr(profile, name)
        values: set[str] = getattr(win, name)
        for value in values:
            seen.pop(value, None)
            seen[value] = when
        while len(seen) > max_items:
            del seen[next(iter(seen))]


SUBJECT_USED = USED
CLIENT_USED = ("resources",)
