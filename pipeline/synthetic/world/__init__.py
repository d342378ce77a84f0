"""A synthetic but realistic world of identity and API traffic, deterministic by seed.

``generate(WorldSpec(users=..., seed=..., hours=...))`` returns every record in
the vendors' own line formats (Keycloak, Okta, Entra ID + Graph, CloudTrail,
Kubernetes audit, gateway), in event-time order, with the ground truth of the
attacks injected into it (``World.labels``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pipeline.synthetic.world.attacks import EPISODES, Injector, schedule, victims
from pipeline.synthetic.world.benign import (
    simulate_instance,
    simulate_pod,
    simulate_service,
    simulate_user,
)
from pipeline.synthetic.world.model import Label, Records, User, WorldSpec
from pipeline.synthetic.world.population import build_users

__all__ = ["World", "WorldSpec", "Label", "generate", "parse_duration"]
_UNITS = {"m": 1 / 60, "h": 1.0, "d": 24.0}


def parse_duration(text: str) -> float:
    """Hours in "90m", "12h", "2d" (a bare number is hours)."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _UNITS else "h"
    number = value[:-1] if value[-1:] in _UNITS else value
    try:
        hours = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"--duration {text!r}: expected e.g. 90m, 12h or 2d") from None
    if hours <= 0:
        raise ValueError(f"--duration {text!r} must be positive")
    return hours


@dataclass
class World:
    spec: WorldSpec
    users: list[User]
    labels: list[Label]
    records: list[tuple[float, int, str, bytes]] = field(repr=False)  # (time, seq, format, JSON line)
    behaviours: Counter[str] = field(default_factory=Counter)  # benign network moves it contains

    def lines(self) -> Iterator[tuple[str, bytes]]:
        """(format, JSON line) in event-time order."""
        for _, _, fmt, line in self.records:
            yield fmt, line

    def per_format(self) -> Counter[str]:
        return Counter(fmt for _, _, fmt, _ in self.records)


def generate(spec: WorldSpec, progress: Callable[[int], object] | None = None) -> World:
    """Benign population first (each actor from its own seeded generator), then the
    attack episodes; ``progress`` is called with the number of actors done."""
    rec = Records()
    users = build_users(spec)
    targets = victims(spec)
    times = schedule(spec)
    for (_, _, disables), victim, t in zip(EPISODES, targets, times, strict=True):
        if disables:
            victim.until = t - 1800  # the leaver's last working session ends before the deactivation
    population = users + targets
    for user in population:
        simulate_user(user, spec, rec)
        if progress:
            progress(1)
    machines = max(3, spec.users // 40)
    for i in range(machines):
        simulate_service(i, spec, rec)
        simulate_pod(i, spec, rec)
        if i < max(2, machines // 2):
            simulate_instance(i, spec, rec)
        if progress:
            progress(1)
    injector = Injector(spec, rec)
    labels = [episode(injector, victim, t) for (episode, _, _), victim, t in zip(EPISODES, targets, times, strict=True)]
    records = sorted(rec.items, key=lambda item: (item[0], item[1]))
    return World(spec, population, labels, records, rec.behaviours)


def actor_count(spec: WorldSpec) -> int:
    """How many steps ``generate`` reports to ``progress``."""
    return spec.users + len(EPISODES) + max(3, spec.users // 40)

