"""The one vocabulary of the synthetic traffic: the bundled sample (``sample``), the demo
world (``world/``) and the anomaly training stream (``anomaly_stream``) take their dates,
places, networks, addresses, clients, scopes and user agents from here.

Where two generators use different values for one concept, both are here under names that
say how they differ; the values are the ones each generator has always written, so each
generator's output is what it was. "By the tables" means what the bundled offline lookup
(``pipeline.ingest.geoip``: geoip2fast's GeoLite2-derived data) answers for an address.
``tests/world/test_vocabulary.py`` checks that the three outputs draw their addresses from here.

The world's networks are real address ranges of real ISPs, clouds, hosting companies,
iCloud Private Relay egress and in-flight Wi-Fi, chosen so that the lookup resolves every
address to the intended country and AS organisation (``tests/world/test_world.py`` checks
each range). AS numbers are the real ones; the shipped lookup data has none, but Okta and
Entra log the number, so their lines carry it. Okta spells AS names in lower case
("deutsche telekom ag"), as it does in its System Log.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

# -- when: each generator's first day, a fixed Monday (the same seed gives the same lines on any day) ----
WORLD_START = datetime(2026, 11, 9, 0, 0, tzinfo=timezone.utc)  # the demo world's default start
SAMPLE_START = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)  # the sample: scenario n takes hour n from here
STREAM_START = datetime(2026, 11, 2, tzinfo=timezone.utc)  # the anomaly stream: training days, then attack days


# -- where: countries and cities -------------------------------------------------------------------
@dataclass(frozen=True)
class City:
    name: str
    state: str
    lat: float
    lon: float


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

# Local time's offset from UTC in November, one per country (the world's: its US employees keep
# New York's time, wherever in the US they live).
UTC_OFFSET: dict[str, float] = {"DE": 1, "FR": 1, "NL": 1, "GB": 0, "ES": 1, "IT": 1, "PL": 1, "US": -5, "JP": 9,
                                "SG": 8, "IN": 5.5}


# -- networks: the world's, each a real AS with real address blocks ------------------------------------
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


# -- fixed addresses: the sample's, each in a network above (enrichment says what the comment says) ---
HOME_DE = "79.200.1.10"  # a Deutsche Telekom household: NETWORKS["telekom"], block 79.200
HOME_DE_NAT = "79.201.5.5"  # another Deutsche Telekom address (DE, Deutsche Telekom AG by the tables; no world block)
HOSTING_DE = "88.198.10.10"  # a Hetzner server: NETWORKS["hetzner"] (hosting)
HOSTING_IN = "139.59.1.1"  # a DigitalOcean droplet in India: NETWORKS["do-in"] (hosting)
HOME_US = "73.1.2.3"  # a Comcast household: NETWORKS["comcast"]
ADDRESS_NETWORK: dict[str, str] = {HOME_DE: "telekom", HOME_DE_NAT: "telekom", HOSTING_DE: "hetzner",
                                   HOSTING_IN: "do-in", HOME_US: "comcast"}
# Corporate VPN egress, the sample's form (the world's is VPN_EGRESS above, the stream's STREAM_CORP below):
# one address in TEST-NET-3 (RFC 5737), which the tables know nothing of; demo.toml's allowlist entry
# CORP_VPN_TEST_NET_EGRESS (203.0.113.0/24) makes it corporate egress.
CORP_VPN_TEST_NET = "203.0.113.10"
CORP_VPN_TEST_NET_EGRESS = "corp-vpn"

# -- internal addresses: the world's (private, never looked up) ---------------------------------------
VPC_PREFIX = "10.0"  # the company's AWS VPC: EC2 instances' private addresses; reports-api introspects from 10.0.4.x
CLUSTER_PREFIX = "10.20"  # the Kubernetes cluster: nodes at 10.20.0.<n>, pods in the rest of 10.20


# -- networks: the anomaly stream's, stated in its events ------------------------------------------------
@dataclass(frozen=True)
class StatedNetwork:
    """A network as the anomaly stream writes it into an event: the AS and the place are stated
    (enrichment keeps what an event states), addresses are ``{prefix}.{n}``, n in 1..250. A /16
    prefix so gives three-part addresses, which are no IPv4 addresses (enrichment reads them as
    none); only the corporate /24s give real ones."""

    asn: int
    as_org: str
    country: str
    city: City
    prefix: str
    hosting: bool = False


# Each country's networks all sit in one city (Berlin, Chicago, Tokyo), and the stream's US time is
# Chicago's (the world's US time is New York's: UTC_OFFSET).
STREAM_CITY: dict[str, City] = {"DE": CITIES["DE"][0], "US": CITIES["US"][1], "JP": CITIES["JP"][0]}
STREAM_UTC_OFFSET: dict[str, int] = {"DE": 1, "US": -6, "JP": 9}
# The stream's names for ASes the tables (and so NETWORKS) name by their handle.
STREAM_AS_NAMES: dict[str, str] = {"comcast": "Comcast Cable", "att": "AT&T Services", "ntt": "NTT Communications"}


def _stated(key: str, prefix: str, hosting: bool = False) -> StatedNetwork:
    """NETWORKS[key] as the stream states it: its AS number and country, the stream's name for
    it, the stream's city of that country, and the stream's own prefix."""
    network = NETWORKS[key]
    return StatedNetwork(network.asn, STREAM_AS_NAMES.get(key, network.as_org), network.country,
                         STREAM_CITY[network.country], prefix, hosting)


# Residential ISPs and carriers per country (a user's home, a café, a thief's ISP). Against the tables:
# 79.200 and 73.1 are world blocks of the same network; 88.64, 12.3 and 153.150 are other blocks of the
# same AS organisation; 84.150 is Deutsche Telekom AG's, 71.2 other ASes' (BRSPD-PUBLIC, CENTURYLINK-US-LEGACY-QWEST);
# the tables name 62.214's and 106.128's ASes "1&1 Versatel Deutschland GmbH" and "KDDI CORPORATION".
STREAM_ISPS: dict[str, tuple[StatedNetwork, ...]] = {
    "DE": (_stated("telekom", "79.200"), _stated("vodafone-de", "88.64"), _stated("o2-de", "84.150"),
           StatedNetwork(8881, "1&1 Versatel", "DE", STREAM_CITY["DE"], "62.214")),
    "US": (_stated("comcast", "73.1"), StatedNetwork(701, "Verizon Business", "US", STREAM_CITY["US"], "71.2"),
           _stated("att", "12.3")),
    "JP": (StatedNetwork(2516, "KDDI", "JP", STREAM_CITY["JP"], "106.128"), _stated("ntt", "153.150")),
}
# Corporate VPN egress, the stream's form: an AS of the company's own per country, documentation AS
# numbers 64500-64502 (RFC 5398) in 198.51.100-102 (only 198.51.100 is documentation space, TEST-NET-2;
# the tables place 198.51.101 in Indonesia and 198.51.102 in the US).
STREAM_CORP: dict[str, StatedNetwork] = {
    c: StatedNetwork(64500 + i, f"Example Corp {c}", c, STREAM_CITY[c], f"198.51.{100 + i}")
    for i, c in enumerate(STREAM_ISPS)
}
# Where the stream's automation runs: the world's eu-central-1 (kind "cloud"), stated as hosting.
STREAM_CLOUD = _stated("aws-fra", "3.120", hosting=True)


# -- identity: issuers, clients, audiences, scopes -----------------------------------------------------
KEYCLOAK_ISSUER = "https://sso.acme.example/realms/acme"  # the world's Keycloak realm
SAMPLE_KEYCLOAK_ISSUER = "https://sso.example.org/realms/sample"  # the sample's: another host and realm
OKTA_ISSUER = "https://acme.okta.com/oauth2/aus1acme"  # the world's Okta authorization server
PORTAL_CLIENT = "portal"  # the web portal's client id, in all three
MOBILE_APP_CLIENT = "mobile-app"  # the phone app's (world, stream)
ORDERS_API = "orders-api"  # audiences of the company's APIs (sample: orders only)
PAYMENTS_API = "payments-api"
HR_API = "api://hr"
PORTAL_SCOPES = ("openid", "profile", "orders:read", "payments:read")  # what the world's portal is granted
SAMPLE_PORTAL_SCOPES = ("openid", "profile", "orders:read")  # the sample's portal: orders only, no payments
ORDERS_ADMIN_SCOPE = "orders:admin"  # the privileged scope: the world's admin console; the sample's widenings


# -- user agents ---------------------------------------------------------------------------------------
BARE_BROWSER_AGENT = "Mozilla/5.0"  # the sample's every line; the world's IT admin deactivating a leaver in Okta
BROWSER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 "
                 "Safari/537.36")  # the world's one browser, the full string
# The stream's browsers: one per family (``detectors.device.agent_family`` tells them apart), version {v}.
BROWSER_AGENT_TEMPLATES = ("Mozilla/5.0 (Windows NT 10.0) Firefox/{v}", "Mozilla/5.0 (Macintosh) Safari/{v}",
                           "Mozilla/5.0 (X11; Linux x86_64) Chrome/{v}")
MOBILE_APP_AGENT = "AcmeMobile/4.12 (iPhone; iOS 18.1)"  # the world's phone app
STREAM_MOBILE_APP_AGENT = "ExampleApp/5.{minor} (iOS 17)"  # the stream's: another name and version, minor per user
AUTOMATION_AGENT = "python-httpx/0.27"  # the world's client-credentials jobs
STREAM_SCRIPT_AGENT = "python-requests/2.31"  # the stream's automation accounts and its off-hours thief alike
ATTACKER_SCRIPT_AGENT = "python-requests/2.32"  # the world's DPoP replayer: a minor version on from the stream's
AWS_CLI_AGENT = "aws-cli/2.15.30"  # the world's engineers, and the thief of EC2 instance credentials
AWS_SDK_AGENT = "aws-sdk-go-v2/1.30"  # the world's EC2 application
KUBECTL_AGENT = "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46"  # an admin deleting pods: kubectl's full agent
ATTACKER_KUBECTL_AGENT = "kubectl/v1.31.0"  # the world's pod-token thief: an older kubectl, version only
