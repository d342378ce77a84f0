"""Who lives in the world: employees with a home city, ISP and mobile carrier,
some on the corporate VPN, some with the DPoP-bound mobile app, a few admins,
engineers with AWS access, travellers on a plausible flight (some working on its
Wi-Fi), Safari users on iCloud Private Relay, and Okta users whose HR app keeps
its refresh token after they sign out of Okta."""

from __future__ import annotations

import math
import random

from pipeline.synthetic.vocabulary import CITIES, IN_FLIGHT, NETWORKS, UTC_OFFSET
from pipeline.synthetic.world.model import Trip, User, WorldSpec, new_id, short_id
from pipeline.synthetic.world.net import HOME_BY_COUNTRY, MOBILE_BY_COUNTRY, RELAY_BY_COUNTRY

# (country, share of employees)
OFFICES = (("DE", 0.40), ("FR", 0.10), ("NL", 0.07), ("GB", 0.10), ("ES", 0.05), ("IT", 0.05), ("PL", 0.05),
           ("US", 0.12), ("JP", 0.03), ("SG", 0.02), ("IN", 0.01))
FIRST = ("Anna", "Ben", "Chloe", "David", "Elif", "Finn", "Greta", "Hugo", "Ines", "Jonas", "Kai", "Lena", "Mateo",
         "Nora", "Omar", "Paula", "Quentin", "Rosa", "Sven", "Tara", "Umut", "Vera", "Wei", "Yuki", "Zoe")
LAST = ("Schmidt", "Dubois", "de Vries", "Smith", "Garcia", "Rossi", "Nowak", "Miller", "Tanaka", "Tan", "Sharma",
        "Weber", "Martin", "Jansen", "Brown", "Lopez", "Bianchi", "Kowalski", "Johnson", "Sato", "Lim", "Patel")
DESTINATIONS = {"EU": ("US", "JP", "SG"), "US": ("DE", "GB"), "APAC": ("DE", "US")}
# Habits that move a token between networks or outlive a sign-on session (drawn from their
# own generator per user, so the rest of the population keeps its draws):
RELAY_SHARE = 0.06  # Safari with iCloud Private Relay (iCloud+ on a Mac; not with the VPN, which bypasses it)
KEEPS_REFRESH_SHARE = 0.5  # Okta users whose HR app keeps its refresh token (offline_access) after sign-out
ON_BOARD_WIFI_SHARE = 0.6  # transatlantic travellers who work on the plane's Wi-Fi
FLIGHT_KMH = 800.0  # gate to gate, plus 3 h at airports on each trip


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def _region(country: str) -> str:
    return "US" if country == "US" else ("APAC" if country in ("JP", "SG", "IN") else "EU")


def build_users(spec: WorldSpec) -> list[User]:
    rng = random.Random(f"{spec.seed}:population")
    users: list[User] = []
    countries = [c for c, _ in OFFICES]
    weights = [w for _, w in OFFICES]
    for i in range(spec.users):
        country = rng.choices(countries, weights)[0]
        first, last = rng.choice(FIRST), rng.choice(LAST)
        idp = rng.choices(("keycloak", "okta", "entra"), (0.45, 0.30, 0.25))[0]
        login = f"{first.lower()}.{last.lower().replace(' ', '')}{i}"
        user_rng = random.Random(f"{spec.seed}:user:{i}")
        if idp == "okta":
            user_id = "00u" + short_id(user_rng, 17)
        else:
            user_id = new_id(user_rng)
        user = User(
            id=user_id, login=f"{login}@acme.example", name=f"{first} {last}", idp=idp, country=country,
            city=rng.choice(CITIES[country]), home_net=rng.choice(HOME_BY_COUNTRY[country]),
            mobile_net=rng.choice(MOBILE_BY_COUNTRY.get(country) or HOME_BY_COUNTRY[country]),
            tz_h=UTC_OFFSET[country], rng=user_rng,
        )
        user.home_ip = NETWORKS[user.home_net].address(user_rng)  # a household keeps its address for days
        if rng.random() < 0.2:
            user.vpn = "corp-vpn-iad" if country == "US" else "corp-vpn-fra"
        if idp == "keycloak" and rng.random() < 0.35:
            user.device_key = short_id(user_rng, 43)
        user.admin = idp in ("keycloak", "entra") and rng.random() < 0.05
        user.engineer = idp in ("keycloak", "okta") and rng.random() < 0.1
        if rng.random() < 0.05 and spec.hours >= 16:
            user.trip = _trip(user, spec, rng)
        _habits(user, random.Random(f"{spec.seed}:habits:{i}"))
        users.append(user)
    return users


def _habits(user: User, rng: random.Random) -> None:
    """Every draw is made for every user, so one habit's share never shifts another's."""
    relay = rng.random() < RELAY_SHARE
    user.relay = relay and user.vpn is None and user.country in RELAY_BY_COUNTRY
    keeps = rng.random() < KEEPS_REFRESH_SHARE
    user.keeps_refresh = keeps and user.idp == "okta"
    wifi = rng.random() < ON_BOARD_WIFI_SHARE
    operator = IN_FLIGHT[rng.choice(sorted(IN_FLIGHT))]  # (European side, American side)
    trip = user.trip
    if wifi and trip is not None:
        route = (_region(user.country), _region(NETWORKS[trip.network].country))
        if route == ("EU", "US"):
            trip.wifi = operator
        elif route == ("US", "EU"):
            trip.wifi = (operator[1], operator[0])


def _trip(user: User, spec: WorldSpec, rng: random.Random) -> Trip:
    """Leaves home at 10:30-12:00 local on the first day (after a short morning at work),
    lands after a flight no faster than an airliner."""
    dest = rng.choice(DESTINATIONS[_region(user.country)])
    city = rng.choice(CITIES[dest])
    depart = spec.t0 + (rng.uniform(10.5, 12.0) - user.tz_h) * 3600
    if depart < spec.t0 + 3600:
        depart += 86400
    hours = _km(user.city.lat, user.city.lon, city.lat, city.lon) / FLIGHT_KMH + 3.0
    network = rng.choice(HOME_BY_COUNTRY[dest])  # the hotel's broadband
    return Trip(depart, depart + hours * 3600, network, city)
