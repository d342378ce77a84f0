"""Where a device is over a stretch of work: the place it egresses from, step by step.

A laptop that connects the corporate VPN, a phone that leaves home Wi-Fi, a browser
whose Private Relay egress rotates, a plane whose in-flight Wi-Fi hands over to
another ground station: one device, one token, another network from a moment on.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass

from pipeline.synthetic.vocabulary import CITIES, NETWORKS, City
from pipeline.synthetic.world.net import RELAY_BY_COUNTRY, Place, place_in

RELAY_ROTATION_S = (600.0, 2400.0)  # how long a Private Relay egress address lasts, roughly


@dataclass(frozen=True)
class Whereabouts:
    """``steps``: (since, place) in time order; before the first step the first place holds."""

    steps: tuple[tuple[float, Place], ...]

    @classmethod
    def still(cls, place: Place) -> Whereabouts:
        return cls(((float("-inf"), place),))

    def at(self, t: float) -> Place:
        i = bisect.bisect_right([since for since, _ in self.steps], t) - 1
        return self.steps[max(i, 0)][1]

    def then(self, since: float, place: Place) -> Whereabouts:
        """These whereabouts until ``since``, ``place`` from then on."""
        kept = tuple(step for step in self.steps if step[0] < since)
        return Whereabouts((*kept, (since, place)))


def relay_egress(country: str, city: City, start: float, end: float, rng: random.Random) -> Whereabouts:
    """A Safari session through iCloud Private Relay: an egress of the user's region (the IdPs
    place it in the user's city) that changes address, sometimes operator, every so often."""
    steps: list[tuple[float, Place]] = []
    t = float("-inf")
    while t < end:
        steps.append((t, place_in(rng.choice(RELAY_BY_COUNTRY[country]), rng, city)))
        t = (start if t == float("-inf") else t) + rng.uniform(*RELAY_ROTATION_S)
    return Whereabouts(tuple(steps))


def flight_egress(operator: tuple[str, str], start: float, end: float, handover: float,
                  rng: random.Random) -> Whereabouts:
    """In-flight Wi-Fi over the Atlantic: the European ground station's egress, then the
    American one from ``handover`` on (eastbound flights take them in the other order)."""
    first, second = (NETWORKS[key] for key in operator)
    places = [Place(net.address(rng), net, CITIES[net.country][0]) for net in (first, second)]
    return Whereabouts(((float("-inf"), places[0]), (min(max(handover, start), end), places[1])))
