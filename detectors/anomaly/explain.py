"""Why a window was unusual, in words an analyst can act on.

Which features made it unusual is measured, not guessed: for each group of
related features (rate, breadth, new resources, networks, countries, user
agents, failures, hour, scopes, device drift, roaming) the window is scored again with that group set
to the baseline's median; the drop in score is the group's contribution. The
largest contributions are then worded with the window's own facts against the
subject's or the client's baseline ("42 distinct resources in 10 min, 8x this
client's usual 5").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np

from detectors import describe
from detectors.anomaly.features import INDEX, active_hours
from detectors.anomaly.model import AnomalyModel
from detectors.anomaly.profile import BehaviourProfile
from detectors.anomaly.window import BehaviourWindow

GROUPS: dict[str, tuple[str, ...]] = {
    "rate": ("requests", "rate_ratio"),
    "breadth": ("distinct_resources", "resource_ratio"),
    "new_resources": ("new_resource_share", "new_client_resource_share"),
    "networks": ("distinct_ips", "new_ip_share", "distinct_networks", "new_network_share", "hosting_share"),
    "countries": ("distinct_countries", "new_country_share"),
    "agents": ("distinct_user_agents", "new_user_agent_share"),
    "failures": ("failure_ratio",),
    "hour": ("hour_rarity",),
    "scopes": ("scope_breadth", "new_scope_share"),
    "device": ("agent_changes", "device_changes", "key_changes"),
    "roaming": ("network_switches", "network_returns"),
}
_MIN_CONTRIBUTION = 0.005


def contributions(model: AnomalyModel, rows: np.ndarray) -> list[list[tuple[str, float]]]:
    """Per row, (group, score drop when the group is set to its baseline median), largest
    first. One scoring call for all rows and groups."""
    medians = np.asarray(model.medians)
    names = list(GROUPS)
    batch = np.repeat(rows, len(names) + 1, axis=0)
    for r in range(len(rows)):
        for g, group in enumerate(names, start=1):
            for feature in GROUPS[group]:
                batch[r * (len(names) + 1) + g, INDEX[feature]] = medians[INDEX[feature]]
    scores = model.score(batch).reshape(len(rows), len(names) + 1)
    out: list[list[tuple[str, float]]] = []
    for row in scores:
        drops = [(names[g], float(row[0] - row[g + 1])) for g in range(len(names))]
        drops.sort(key=lambda item: -item[1])
        out.append(drops)
    return out


def reasons(
    drops: list[tuple[str, float]], win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None,
    window_s: float, top: int,
) -> list[str]:
    """The wording of the ``top`` largest positive contributions (at least one)."""
    chosen = [group for group, drop in drops if drop >= _MIN_CONTRIBUTION][:top] or [drops[0][0]]
    words = [_WORDING[group](win, subj, client, window_s) for group in chosen]
    return [w for w in words if w]


def _span(window_s: float) -> str:
    return describe.duration(window_s)


def _times(value: float, usual: float) -> str:
    ratio = (value + 1e-9) / max(usual, 1e-9)
    return f"{ratio:.0f}x" if ratio >= 2 else f"{ratio:.1f}x"


def _rate(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    n, usual = win.requests, subj.usual_requests
    if n >= usual:
        return f"{describe.counted(n, 'request')} in {_span(window_s)}, {_times(n, usual)} this user's usual {usual:.0f}"
    return f"only {describe.counted(n, 'request')} in {_span(window_s)}, this user usually makes {usual:.0f}"


def _breadth(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    distinct = len(win.resources)
    if client is not None and client.windows:
        usual, whose = client.usual_resources, f"client {win.client}'s" if win.client else "the client's"
    else:
        usual, whose = subj.usual_resources, "this user's"
    return f"{distinct} distinct resources in {_span(window_s)}, {_times(distinct, usual)} {whose} usual {usual:.0f}"


def _new_resources(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    n = win.requests or 1
    parts = []
    if win.new_resource_uses:
        examples = ", ".join(win.notes.resources)
        parts.append(f"{win.new_resource_uses} of {n} requests to resources this user never used ({examples})")
    if win.new_client_resource_uses and win.client:
        examples = ", ".join(win.notes.client_resources)
        parts.append(
            f"{win.new_client_resource_uses} to resources client {win.client} never called before ({examples})"
        )
    return "; ".join(parts) or "requests only to resources this user already used"


def _networks(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    parts = []
    for _, asn, org in win.notes.networks:
        parts.append(f"first use from {describe.network(org, asn) or 'an unknown network'}")
    if win.hosting:
        parts.append(f"{win.hosting} of {win.requests} requests from hosting/VPN networks")
    if win.new_ip_uses and not win.notes.networks:
        parts.append(f"{win.new_ip_uses} of {win.requests} requests from addresses this user never used")
    if len(win.ips) > 1:
        parts.append(f"{len(win.ips)} IP addresses in {_span(window_s)}")
    return "; ".join(parts) or f"from {describe.counted(len(win.networks), 'network')} this user already used"


def _countries(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    if win.notes.countries:
        return "first use from " + ", ".join(win.notes.countries)
    return f"{describe.counted(len(win.countries), 'country', 'countries')} in {_span(window_s)}"


def _agents(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    if win.notes.agents:
        return "new user agent " + ", ".join(f"'{ua[:60]}'" for ua in win.notes.agents)
    return f"{describe.counted(len(win.agents), 'user agent')} in {_span(window_s)}"


def _failures(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    n = win.requests or 1
    return f"{win.failures} of {win.requests} requests rejected ({win.failures / n:.0%})"


def _hour(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    at = datetime.fromtimestamp(win.start, tz=timezone.utc).strftime("%H:%M")
    span = active_hours(subj.hours)
    if span is None:
        return f"{at} UTC"
    return f"{at} UTC, user normally active {span[0]:02d}–{span[1]:02d} UTC"


def _scopes(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    fresh = win.notes.scopes
    text = f"{len(win.scopes)} distinct scopes required"
    if fresh:
        text += ", never needed before by this user: " + ", ".join(fresh)
    return text


_DRIFT_WORDS = {"agent": "browser/OS", "device": "device id", "key": "DPoP/mTLS key"}


def _drift_count(win: BehaviourWindow, name: str) -> int:
    return {"agent": win.agent_changes, "device": win.device_changes, "key": win.key_changes}[name]


def _device(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    """"browser/OS changed inside the session: Firefox on Windows → Chrome on Linux; DPoP/mTLS
    key changed inside the session (2x): dpop:3q2+7w… → dpop:Nz9c1f…"."""
    parts = []
    for name, before, after in win.notes.drift:
        count = _drift_count(win, name)
        times = f" ({count}x)" if count > 1 else ""
        if name != "agent":  # ids and key thumbprints: a prefix tells them apart
            before, after = f"{str(before)[:12]}…", f"{str(after)[:12]}…"
        parts.append(f"{_DRIFT_WORDS[name]} changed inside the session{times}: {before} → {after}")
    return "; ".join(parts) or "no device change inside the session"


def _roaming(
    win: BehaviourWindow, subj: BehaviourProfile, client: BehaviourProfile | None, window_s: float
) -> str:
    path = " → ".join(win.network_path)
    if win.network_returns:
        return (f"network interleaving: {win.network_switches} switches, {win.network_returns} back to a network "
                f"already left in {_span(window_s)} ({path})")
    if win.network_switches:
        handovers = describe.counted(win.network_switches, "one-way network handover")
        return f"{handovers} in {_span(window_s)} ({path})"
    return "one network throughout"


_WORDING: dict[str, Callable[[BehaviourWindow, BehaviourProfile, BehaviourProfile | None, float], str]] = {
    "rate": _rate,
    "breadth": _breadth,
    "new_resources": _new_resources,
    "networks": _networks,
    "countries": _countries,
    "agents": _agents,
    "failures": _failures,
    "hour": _hour,
    "scopes": _scopes,
    "device": _device,
    "roaming": _roaming,
}
