"""A subject's or client's behaviour baseline, and its changelog codec.

Profiles learn only when a window closes (``features.learn`` changes one in place, so
the detector marks the row changed). Subjects are kept in ``anomaly/subject_profiles``,
clients in ``anomaly/client_profiles``, both keyed by id and forgotten when idle for
``profile_ttl_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.anomaly.plain import items, last_seen, maybe_number, number, whole
from detectors.tables import register_codec


def _no_hours() -> list[float]:
    return [0.0] * 24


@dataclass(slots=True)
class BehaviourProfile:
    """Windows learnt, usual requests and distinct resources per window (a running mean
    that becomes an exponential one), activity per hour of day (UTC), and what was used
    (value -> when last seen, least recently used first)."""

    first_window_start: float | None  # the learning period counts from here; None: kept by an older version
    windows: int = 0
    usual_requests: float = 0.0
    usual_resources: float = 0.0
    last_window_end: float = 0.0
    hours: list[float] = field(default_factory=_no_hours)
    ips: dict[str, float] = field(default_factory=dict)
    networks: dict[str, float] = field(default_factory=dict)
    agents: dict[str, float] = field(default_factory=dict)
    countries: dict[str, float] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)
    scopes: dict[str, float] = field(default_factory=dict)

    def history_s(self, when: float) -> float | None:
        """How long before ``when`` the first window started (None: not recorded)."""
        return None if self.first_window_start is None else when - self.first_window_start


USED = ("ips", "networks", "agents", "countries", "resources", "scopes")
"""What a profile remembers having been used; a window's sets of the same names feed it."""


def encode_profile(p: BehaviourProfile) -> list[Any]:
    """[first window start, windows, usual requests, usual resources, last window end,
    [24 hours], {ip: seen}, {network: seen}, {agent: seen}, {country: seen}, {resource: seen},
    {scope: seen}] (objects keep their least-recently-used order)."""
    return [p.first_window_start, p.windows, p.usual_requests, p.usual_resources, p.last_window_end, p.hours,
            p.ips, p.networks, p.agents, p.countries, p.resources, p.scopes]


def decode_profile(value: Any) -> BehaviourProfile:
    v = items(value, 12)
    hours = [number(h) for h in items(v[5], 24)]
    return BehaviourProfile(
        maybe_number(v[0]), whole(v[1]), number(v[2]), number(v[3]), number(v[4]), hours,
        *(last_seen(used) for used in v[6:12]),
    )


def last_learnt(profile: BehaviourProfile) -> float:
    """Profiles are kept in the order last learnt (pruning stops at the first fresh one)."""
    return profile.last_window_end


PROFILE = register_codec("anomaly.profile", encode_profile, decode_profile, order=last_learnt)
