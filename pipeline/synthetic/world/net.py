"""Where the world's actors are: a place is an address in one of the vocabulary's networks
(``pipeline.synthetic.vocabulary``), with the city an IdP logs for it; the networks of each
kind per country, for drawing a user's home, carrier or Private Relay egress."""

from __future__ import annotations

import random
from dataclasses import dataclass

from pipeline.synthetic.vocabulary import CITIES, NETWORKS, VPN_EGRESS, City, Network

HOME_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
MOBILE_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
RELAY_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
for _n in NETWORKS.values():
    if _n.kind == "home":
        HOME_BY_COUNTRY[_n.country] = (*HOME_BY_COUNTRY.get(_n.country, ()), _n.key)
    elif _n.kind == "mobile":
        MOBILE_BY_COUNTRY[_n.country] = (*MOBILE_BY_COUNTRY.get(_n.country, ()), _n.key)
    elif _n.kind == "relay":
        RELAY_BY_COUNTRY[_n.country] = (*RELAY_BY_COUNTRY.get(_n.country, ()), _n.key)


@dataclass(frozen=True)
class Place:
    """Where one actor is at one moment: address, network and (IdP-logged) city."""

    ip: str
    network: Network
    city: City
    egress: str | None = None

    @property
    def country(self) -> str:
        return self.network.country


def place_in(network_key: str, rng: random.Random, city: City | None = None) -> Place:
    network = NETWORKS[network_key]
    return Place(network.address(rng), network, city or rng.choice(CITIES[network.country]))


def vpn_place(egress: str, rng: random.Random) -> Place:
    network_key, prefix = VPN_EGRESS[egress]
    network = NETWORKS[network_key]
    city = CITIES[network.country][3 if network.country == "DE" else 0]  # Frankfurt / New York
    return Place(f"{prefix}.{rng.randint(1, 30)}", network, city, egress)
