"""The world's model: what is generated (spec), who acts (actors), what was
recorded (records, per vendor format) and what was injected (labels)."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from pipeline.synthetic.vocabulary import NETWORKS, WORLD_START, City
from pipeline.synthetic.world.net import Place


@dataclass(frozen=True)
class WorldSpec:
    users: int = 300
    seed: int = 7
    hours: float = 24.0
    start: datetime = WORLD_START

    @property
    def t0(self) -> float:
        return self.start.timestamp()

    @property
    def t_end(self) -> float:
        return self.t0 + self.hours * 3600


@dataclass(frozen=True)
class Label:
    """One injected attack: which rule must catch it, and the ids its alert names
    (token ids, and the session id for session-level findings)."""

    attack: str
    rule: str
    description: str
    user_id: str
    keys: tuple[str, ...]
    time: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {"attack": self.attack, "rule": self.rule, "description": self.description, "user_id": self.user_id,
                "keys": list(self.keys), "time": self.time, "source": self.source}


@dataclass
class Trip:
    depart: float  # leaves home (UTC epoch)
    arrive: float  # first activity possible at the destination
    network: str  # destination network key
    city: City
    wifi: tuple[str, str] | None = None  # in-flight Wi-Fi used on board: egress networks before/after handover


@dataclass
class User:
    id: str
    login: str
    name: str
    idp: str  # keycloak | okta | entra
    country: str
    city: City
    home_net: str
    mobile_net: str
    tz_h: float  # offset of local time from UTC
    rng: random.Random
    vpn: str | None = None  # corporate egress name when the user works through the VPN
    device_key: str | None = None  # DPoP key of the mobile app (Keycloak users with the app)
    admin: bool = False
    engineer: bool = False
    trip: Trip | None = None
    until: float | None = None  # activity stops here (the account is disabled by an injected attack)
    home_ip: str = ""
    last_session: Any = None  # the sign-in session a laptop resumes after a flight (benign.py)
    relay: bool = False  # browses with iCloud Private Relay: web traffic egresses from a relay
    keeps_refresh: bool = False  # Okta: the HR app refreshes after the user signed out of Okta

    def home(self) -> Place:
        return Place(self.home_ip, NETWORKS[self.home_net], self.city)


@dataclass
class Records:
    """Vendor records with their event time, in generation order, serialised at once
    (a JSON line takes a quarter of the memory of its dict)."""

    items: list[tuple[float, int, str, bytes]] = field(default_factory=list)
    behaviours: Counter[str] = field(default_factory=Counter)  # benign network moves, for the summary

    def add(self, t: float, fmt: str, raw: dict[str, Any]) -> None:
        # orjson's result keeps its whole output buffer (~8 KB) allocated; an exact copy does not
        self.items.append((t, len(self.items), fmt, bytes(memoryview(orjson.dumps(raw)))))


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def short_id(rng: random.Random, n: int = 20) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(rng.choice(alphabet) for _ in range(n))
