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

from detectors.anomaly.features import INDEX, Profile, Window, active_hours
from detectors.anomaly.model import AnomalyModel

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
    drops: list[tuple[str, float]], win: Window, subj: Profile, client: Profile | None, window_s: float, top: int
) -> list[str]:
    """The wording of the ``top`` largest positive contributions (at least one)."""
    chosen = [group for group, drop in drops if drop >= _MIN_CONTRIBUTION][:top] or [drops[0][0]]
    words = [_WORDING[group](win, subj, client, window_s) for group in chosen]
    return [w for w in words if w]


def _span(window_s: float) -> str:
    return f"{window_s / 60:g} min" if window_s < 3600 else f"{window_s / 3600:g} h"


def _times(value: float, usual: float) -> str:
    ratio = (value + 1e-9) / max(usual, 1e-9)
    return f"{ratio:.0f}x" if ratio >= 2 else f"{ratio:.1f}x"


def _rate(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    n, usual = win["n"], subj["n"]
    if n >= usual:
        return f"{n} requests in {_span(window_s)}, {_times(n, usual)} this user's usual {usual:.0f}"
    return f"only {n} requests in {_span(window_s)}, this user usually makes {usual:.0f}"


def _breadth(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    distinct = len(win["res"])
    if client is not None and client["w"]:
        usual, whose = client["r"], f"client {win['cli']}'s" if win["cli"] else "the client's"
    else:
        usual, whose = subj["r"], "this user's"
    return f"{distinct} distinct resources in {_span(window_s)}, {_times(distinct, usual)} {whose} usual {usual:.0f}"


def _new_resources(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    n = win["n"] or 1
    parts = []
    if win["nres"]:
        examples = ", ".join(win["notes"]["res"])
        parts.append(f"{win['nres']} of {n} requests to resources this user never used ({examples})")
    if win["ncres"] and win["cli"]:
        examples = ", ".join(win["notes"]["cres"])
        parts.append(f"{win['ncres']} to resources client {win['cli']} never called before ({examples})")
    return "; ".join(parts) or "requests only to resources this user already used"


def _networks(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    parts = []
    for _, asn, org in win["notes"]["net"]:
        name = " ".join(str(x) for x in (f"AS {asn}" if asn else None, org) if x)
        parts.append(f"first use from {name}")
    if win["host"]:
        parts.append(f"{win['host']} of {win['n']} requests from hosting/VPN networks")
    if win["nip"] and not win["notes"]["net"]:
        parts.append(f"{win['nip']} of {win['n']} requests from addresses this user never used")
    if len(win["ips"]) > 1:
        parts.append(f"{len(win['ips'])} IP addresses in {_span(window_s)}")
    return "; ".join(parts) or f"from {len(win['nets'])} network(s) this user already used"


def _countries(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    if win["notes"]["cc"]:
        return "first use from " + ", ".join(win["notes"]["cc"])
    return f"{len(win['cc'])} countries in {_span(window_s)}"


def _agents(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    if win["notes"]["ua"]:
        return "new user agent " + ", ".join(f"'{ua[:60]}'" for ua in win["notes"]["ua"])
    return f"{len(win['ua'])} user agents in {_span(window_s)}"


def _failures(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    n = win["n"] or 1
    return f"{win['f']} of {win['n']} requests rejected ({win['f'] / n:.0%})"


def _hour(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    at = datetime.fromtimestamp(win["s"], tz=timezone.utc).strftime("%H:%M")
    span = active_hours(subj["h"])
    if span is None:
        return f"{at} UTC"
    return f"{at} UTC, user normally active {span[0]:02d}–{span[1]:02d} UTC"


def _scopes(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    fresh = win["notes"]["sc"]
    text = f"{len(win['sc'])} distinct scopes required"
    if fresh:
        text += ", never needed before by this user: " + ", ".join(fresh)
    return text


_DRIFT_WORDS = {"agent": ("dua", "browser/OS"), "device": ("ddev", "device id"), "key": ("dkey", "DPoP/mTLS key")}


def _device(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    """"browser/OS changed inside the session: Firefox on Windows → Chrome on Linux; DPoP/mTLS
    key changed inside the session (2x): dpop:3q2+7w… → dpop:Nz9c1f…"."""
    parts = []
    for name, before, after in win["notes"].get("drift", []):
        counter, what = _DRIFT_WORDS[name]
        times = f" ({win[counter]}x)" if win.get(counter, 0) > 1 else ""
        if name != "agent":  # ids and key thumbprints: a prefix tells them apart
            before, after = f"{str(before)[:12]}…", f"{str(after)[:12]}…"
        parts.append(f"{what} changed inside the session{times}: {before} → {after}")
    return "; ".join(parts) or "no device change inside the session"


def _roaming(win: Window, subj: Profile, client: Profile | None, window_s: float) -> str:
    path = " → ".join(win.get("path", []))
    if win.get("nret"):
        return (f"network interleaving: {win['nsw']} switches, {win['nret']} back to a network already left "
                f"in {_span(window_s)} ({path})")
    if win.get("nsw"):
        return f"{win['nsw']} one-way network handover(s) in {_span(window_s)} ({path})"
    return "one network throughout"


_WORDING: dict[str, Callable[[Window, Profile, Profile | None, float], str]] = {
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
