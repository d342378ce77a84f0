"""Concurrent use: two holders of one token, told apart from one holder moving.

One device changes networks one way: a phone leaves home Wi-Fi for its carrier, a
laptop connects the corporate VPN, and the old network is not seen again a moment
later. Two holders interleave: the token is used from A, then B, then A again within
the window (``interleaved``), however the events arrive. A move that no single
device makes is also a second holder at once: to a hosting, anonymising or
reputation-listed network (``anonymising``), to another country (``country``),
further than anyone could travel (``travel``), or through three networks in one
window (``networks``). A change of device (user-agent family/OS, device id,
proven key; ``detectors.device``) between two uses is evidence, and a second
holder only together with a change of network (``drift``).

Each token that changed network keeps a short ``Timeline`` of runs (consecutive
uses from one place, first and last use), bounded in length and in time, so the
thief cannot push the victim's last use out of it by rotating addresses. A use that
arrives after later ones is judged among every use still known around it (``around``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from detectors.device import DeviceContext, drift
from detectors.geo import effective_distance_km, haversine_km, speed_kmh
from detectors.observation_codec import decode_observation, encode_observation
from detectors.state import Observation, network_facts
from detectors.tables import register_codec
from schemas.events import Network

MAX_RUNS = 6  # runs kept per token: A,B,A,B needs four; older runs fall out by time first
DEFAULT_ACCURACY_KM = 50.0  # geolocation error radius assumed when an event carries none
# Egress classes (``Network.net_class``) whose address is not where the user is.
_SHARED_EGRESS = frozenset({"relay", "in_flight"})
_NOT_LOCATED = frozenset({"relay", "in_flight", "provider"})
PRIORITY = ("interleaved", "anonymising", "travel", "country", "networks", "drift")


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive accepted uses of one token from one place."""

    place: str
    first: Observation
    last: Observation


@dataclass(frozen=True, slots=True)
class Timeline:
    """Recent runs of one token in event-time order, and how often it roamed."""

    runs: tuple[Run, ...]
    handovers: int  # one-way changes of network recorded as roaming, not alerted
    newest: float


def _encode_timeline(timeline: Timeline) -> list[Any]:
    runs = [[run.place, encode_observation(run.first), encode_observation(run.last)] for run in timeline.runs]
    return [runs, timeline.handovers, timeline.newest]


def _decode_timeline(data: Any) -> Timeline:
    runs, handovers, newest = data
    decoded = []
    for place, first, last in runs:
        if type(place) is not str:
            raise TypeError("a run's place must be a string")
        decoded.append(Run(place, decode_observation(first), decode_observation(last)))
    if type(handovers) is not int or type(newest) not in (int, float):
        raise TypeError("bad timeline counters")
    return Timeline(tuple(decoded), handovers, float(newest))


TIMELINE = register_codec("concurrency.timeline", _encode_timeline, _decode_timeline)


@dataclass(frozen=True, slots=True)
class Match:
    """Why one token has two holders: the uses that show it, oldest first (the decision;
    ``detectors.concurrency_words`` words it)."""

    reason: str
    uses: tuple[Observation, ...]
    gap_s: float
    drift: tuple[str, ...] = ()
    speed_kmh: float | None = None


def place_of(obs: Observation) -> str | None:
    """The network a use came from, as compared between uses; None = not a holder's place.

    A provider's own infrastructure acts for the user (never a second holder); an
    allowlisted egress is one place whatever its uplink; a relay or in-flight network
    is one place whatever AS it egresses from; else the AS (unknown: no place)."""
    return _place(obs.net_class, obs.egress, obs.net)


def network_place(net: Network) -> str | None:
    """``place_of`` the observation of an event on ``net``, without building the observation
    (most accepted uses need only their place)."""
    facts = network_facts(net)
    return _place(facts.net_class, facts.egress, facts.net)


def _place(net_class: str | None, egress: str | None, network: str | None) -> str | None:
    if net_class == "provider":
        return None
    if egress:
        return f"egress:{egress}"
    if net_class in _SHARED_EGRESS:
        return f"class:{net_class}"
    return network


def anonymising(obs: Observation) -> bool:
    """A hosting, VPN, Tor or reputation-listed network, unless the operator named it."""
    if obs.egress or obs.net_class in _SHARED_EGRESS:
        return False
    return obs.net_class == "reputation" or bool(obs.hosting)


def _located(obs: Observation) -> bool:
    """Whether the address says where the holder is (not an egress that stands for others)."""
    return not obs.egress and obs.net_class not in _NOT_LOCATED


def device_drift(a: Observation, b: Observation, keys: bool) -> tuple[str, ...]:
    """Device facts that changed between two uses (the key only for tokens not bound to one)."""
    changed = drift(DeviceContext(a.agent, a.device, a.binding if keys else None),
                    DeviceContext(b.agent, b.device, b.binding if keys else None))
    return tuple(changed)


# -- timeline --------------------------------------------------------------------------
def seed(uses: list[Observation] | tuple[Observation, ...], horizon: float) -> tuple[Run, ...]:
    """Runs from the token's recent accepted uses (time-sorted), from ``horizon`` on."""
    runs: tuple[Run, ...] = ()
    for use in uses:
        place = place_of(use)
        if place is not None and use.time >= horizon:
            runs, _ = insert(runs, use, place)
    return runs


def around(runs: tuple[Run, ...], uses: Iterable[Observation], late: Observation,
           reach: float) -> tuple[Run, ...]:
    """Runs within ``reach`` of a ``late`` use, rebuilt in time order with it from every use
    still known: the timeline's run ends and the token's recent history.

    A run keeps only its first and last use, and the timeline only reaches back twice
    the window before its newest use; a use filed late into them would be judged without
    the neighbours that show it between two uses of one other network, so a thief whose
    requests are logged by a slow source would never be seen taking turns."""
    by_id = {obs.event_id: obs for run in runs for obs in (run.first, run.last)}
    by_id.update((use.event_id, use) for use in uses)
    by_id[late.event_id] = late
    return seed(sorted((obs for obs in by_id.values() if abs(obs.time - late.time) <= reach), key=_time),
                late.time - reach)


def insert(runs: tuple[Run, ...], obs: Observation, place: str) -> tuple[tuple[Run, ...], bool]:
    """``runs`` with ``obs`` filed in time order, and whether it opened a new run at the end
    after another place (a handover as it happened, not one reconstructed late)."""
    t = obs.time
    out = list(runs)
    k = 0
    while k < len(out) and out[k].last.time <= t:
        k += 1
    # out[:k] end at or before t; out[k] (if any) ends after t.
    if k < len(out) and out[k].first.time < t:  # inside run k
        run = out[k]
        if run.place != place:  # a use of another place splits it
            out[k:k + 1] = [Run(run.place, run.first, run.first), Run(place, obs, obs),
                            Run(run.place, run.last, run.last)]
        return tuple(out), False
    if k > 0 and out[k - 1].place == place:
        out[k - 1] = replace(out[k - 1], last=obs)
        return tuple(out), False
    if k < len(out) and out[k].place == place:
        out[k] = replace(out[k], first=obs)
        return tuple(out), False
    out.insert(k, Run(place, obs, obs))
    return tuple(out), k == len(out) - 1 and k > 0


def trim(runs: tuple[Run, ...], horizon: float) -> tuple[Run, ...]:
    """Drop runs that ended before ``horizon``, then the oldest beyond ``MAX_RUNS``."""
    start = 0
    while start < len(runs) - 1 and runs[start].last.time < horizon:
        start += 1
    return runs[max(start, len(runs) - MAX_RUNS):]


# -- decision --------------------------------------------------------------------------
def judge(runs: tuple[Run, ...], current: Observation, window: float, max_speed_kmh: float,
          keys: bool) -> Match | None:
    """The strongest reason, if any, why ``current`` and the uses around it have two holders."""
    index = next((i for i, run in enumerate(runs) if run.first is current or run.last is current
                  or (run.first.time <= current.time <= run.last.time and run.place == place_of(current))),
                 None)
    if index is None:
        return None
    found: list[Match] = []
    sandwich = _interleaved(runs, index, current, window)
    if sandwich is not None:
        found.append(sandwich)
    places: set[str] = set()
    here = runs[index].place
    for run in runs:
        near = _nearest(run, current.time)
        gap = abs(near.time - current.time)
        if gap > window:
            continue
        if not run.place.startswith("egress:"):
            places.add(run.place)
        if run.place != here:
            pair = _pair(near, current, gap, max_speed_kmh, keys)
            if pair is not None:
                found.append(pair)
    if len(places) >= 3:
        others = by_time({_nearest(r, current.time) for r in runs if r.place in places})
        found.append(Match("networks", others, max(abs(o.time - current.time) for o in others)))
    if not found:
        return None
    return min(found, key=lambda m: (PRIORITY.index(m.reason), m.gap_s))


def _interleaved(runs: tuple[Run, ...], i: int, current: Observation, window: float) -> Match | None:
    """A, B, A with each step within ``window``, ``current`` being any of the three uses."""
    triples: list[tuple[Observation, Run | Observation, Observation]] = []
    if i >= 2:  # current is "A again"
        triples.append((runs[i - 2].last, runs[i - 1], current))
    if 0 < i < len(runs) - 1:  # current is B, between two uses of one other place
        triples.append((runs[i - 1].last, current, runs[i + 1].first))
    if i + 2 < len(runs):  # current is the first A (it arrived late)
        triples.append((current, runs[i + 1], runs[i + 2].first))
    for a1, middle, a2 in triples:
        if place_of(a1) != place_of(a2):
            continue
        uses = (middle,) if isinstance(middle, Observation) else (middle.first, middle.last)
        for b in uses:
            if b.time - a1.time <= window and a2.time - b.time <= window:
                return Match("interleaved", (a1, b, a2), max(b.time - a1.time, a2.time - b.time))
    return None


def _pair(other: Observation, current: Observation, gap: float, max_speed: float, keys: bool) -> Match | None:
    first, second = (other, current) if other.time <= current.time else (current, other)
    changed = device_drift(first, second, keys)
    if anonymising(first) or anonymising(second):
        return Match("anonymising", (first, second), gap, changed)
    if _located(first) and _located(second):
        speed = _speed(first, second, gap)
        if speed is not None and speed > max_speed:
            return Match("travel", (first, second), gap, changed, speed)
        if first.country and second.country and first.country != second.country:
            return Match("country", (first, second), gap, changed, speed)
    if changed:
        return Match("drift", (first, second), gap, changed)
    return None


def _speed(a: Observation, b: Observation, gap: float) -> float | None:
    if a.lat is None or a.lon is None or b.lat is None or b.lon is None:
        return None
    accuracy_a = a.accuracy_km if a.accuracy_km is not None else DEFAULT_ACCURACY_KM
    accuracy_b = b.accuracy_km if b.accuracy_km is not None else DEFAULT_ACCURACY_KM
    distance = effective_distance_km(haversine_km(a.lat, a.lon, b.lat, b.lon), accuracy_a, accuracy_b)
    return speed_kmh(distance, gap)


def _nearest(run: Run, t: float) -> Observation:
    if run.last.time <= t:
        return run.last
    if run.first.time >= t:
        return run.first
    return run.first if t - run.first.time <= run.last.time - t else run.last


def _time(obs: Observation) -> float:
    return obs.time


def _time_then_id(obs: Observation) -> tuple[float, str]:
    return obs.time, obs.event_id


def by_time(uses: Iterable[Observation]) -> tuple[Observation, ...]:
    """``uses`` oldest first, equal times by event id: a set's order follows memory addresses,
    so without the tie-break the same stream worded its evidence differently from run to run."""
    return tuple(sorted(uses, key=_time_then_id))
