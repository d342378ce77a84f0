"""Event enrichment: fill ``event.network`` with geo, AS organisation, whether the
network is a hosting/VPN/Tor network, and which allowlisted egress it is.

Geo a source already carries (Okta, Entra) is kept; the rest is filled only
where the event has nothing. Runs once per event, so results are cached per
(ip, asn, as_org) and an event that gains nothing is returned as is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from ipaddress import ip_network
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.geoip import NOT_AN_IP, IPAddress, IpInfo, IpLocator, MmdbReader
from schemas.events import CanonicalEvent, Network

# Matched as whole words, case-insensitively, against AS organisation names as
# they appear in GeoLite2 data ("AMAZON-02", "Hetzner Online GmbH") and in IdP
# logs. Bare "Tor" is left out on purpose: it matches dozens of Toronto ISPs.
DEFAULT_HOSTING_AS_ORGS: tuple[str, ...] = (
    # cloud providers
    "Amazon", "AWS", "Google", "Microsoft", "Oracle", "Alibaba", "Aliyun", "Tencent",
    "Huawei Cloud", "Huawei Clouds", "Yandex.Cloud", "IBM Cloud", "SoftLayer", "Akamai", "Linode",
    "Cloudflare", "CloudflareNet", "Fastly",
    # hosting companies
    "DigitalOcean", "Hetzner", "OVH", "Vultr", "Choopa", "The Constant Company", "Scaleway",
    "Online S.A.S.", "Contabo", "Leaseweb", "M247", "Datacamp", "Private Layer", "Psychz",
    "Hostinger", "IONOS", "Hostwinds", "ColoCrossing", "FranTech", "PonyNet", "G-Core",
    "Stark Industries", "Aeza", "Servers.com", "Rackspace", "Kamatera", "UpCloud", "Hivelocity",
    "QuadraNet", "Sharktech", "Zenlayer", "Clouvider", "WorldStream", "Serverius", "xTom",
    "HostRoyale", "Hostkey", "Timeweb", "Selectel", "netcup", "Liquid Web", "DreamHost",
    "hosting", "datacenter", "datacentre", "data center", "data centre",
    # VPN providers and Tor exit operators
    "Mullvad", "NordVPN", "Tefincom", "Packethub", "Proton AG", "Stiftung Erneuerbare Freiheit",
    "Zwiebelfreunde", "Foundation for Applied Privacy", "Emerald Onion", "Calyx",
)
# Residential or unrelated networks that the words above would catch.
DEFAULT_HOSTING_AS_ORGS_EXCLUDE: tuple[str, ...] = ("Google Fiber", "Amazon+")
# Well-known cloud/hosting ASNs, for sources that report the AS number (Okta, Entra, .mmdb).
DEFAULT_HOSTING_ASNS: tuple[int, ...] = (
    16509, 14618,  # Amazon
    15169, 396982,  # Google, Google Cloud
    8075,  # Microsoft
    31898,  # Oracle Cloud
    45102,  # Alibaba
    132203,  # Tencent
    14061,  # DigitalOcean
    24940,  # Hetzner
    16276,  # OVH
    63949,  # Linode / Akamai
    20473,  # Choopa / Vultr
    12876,  # Scaleway
    51167,  # Contabo
    60781,  # Leaseweb NL
    9009,  # M247
    60068,  # Datacamp
    13335,  # Cloudflare
    54113,  # Fastly
    36352,  # ColoCrossing
    53667,  # FranTech / BuyVM
)


def _word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any of ``words`` as a whole word; a
    space matches any run of spaces, ``-`` or ``_`` ("Google Fiber" ~ "GOOGLE-FIBER").
    Boundaries are asserted only where the word starts/ends with a letter or digit."""
    parts = []
    for word in words:
        word = word.strip()
        if word:
            head = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
            tail = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
            body = r"[\s_-]+".join(re.escape(part) for part in word.split())
            parts.append(head + body + tail)
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


def _check_cidrs(cidrs: Sequence[str], where: str) -> None:
    for cidr in cidrs:
        try:
            ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"{where}: {cidr!r} is not a CIDR range ({exc})") from None


class AllowlistEntry(BaseModel):
    """A known egress (corporate proxy, VPN concentrator, cloud range we run in)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Set as network.egress when this entry matches")
    cidrs: tuple[str, ...] = Field(default=(), description="IPv4/IPv6 ranges, e.g. 198.51.100.0/24")
    asns: tuple[int, ...] = Field(default=(), description="AS numbers (only events or an .mmdb supply them)")
    as_orgs: tuple[str, ...] = Field(
        default=(), description="AS organisation names, matched as whole words, case-insensitively"
    )

    @model_validator(mode="after")
    def _valid(self) -> AllowlistEntry:
        _check_cidrs(self.cidrs, f"allowlist entry {self.name!r}")
        if not (self.cidrs or self.asns or any(o.strip() for o in self.as_orgs)):
            raise ValueError(f"allowlist entry {self.name!r} has no cidrs, asns or as_orgs")
        return self


class EnrichConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mmdb_path: Path | None = Field(
        default=None, description="Optional GeoLite2-City / DB-IP City .mmdb for city-level geo"
    )
    asn_mmdb_path: Path | None = Field(
        default=None, description="Optional GeoLite2-ASN / DB-IP ASN .mmdb for AS numbers"
    )
    mmdb_default_accuracy_km: float = Field(
        default=100.0, gt=0, description="Accuracy of a city record that has no accuracy_radius"
    )
    max_country_accuracy_km: float = Field(
        default=2500.0, gt=0, description="Cap on the accuracy radius of a country-level position"
    )
    hosting_as_orgs: tuple[str, ...] = Field(
        default=DEFAULT_HOSTING_AS_ORGS,
        description="AS organisation words (whole-word, case-insensitive) of hosting/VPN/Tor networks",
    )
    hosting_as_orgs_exclude: tuple[str, ...] = Field(
        default=DEFAULT_HOSTING_AS_ORGS_EXCLUDE,
        description="AS organisation words that are NOT hosting although hosting_as_orgs matches",
    )
    hosting_asns: tuple[int, ...] = Field(
        default=DEFAULT_HOSTING_ASNS, description="AS numbers of hosting/VPN/Tor networks"
    )
    hosting_cidrs: tuple[str, ...] = Field(
        default=(), description="Ranges of hosting/VPN/Tor networks, e.g. Tor exits or a cloud's ranges"
    )
    allowlist: tuple[AllowlistEntry, ...] = Field(
        default=(), description="Corporate egress, VPN and cloud ranges; the first match names network.egress"
    )
    cache_size: int = Field(default=65536, ge=1, description="Per-IP results kept (LRU, ~0.4 KB each)")
    network_cache_size: int = Field(
        default=16384, ge=0,
        description="Enriched networks kept per (ip, user agent, ...) (~1.2 KB each; cleared when full; 0: off)",
    )

    @field_validator("hosting_cidrs")
    @classmethod
    def _valid_cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _check_cidrs(value, "hosting_cidrs")
        return value


class CidrIndex:
    """Longest-to-shortest prefix lookup: one hash probe per prefix length in use,
    so thousands of ranges (a cloud's published list) stay cheap."""

    def __init__(self, ranges: Iterable[tuple[str, int]]) -> None:
        """``ranges``: (cidr, value); lookup returns the smallest value that matches."""
        self._tables: dict[tuple[int, int], dict[int, int]] = {}
        for cidr, value in ranges:
            net = ip_network(cidr.strip(), strict=False)
            table = self._tables.setdefault((net.version, net.prefixlen), {})
            key = int(net.network_address)
            table[key] = min(value, table.get(key, value))
        self._by_version = {
            v: [(plen, self._tables[(ver, plen)]) for ver, plen in sorted(self._tables) if ver == v]
            for v in (4, 6)
        }

    def lookup(self, address: IPAddress) -> int | None:
        bits = 32 if address.version == 4 else 128
        value = int(address)
        best: int | None = None
        for plen, table in self._by_version[address.version]:
            hit = table.get(value >> (bits - plen) << (bits - plen))
            if hit is not None and (best is None or hit < best):
                best = hit
        return best


class Enricher:
    """``enricher(event)`` returns the event with its network filled in."""

    def __init__(
        self,
        config: EnrichConfig | None = None,
        *,
        city_reader: MmdbReader | None = None,
        asn_reader: MmdbReader | None = None,
    ) -> None:
        """Readers may be injected; otherwise the configured .mmdb files are
        opened here, so a wrong path fails at start-up, not on the first event."""
        self.config = config = config or EnrichConfig()
        self.locator = IpLocator(
            city_reader if city_reader is not None else _open_mmdb(config.mmdb_path, "mmdb_path"),
            asn_reader if asn_reader is not None else _open_mmdb(config.asn_mmdb_path, "asn_mmdb_path"),
            default_city_accuracy_km=config.mmdb_default_accuracy_km,
            max_country_accuracy_km=config.max_country_accuracy_km,
        )
        self._hosting_orgs = _word_pattern(config.hosting_as_orgs)
        self._hosting_exclude = _word_pattern(config.hosting_as_orgs_exclude)
        self._hosting_asns = frozenset(config.hosting_asns)
        self._hosting_cidrs = CidrIndex((c, 0) for c in config.hosting_cidrs)
        entries = config.allowlist
        self._egress_names = [e.name for e in entries]
        self._egress_cidrs = CidrIndex((c, i) for i, e in enumerate(entries) for c in e.cidrs)
        self._egress_asns: dict[int, int] = {}
        for i, entry in enumerate(entries):
            for asn in entry.asns:
                self._egress_asns.setdefault(asn, i)
        self._egress_orgs = [_word_pattern(e.as_orgs) for e in entries]
        self._resolve = functools.lru_cache(maxsize=config.cache_size)(self._compute)
        self._networks: dict[tuple[object, ...], Network] = {}
        self._networks_max = config.network_cache_size

    def warm(self) -> None:
        """Load the shipped data now (service start) instead of on the first event."""
        self.locator.warm()

    def cache_info(self) -> functools._CacheInfo:
        return self._resolve.cache_info()

    def __call__(self, event: CanonicalEvent) -> CanonicalEvent:
        net = event.network
        if net.ip is None and net.asn is None and net.as_org is None:
            return event
        # Whole-network cache first: the enriched Network is a function of the
        # network's content, so a repeated (ip, user agent, ...) costs one probe.
        key = tuple(net.__dict__.values())
        enriched = self._networks.get(key)
        if enriched is None:
            enriched = self._enrich_network(net)
            if len(self._networks) >= self._networks_max:
                self._networks.clear()  # misses still hit the per-IP cache
            if self._networks_max:
                self._networks[key] = enriched
        if enriched is net:
            return event
        return event.model_copy(update={"network": enriched})

    def _enrich_network(self, net: Network) -> Network:
        geo = net.geo
        update = self._resolve(
            net.ip, net.asn, net.as_org,
            geo is None or (geo.country is None and geo.lat is None),
            net.hosting is None,
            net.egress is None,
        )
        return net.model_copy(update=update) if update else net

    def _compute(
        self, ip: str | None, asn: int | None, org: str | None,
        want_geo: bool, want_hosting: bool, want_egress: bool,
    ) -> dict[str, object]:
        """The network fields to set; shared between events, so never mutated."""
        info = self.locator.lookup(ip) if ip is not None else NOT_AN_IP
        update: dict[str, object] = {}
        if asn is None and info.asn is not None:
            asn = update["asn"] = info.asn
        orgs = tuple(o for o in (org, info.as_org) if o)
        if want_geo and info.geo is not None:
            update["geo"] = info.geo
        if org is None and info.as_org is not None:
            update["as_org"] = info.as_org
        if want_hosting:
            hosting = self._is_hosting(info, asn, orgs)
            if hosting is not None:
                update["hosting"] = hosting
        if want_egress:
            egress = self._egress(info, asn, orgs)
            if egress is not None:
                update["egress"] = egress
        return update

    def _is_hosting(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> bool | None:
        """None when nothing identifies the network (a service name, garbage)."""
        if info.address is None and asn is None and not orgs:
            return None
        if info.address is not None:
            if self._hosting_cidrs.lookup(info.address) is not None:
                return True
            if not info.public:
                return False
        if asn is not None and asn in self._hosting_asns:
            return True
        pattern, exclude = self._hosting_orgs, self._hosting_exclude
        return pattern is not None and any(
            pattern.search(o) and not (exclude is not None and exclude.search(o)) for o in orgs
        )

    def _egress(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> str | None:
        """Name of the first allowlist entry (in configured order) that matches."""
        if not self._egress_names:
            return None
        best = len(self._egress_names)
        if info.address is not None:
            hit = self._egress_cidrs.lookup(info.address)
            if hit is not None:
                best = hit
        if asn is not None:
            best = min(best, self._egress_asns.get(asn, best))
        if orgs:
            for i in range(best):
                pattern = self._egress_orgs[i]
                if pattern is not None and any(pattern.search(o) for o in orgs):
                    best = i
                    break
        return self._egress_names[best] if best < len(self._egress_names) else None


def _open_mmdb(path: Path | None, field: str) -> MmdbReader | None:
    if path is None:
        return None
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"enrich.{field} {str(path)!r} cannot be opened: {exc}") from None
