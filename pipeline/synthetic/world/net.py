"""The networks of the synthetic world: real address ranges of real ISPs, clouds,
hosting companies, iCloud Private Relay egress and in-flight Wi-Fi, chosen so that
the offline lookup (``pipeline.ingest.geoip``, GeoLite2-derived data) resolves every
address to the intended country and AS organisation (``tests/world/test_world.py``
checks each range).

AS numbers are the real ones; the shipped lookup data has none, but Okta and
Entra log the number, so their lines carry it. Okta spells AS names in lower
case ("deutsche telekom ag"), as it does in its System Log.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    state: str
    lat: float
    lon: float


@dataclass(frozen=True)
class Network:
    """One AS in one country; ``blocks`` are /16 ("79.200") or /24 ("80.187.3") prefixes
    inside it (a /24 where the AS spans countries within a /16)."""

    key: str
    country: str  # ISO code
    as_org: str  # as the offline lookup names it
    asn: int
    blocks: tuple[str, ...]
    kind: str  # "home", "mobile", "hosting", "cloud", "relay", "in_flight"
    domain: str = ""

    def address(self, rng: random.Random) -> str:
        block = rng.choice(self.blocks)
        if block.count(".") == 2:  # a /24
            return f"{block}.{rng.randint(1, 254)}"
        return f"{block}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


def _slash24(prefix: str, thirds: Iterable[int]) -> tuple[str, ...]:
    """/24 blocks ("159.89.3") of a /16 whose other /24s the lookup places elsewhere."""
    return tuple(f"{prefix}.{third}" for third in thirds)


COUNTRY_NAMES = {
    "DE": "Germany", "FR": "France", "NL": "Netherlands", "GB": "United Kingdom", "ES": "Spain",
    "IT": "Italy", "PL": "Poland", "US": "United States", "JP": "Japan", "SG": "Singapore", "IN": "India",
}

CITIES: dict[str, tuple[City, ...]] = {
    "DE": (City("Berlin", "Land Berlin", 52.52, 13.40), City("Munich", "Bayern", 48.14, 11.58),
           City("Hamburg", "Hamburg", 53.55, 9.99), City("Frankfurt am Main", "Hessen", 50.11, 8.68),
           City("Cologne", "Nordrhein-Westfalen", 50.94, 6.96)),
    "FR": (City("Paris", "Ile-de-France", 48.86, 2.35), City("Lyon", "Auvergne-Rhone-Alpes", 45.76, 4.84)),
    "NL": (City("Amsterdam", "Noord-Holland", 52.37, 4.90), City("Rotterdam", "Zuid-Holland", 51.92, 4.48)),
    "GB": (City("London", "England", 51.51, -0.13), City("Manchester", "England", 53.48, -2.24)),
    "ES": (City("Madrid", "Madrid", 40.42, -3.70), City("Barcelona", "Catalonia", 41.39, 2.17)),
    "IT": (City("Milan", "Lombardy", 45.46, 9.19), City("Rome", "Lazio", 41.90, 12.50)),
    "PL": (City("Warsaw", "Mazovia", 52.23, 21.01),),
    "US": (City("New York", "New York", 40.71, -74.01), City("Chicago", "Illinois", 41.88, -87.63),
           City("Austin", "Texas", 30.27, -97.74), City("Denver", "Colorado", 39.74, -104.99)),
    "JP": (City("Tokyo", "Tokyo", 35.68, 139.69),),
    "SG": (City("Singapore", "Singapore", 1.29, 103.85),),
    "IN": (City("Mumbai", "Maharashtra", 19.08, 72.88),),
}

_NETWORKS = (
    # residential and business broadband
    Network("telekom", "DE", "Deutsche Telekom AG", 3320, ("79.200", "79.210", "62.158"), "home", "t-ipconnect.de"),
    Network("vodafone-de", "DE", "Vodafone GmbH", 3209, ("88.70", "188.96", "2.200"), "home", "vodafone.de"),
    Network("orange-fr", "FR", "Orange", 3215, ("90.12", "92.184"), "home", "wanadoo.fr"),
    Network("free", "FR", "Free SAS", 12322, ("78.193",), "home", "proxad.net"),
    Network("kpn", "NL", "KPN B.V.", 1136, ("77.160",), "home", "kpn.net"),
    Network("ziggo", "NL", "Vodafone Libertel B.V.", 33915, ("84.24",), "home", "ziggo.nl"),
    Network("bt", "GB", "British Telecommunications PLC", 2856, ("81.129", "31.94"), "home", "bt.com"),
    Network("virgin", "GB", "Virgin Media", 5089, ("82.1", "62.31"), "home", "virginm.net"),
    Network("movistar", "ES", "Telefonica De Espana S.a.u.", 3352, ("83.32",), "home", "rima-tde.net"),
    Network("tim", "IT", "Telecom Italia", 3269, ("79.20", "5.170"), "home", "telecomitalia.it"),
    Network("orange-pl", "PL", "Orange Polska Spolka Akcyjna", 5617, ("83.5",), "home", "neoplus.adsl.tpnet.pl"),
    Network("comcast", "US", "COMCAST-7922", 7922, ("73.1", "73.40", "73.160"), "home", "comcast.net"),
    Network("att", "US", "ATT-INTERNET4", 7018, ("99.10",), "home", "sbcglobal.net"),
    Network("ntt", "JP", "NTT Communications Corporation", 4713, ("153.200",), "home", "ocn.ne.jp"),
    Network("iij", "JP", "Internet Initiative Japan Inc.", 2497, _slash24("220.100", range(0, 8)), "home", "iij.ad.jp"),
    Network("starhub", "SG", "Starhub Ltd", 4657, ("116.86",), "home", "starhub.net.sg"),
    Network("jio", "IN", "Reliance Jio Infocomm Limited", 55836, ("49.36",), "home", "jio.com"),
    # mobile carriers
    Network("telekom-mobile", "DE", "Deutsche Telekom AG", 3320, _slash24("80.187", range(0, 8)), "mobile", "t-mobile.de"),
    Network("o2-de", "DE", "Telefonica Germany", 6805, ("176.0", "77.3"), "mobile", "telefonica.de"),
    Network("free-mobile", "FR", "Free Mobile SAS", 51207, ("37.171",), "mobile", "free.fr"),
    Network("windtre", "IT", "Wind Tre S.p.A.", 1267, ("151.36",), "mobile", "windtre.it"),
    Network("vodafone-it", "IT", "Vodafone Italia S.p.A.", 30722, ("109.112",), "mobile", "vodafone.it"),
    Network("tmobile-us", "US", "T-MOBILE-AS21928", 21928, ("172.56",), "mobile", "tmobile.com"),
    Network("softbank", "JP", "SoftBank Corp.", 17676, ("126.100",), "mobile", "softbank.jp"),
    # hosting, VPS and anonymisers (where automation runs, and where attackers come from)
    Network("hetzner", "DE", "Hetzner Online GmbH", 24940, ("88.198", "94.130"), "hosting", "your-server.de"),
    Network("do-de", "DE", "DIGITALOCEAN-ASN", 14061, _slash24("159.89", range(0, 8)), "hosting", "digitalocean.com"),
    Network("do-in", "IN", "DIGITALOCEAN-ASN", 14061, _slash24("139.59", range(0, 8)), "hosting", "digitalocean.com"),
    Network("ovh", "FR", "OVH SAS", 16276, _slash24("51.38", (0, 1, 2, 3, 5, 6, 7, 9)), "hosting", "ovh.net"),
    Network("vultr", "US", "AS-CHOOPA", 20473, _slash24("45.32", (0, 2, 3, 4, 5, 6, 7, 64)), "hosting", "vultr.com"),
    Network("tor", "DE", "Stiftung Erneuerbare Freiheit", 60729, ("185.220.101", "185.220.102"), "hosting", "torservers.net"),
    # the company's cloud (eu-central-1) and its corporate VPN concentrators in it
    Network("aws-fra", "DE", "AMAZON-02", 16509, ("3.120", "3.121"), "cloud", "amazonaws.com"),
    Network("aws-iad", "US", "AMAZON-AES", 14618, ("54.160",), "cloud", "amazonaws.com"),
    # iCloud Private Relay egress (Apple, "Prepare your network or web server for iCloud Private
    # Relay": egress addresses map to the user's region): Akamai's relay /24s per country, and
    # Cloudflare's where the lookup places a whole /24 in one country
    *(Network(f"relay-akamai-{c.lower()}", c, "AKAMAI-AS", 36183, blocks, "relay", "akamaitechnologies.com")
      for c, blocks in (("DE", ("172.224.46", "172.224.47", "172.224.134")), ("FR", ("172.224.44", "172.224.97")),
                        ("NL", ("172.224.129", "172.224.130")), ("GB", ("172.224.60", "172.224.99")),
                        ("ES", ("172.224.53", "172.224.54")), ("IT", ("172.224.57", "172.224.58")),
                        ("PL", ("172.224.39", "172.224.40")), ("US", ("172.224.0", "172.224.1", "172.224.2")),
                        ("JP", ("172.224.21", "172.224.22")), ("SG", ("172.224.26", "172.224.154")),
                        ("IN", ("172.224.18", "172.224.19")))),
    *(Network(f"relay-cloudflare-{c.lower()}", c, "CLOUDFLARENET", 13335, (block,), "relay", "cloudflare.com")
      for c, block in (("GB", "104.28.41"), ("IT", "104.29.45"), ("PL", "104.29.76"), ("US", "104.28.14"))),
    # in-flight Wi-Fi: the satellite operators' ground-station egress on each side of the Atlantic
    Network("intelsat-gb", "GB", "INTELSAT-1", 22351, ("80.255.40", "80.255.41"), "in_flight", "intelsat.com"),
    Network("intelsat-us", "US", "INTELSAT-1", 22351, ("66.36.200", "66.36.201"), "in_flight", "intelsat.com"),
    Network("viasat-gb", "GB", "VIASAT-SP-BACKBONE", 7155, ("37.203.193",), "in_flight", "viasat.com"),
    Network("viasat-us", "US", "VIASAT-SP-BACKBONE", 7155, ("70.41.4",), "in_flight", "viasat.com"),
)
NETWORKS: dict[str, Network] = {n.key: n for n in _NETWORKS}

HOME_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
MOBILE_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
RELAY_BY_COUNTRY: dict[str, tuple[str, ...]] = {}
for _n in _NETWORKS:
    if _n.kind == "home":
        HOME_BY_COUNTRY[_n.country] = (*HOME_BY_COUNTRY.get(_n.country, ()), _n.key)
    elif _n.kind == "mobile":
        MOBILE_BY_COUNTRY[_n.country] = (*MOBILE_BY_COUNTRY.get(_n.country, ()), _n.key)
    elif _n.kind == "relay":
        RELAY_BY_COUNTRY[_n.country] = (*RELAY_BY_COUNTRY.get(_n.country, ()), _n.key)

# Corporate VPN egress: the company's VPN concentrators in AWS. The ranges are in
# pipeline/data/demo.toml as [[enrich.allowlist]] entries with these names.
VPN_EGRESS: dict[str, tuple[str, str]] = {
    "corp-vpn-fra": ("aws-fra", "3.121.200"),  # /24 in eu-central-1
    "corp-vpn-iad": ("aws-iad", "54.160.200"),  # /24 in us-east-1
}


# In-flight Wi-Fi of transatlantic flights: one operator per flight, its egress on the
# European side (GB ground stations), then on the American side (US) after the handover.
IN_FLIGHT: dict[str, tuple[str, str]] = {
    "Intelsat": ("intelsat-gb", "intelsat-us"),  # Gogo's former commercial-aviation service
    "Viasat": ("viasat-gb", "viasat-us"),
}


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
