"""Behaviour features of one token's activity window, computed as events arrive.

A window opens at a token's first use and closes ``window_s`` later (event
time). Each ``used`` event updates its window in place (counts, distinct sets,
how many requests were new for the subject or the client), so closing a window
costs a few arithmetic steps, never a look back at history. Features compare
the window with two baselines kept beside it: the subject's profile (hours,
networks, user agents, countries, resources, scopes, usual request count) and
the client's (resources, usual breadth). Everything here is plain dicts, sets
and lists, so it snapshots with the rest of the state (``state_codec.pack``).

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
from typing import Any

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

Window = dict[str, Any]
Profile = dict[str, Any]
Record = list[Any]  # an evidence record, see ``record``

_ID_SEGMENT = re.compile(r"^(\d+|[0-9a-fA-F-]{8,}|[A-Za-z0-9_-]{20,})$")
_MAX_NOTES = 3  # new networks / agents / resources remembered per window for the wording
_MAX_EVIDENCE = 6
_MAX_PATH = 6  # networks of the window's switch sequence kept for the wording


@lru_cache(maxsize=65_536)
def resource_key(method: str | None, path: str | None) -> str | None:
    """A request's resource with ids folded ("GET /orders/{id}"), so novelty means a new
    kind of resource, not a new order number; query strings dropped."""
    if not path:
        return None
    path = path.split("?", 1)[0]
    parts = ["{id}" if _ID_SEGMENT.match(p) else p for p in path.split("/")[:5]]
    return f"{method or 'GET'} {'/'.join(parts)}"


def record(event: CanonicalEvent) -> Record:
    """What an alert needs of one event to cite it (and to stand for the window)."""
    net, geo, req = event.network, event.network.geo, event.request
    tok = event.token
    return [
        event.event_id, event.epoch, event.source, tok.id if tok else None,
        tok.family_id if tok else None, tok.type.value if tok else None,
        event.subject.id if event.subject else None, event.client_id, event.session_id,
        net.ip, net.asn, net.as_org, geo.country if geo else None, geo.city if geo else None,
        net.hosting, net.user_agent, event.succeeded, req.id if req else None,
        list(event.scopes), req.method if req else None, req.resource if req else None,
    ]


def new_window(start: float, subject: str | None, client: str | None) -> Window:
    return {
        "s": start, "e": start, "sub": subject, "cli": client,
        "n": 0, "f": 0, "host": 0, "nip": 0, "nnet": 0, "nua": 0, "ncc": 0, "nres": 0, "ncres": 0, "nsc": 0,
        "ips": set(), "nets": set(), "cc": set(), "ua": set(), "res": set(), "sc": set(),
        "notes": {"net": [], "ua": [], "cc": [], "res": [], "cres": [], "sc": [], "drift": []},
        "ev": [],
        **_drift_counters(),
    }


def _drift_counters() -> Window:
    """Counters of change inside a window: agent/device/key changes, network switches and
    returns, the last network, the networks left, and the switch path for the wording."""
    return {"dua": 0, "ddev": 0, "dkey": 0, "nsw": 0, "nret": 0, "lnet": None, "left": [], "path": []}


def _current(win: Window) -> Window:
    """A window restored from a checkpoint of the version before the drift counters."""
    if "nsw" not in win:
        win.update(_drift_counters())
        win["notes"].setdefault("drift", [])
    return win


def new_profile(since: float | None = None) -> Profile:
    """Subject or client baseline: windows seen, usual requests and breadth per window,
    activity per hour of day (UTC), what it has used (key -> last seen), and when its
    first window started (``since``: the learning period counts from there)."""
    return {"w": 0, "n": 0.0, "r": 0.0, "t": 0.0, "h": [0.0] * 24, "since": since,
            "ip": {}, "net": {}, "ua": {}, "cc": {}, "res": {}, "sc": {}}


def history_s(profile: Profile, when: float) -> float | None:
    """How long before ``when`` the profile's first window started; None for a profile
    kept by an earlier version, which did not record it (it has history already)."""
    since = profile.get("since")
    return None if since is None else when - since


def update_window(
    win: Window, event: CanonicalEvent, subj: Profile | None, client: Profile | None,
    previous: DeviceContext | list[str | None] | None = None,
) -> DeviceContext:
    """Fold one ``used`` event into its window, judging novelty against the profiles as
    they are now (profiles learn only when windows close) and device drift against
    ``previous``, the device context of the session's (or token's) previous use.
    Returns this use's device context, for the caller to remember as the next previous."""
    _current(win)
    net = event.network
    when = event.epoch
    if when > win["e"]:
        win["e"] = when
    win["n"] += 1
    if not event.succeeded:
        win["f"] += 1
    if net.hosting:
        win["host"] += 1
    notes = win["notes"]
    new_for_subject = False
    ip = net.ip or net.service
    if ip:
        win["ips"].add(ip)
        if subj is not None and ip not in subj["ip"]:
            win["nip"] += 1
    network = f"AS{net.asn}" if net.asn else (net.as_org.casefold() if net.as_org else None)
    if network:
        win["nets"].add(network)
        if subj is not None and network not in subj["net"]:
            win["nnet"] += 1
            new_for_subject = _note(notes["net"], [network, net.asn, net.as_org]) or new_for_subject
        new_for_subject = _roam(win, network) or new_for_subject
    country = net.geo.country if net.geo else None
    if country:
        win["cc"].add(country)
        if subj is not None and country not in subj["cc"]:
            win["ncc"] += 1
            new_for_subject = _note(notes["cc"], country) or new_for_subject
    agent = net.user_agent
    if agent:
        win["ua"].add(agent)
        if subj is not None and agent not in subj["ua"]:
            win["nua"] += 1
            new_for_subject = _note(notes["ua"], agent) or new_for_subject
    req = event.request
    resource = resource_key(req.method, req.resource) if req is not None else None
    if resource:
        win["res"].add(resource)
        if subj is not None and resource not in subj["res"]:
            win["nres"] += 1
            _note(notes["res"], resource)
        if client is not None and resource not in client["res"]:
            win["ncres"] += 1
            _note(notes["cres"], resource)
    scopes = event.required_scopes
    if scopes:
        win["sc"].update(scopes)
        if subj is not None:
            fresh = [s for s in scopes if s not in subj["sc"]]
            if fresh:
                win["nsc"] += 1
                for scope in fresh:
                    _note(notes["sc"], scope)
    context = DeviceContext.of(event)
    if previous is not None:
        for name in drift(previous, context):
            win[_DRIFT_COUNTER[name]] += 1
            before = previous[("agent", "device", "key").index(name)]
            new_for_subject = _note(notes["drift"], [name, before, getattr(context, name)]) or new_for_subject
    # Records are built only for the first event and novelties (the hot path stays cheap);
    # the latest of them is the alert's trigger.
    if not win["ev"] or (new_for_subject and len(win["ev"]) < _MAX_EVIDENCE):
        win["ev"].append(record(event))
    return context


_DRIFT_COUNTER = {"agent": "dua", "device": "ddev", "key": "dkey"}


def _roam(win: Window, network: str) -> bool:
    """Count a switch from the window's last network, and a return when the token goes
    back to a network it had left; True when this use switched."""
    last = win["lnet"]
    win["lnet"] = network
    if last is None or last == network:
        if last is None:
            win["path"].append(network)
        return False
    win["nsw"] += 1
    left: list[str] = win["left"]
    if network in left:
        win["nret"] += 1
    if last not in left and len(left) < 16:
        left.append(last)
    if len(win["path"]) < _MAX_PATH:
        win["path"].append(network)
    return True


def _note(notes: list[Any], value: Any) -> bool:
    """Remember a novelty once; True when it was not noted yet."""
    if value in notes or len(notes) >= _MAX_NOTES:
        return False
    notes.append(value)
    return True


def vector(win: Window, subj: Profile, client: Profile | None) -> list[float]:
    """The window's features, in ``FEATURES`` order."""
    _current(win)
    n = win["n"] or 1
    distinct_res = len(win["res"])
    client_breadth = client["r"] if client is not None and client["w"] else distinct_res
    return [
        math.log1p(win["n"]),
        math.log2((win["n"] + 1) / (subj["n"] + 1)),
        math.log1p(distinct_res),
        math.log2((distinct_res + 1) / (client_breadth + 1)),
        win["nres"] / n,
        win["ncres"] / n if client is not None and client["w"] else 0.0,
        float(len(win["ips"])),
        float(len(win["nets"])),
        float(len(win["cc"])),
        float(len(win["ua"])),
        win["nip"] / n,
        win["nnet"] / n,
        win["nua"] / n,
        win["ncc"] / n,
        win["host"] / n,
        win["f"] / n,
        hour_rarity(subj["h"], hour_of(win["s"])),
        float(len(win["sc"])),
        win["nsc"] / n,
        float(win["dua"]),
        float(win["ddev"]),
        float(win["dkey"]),
        float(win["nsw"]),
        float(win["nret"]),
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


def learn(profile: Profile, win: Window, keys: tuple[str, ...], max_items: int, decay: float) -> None:
    """Teach a profile one closed window: usual counts (a running mean that becomes an
    exponential one), the hour, and what was used (most recently used kept first out)."""
    profile["w"] += 1
    alpha = max(1.0 / profile["w"], 1.0 - decay)
    profile["n"] += alpha * (win["n"] - profile["n"])
    profile["r"] += alpha * (len(win["res"]) - profile["r"])
    profile["t"] = max(profile["t"], win["e"])
    hours = profile["h"]
    for h in range(24):
        hours[h] *= decay
    hours[hour_of(win["s"])] += 1.0
    when = win["e"]
    for key in keys:
        seen: dict[str, float] = profile[key]
        for value in win[_WINDOW_SET[key]]:
            seen.pop(value, None)
            seen[value] = when
        while len(seen) > max_items:
            del seen[next(iter(seen))]


_WINDOW_SET = {"ip": "ips", "net": "nets", "ua": "ua", "cc": "cc", "res": "res", "sc": "sc"}
SUBJECT_KEYS = ("ip", "net", "ua", "cc", "res", "sc")
CLIENT_KEYS = ("res",)
