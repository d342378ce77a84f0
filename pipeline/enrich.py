"""Event enrichment: fill ``event.network`` with geo, AS organisation, whether the
network is a hosting/VPN/Tor network, which cloud provider it belongs to, and
which allowlisted egress it is.

Geo a source already carries (Okta, Entra) is kept, with its country name turned
into an ISO code and a default accuracy where it has none; the rest is filled
only where the event has nothing. Runs once per event, so results are cached per
(ip, asn, as_org) and per whole network, and an event that gains nothing is
returned as is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_network
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.geoip import NOT_AN_IP, IPAddress, IpInfo, IpLocator, MmdbReader, country_code
from schemas.events import CanonicalEvent, Geo, Network

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
# Residential or unrelated networks that the words above (and DEFAULT_PROVIDERS) would catch.
DEFAULT_HOSTING_AS_ORGS_EXCLUDE: tuple[str, ...] = (
    "Google Fiber",  # GOOGLE-FIBER: residential ISP
    "Amazon+",  # AMAZON+ SERVICOS DE INTERNET LTDA: Brazilian ISP
    "Oracle Customer Management",  # ORACLE CUSTOMER MANAGEMENT SOLUTIONS PTY. LTD.: not Oracle
    "Alibaba Travel",  # Alibaba Travel Company (LTD): Iranian travel agency
)
# Well-known cloud/hosting ASNs, for sources that report the AS number (Okta, Entra, .mmdb).
DEFAULT_HOSTING_ASNS: tuple[int, ...] = (
    16509, 14618,  # Amazon
    15169, 396982,  # Google, Google Cloud
    8075,  # Microsoft
    31898,  # Oracle Cloud
    45102,  # Alibaba
    132203,  # Tencent
    8987,  # Amazon Data Services Ireland
    19527, 139070,  # Google (GOOGLE-2), Google Asia Pacific (GCP)
    37963, 45090,  # Alibaba (Aliyun), Tencent Cloud
    36351,  # IBM Cloud / SoftLayer
    55990, 136907,  # Huawei Cloud
    200350,  # Yandex.Cloud
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

# network.provider by AS organisation: whole words, case-insensitive, first
# provider in this order wins, DEFAULT_HOSTING_AS_ORGS_EXCLUDE applies. The
# names the shipped GeoLite2 data uses (and IdP logs, which add ", Inc." etc.):
#   aws    AMAZON-02, AMAZON-AES, AMAZON-AS, Amazon Data Services Ireland Ltd, AWS-01
#   gcp    GOOGLE, GOOGLE-2, GOOGLE-CLOUD-PLATFORM, GOOGLE CLOUD NETWORKING,
#          Google Asia Pacific Pte. Ltd. (34.64.0.0/10 in Korea), Google Ireland Limited
#   azure  MICROSOFT-CORP-MSN-AS-BLOCK (AS8075: Azure and Microsoft 365), MICROSOFT-CORP-AS
#   oracle ORACLE-BMC-31898 (OCI); alibaba: Alibaba US Technology Co., Ltd.,
#          Hangzhou Alibaba Advertising Co.,Ltd. (Aliyun), Alibaba Cloud Singapore Private Limited
#   tencent Tencent Building, Kejizhongyi Avenue; Shenzhen Tencent Computer Systems Company Limited
#   huawei Huawei Cloud Service data center, HUAWEI CLOUDS; ibm: SOFTLAYER
#   linode Akamai Connected Cloud (Akamai's CDN ranges, "Akamai International B.V.", are not matched)
# "Azure" alone is not a word here: it names unrelated ISPs ("Subex Azure Limited").
# Provider names match detectors' cloud_providers (replay.binding_mismatch).
DEFAULT_PROVIDERS: dict[str, tuple[str, ...]] = {
    "aws": ("Amazon", "AWS"),
    "gcp": ("Google",),
    "azure": ("Microsoft",),
    "oracle": ("Oracle",),
    "alibaba": ("Alibaba", "Aliyun"),
    "tencent": ("Tencent",),
    "huawei": ("Huawei Cloud", "Huawei Clouds"),
    "ibm": ("IBM Cloud", "SoftLayer"),
    "digitalocean": ("DigitalOcean",),
    "linode": ("Linode", "Akamai Connected Cloud"),
    "vultr": ("Vultr", "Choopa", "The Constant Company"),
    "hetzner": ("Hetzner",),
    "ovh": ("OVH",),
    "scaleway": ("Scaleway",),
    "yandex": ("Yandex.Cloud",),
}
# network.provider by AS number (sources that report one: Okta, Entra, an ASN .mmdb).
DEFAULT_PROVIDER_ASNS: dict[str, tuple[int, ...]] = {
    "aws": (16509, 14618, 8987),
    "gcp": (15169, 396982, 19527, 139070),
    "azure": (8075,),
    "oracle": (31898,),
    "alibaba": (45102, 37963),
    "tencent": (132203, 45090),
    "huawei": (136907, 55990),
    "ibm": (36351,),
    "digitalocean": (14061,),
    "linode": (63949,),
    "vultr": (20473,),
    "hetzner": (24940,),
    "ovh": (16276,),
    "scaleway": (12876,),
    "yandex": (200350,),
}
# network.provider of a service caller (network.service, no IP): exact name or DNS
# suffix. CloudTrail gives "ec2.amazonaws.com" or "AWS Internal" as the source.
DEFAULT_PROVIDER_SERVICES: dict[str, tuple[str, ...]] = {"aws": ("amazonaws.com", "AWS Internal")}


def provider_lines(table: Mapping[str, Iterable[object]]) -> tuple[str, ...]:
    """The TOML/environment list form of a provider table: ("aws: Amazon, AWS", ...)."""
    return tuple(f"{name}: {', '.join(str(item) for item in items)}" for name, items in table.items())


def _provider_table(value: object) -> object:
    """Accept the list form ``["aws: Amazon, AWS", ...]`` as well as a table;
    a provider named twice gets both lists. Words containing a comma need the table."""
    if not isinstance(value, list | tuple):
        return value
    table: dict[str, list[str]] = {}
    for line in value:
        if not isinstance(line, str) or ":" not in line:
            raise ValueError(f"{line!r} is not 'provider: item, item'")
        name, _, items = line.partition(":")
        table.setdefault(name, []).extend(i.strip() for i in items.split(",") if i.strip())
    return table


def _provider_names(table: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
    """Provider names are stripped and lower-cased (network.provider is compared as is)."""
    out: dict[str, tuple[object, ...]] = {}
    for name, items in table.items():
        key = name.strip().lower()
        if not key:
            raise ValueError("a provider needs a name")
        out[key] = out.get(key, ()) + tuple(items)
    return out


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
        description="AS organisation words that are neither hosting nor a cloud provider although "
        "hosting_as_orgs or providers match (residential or unrelated namesakes)",
    )
    hosting_asns: tuple[int, ...] = Field(
        default=DEFAULT_HOSTING_ASNS, description="AS numbers of hosting/VPN/Tor networks"
    )
    hosting_cidrs: tuple[str, ...] = Field(
        default=(), description="Ranges of hosting/VPN/Tor networks, e.g. Tor exits or a cloud's ranges"
    )
    providers: dict[str, tuple[str, ...]] = Field(
        default=provider_lines(DEFAULT_PROVIDERS), validate_default=True,
        description="network.provider by AS organisation words (whole-word, case-insensitive; the first "
        "provider that matches wins; hosting_as_orgs_exclude applies), \"provider: word, word\" each "
        "or an [enrich.providers] table of lists; replaces the defaults when set",
    )
    provider_asns: dict[str, tuple[int, ...]] = Field(
        default=provider_lines(DEFAULT_PROVIDER_ASNS), validate_default=True,
        description="network.provider by AS number, checked before the organisation words; "
        "\"provider: asn, asn\" each or a table",
    )
    provider_services: dict[str, tuple[str, ...]] = Field(
        default=provider_lines(DEFAULT_PROVIDER_SERVICES), validate_default=True,
        description="network.provider of a service caller (network.service) by exact name or DNS suffix, "
        "case-insensitive (no IP lookup); \"provider: suffix, name\" each or a table",
    )
    event_geo_accuracy_km: float = Field(
        default=50.0, gt=0, description="Accuracy given to a source's geo that has coordinates but no accuracy"
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

    @field_validator("providers", "provider_asns", "provider_services", mode="before")
    @classmethod
    def _provider_list_form(cls, value: object) -> object:
        return _provider_table(value)

    @field_validator("providers", "provider_asns", "provider_services")
    @classmethod
    def _provider_name(cls, value: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
        return _provider_names(value)


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
        self._provider_asns: dict[int, str] = {}
        for name, asns in config.provider_asns.items():
            for asn in asns:
                self._provider_asns.setdefault(asn, name)
        self._provider_orgs = [
            (name, pattern) for name, words in config.providers.items()
            if (pattern := _word_pattern(words)) is not None
        ]
        self._provider_services: dict[str, str] = {}
        for name, services in config.provider_services.items():
            for service in services:
                key = service.strip().strip(".").casefold()
                if key:
                    self._provider_services.setdefault(key, name)
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
        if (
            net.ip is None and net.asn is None and net.as_org is None and net.geo is None
            and (net.service is None or net.provider is not None)
        ):
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
        update: dict[str, object] = {}
        want_provider = net.provider is None
        if want_provider and net.service is not None:
            provider = self._service_provider(net.service)
            if provider is not None:
                update["provider"] = provider
                want_provider = False
        if net.ip is not None or net.asn is not None or net.as_org is not None:
            update.update(self._resolve(
                net.ip, net.asn, net.as_org,
                geo is None or (geo.country is None and geo.lat is None),
                net.hosting is None,
                net.egress is None,
                want_provider,
            ))
        if geo is not None and "geo" not in update:
            fixed = self._event_geo(geo)
            if fixed is not geo:
                update["geo"] = fixed
        return net.model_copy(update=update) if update else net

    def _event_geo(self, geo: Geo) -> Geo:
        """A source's geo with its country as an ISO code and an accuracy."""
        changes: dict[str, object] = {}
        if geo.country is not None:
            country = _country(geo.country)
            if country != geo.country:
                changes["country"] = country
        if geo.accuracy_km is None and geo.lat is not None and geo.lon is not None:
            changes["accuracy_km"] = self.config.event_geo_accuracy_km
        return geo.model_copy(update=changes) if changes else geo

    def _service_provider(self, service: str) -> str | None:
        """Provider of "ec2.amazonaws.com": the name itself, then each parent domain."""
        name = service.strip().strip(".").casefold()
        while name:
            provider = self._provider_services.get(name)
            if provider is not None:
                return provider
            _, _, name = name.partition(".")
        return None

    def _compute(
        self, ip: str | None, asn: int | None, org: str | None,
        want_geo: bool, want_hosting: bool, want_egress: bool, want_provider: bool,
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
        if want_provider:
            provider = self._provider(info, asn, orgs)
            if provider is not None:
                update["provider"] = provider
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

    def _provider(self, info: IpInfo, asn: int | None, orgs: tuple[str, ...]) -> str | None:
        """By AS number first, then by the first organisation word that matches."""
        if info.address is not None and not info.public:
            return None
        if asn is not None:
            provider = self._provider_asns.get(asn)
            if provider is not None:
                return provider
        exclude = self._hosting_exclude
        for org in orgs:
            if exclude is not None and exclude.search(org):
                continue
            for name, pattern in self._provider_orgs:
                if pattern.search(org):
                    return name
        return None

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


def _country(value: str) -> str:
    """ISO 3166 alpha-2 for a country name or alpha-3 code; a two-letter code is
    upper-cased ("UK" -> "GB"); anything unknown is kept as given."""
    text = value.strip()
    if len(text) == 2 and text.isalpha():
        code = text.upper()
        return "GB" if code == "UK" else code
    if len(text) > 2:
        return country_code(text) or value
    return value


def _open_mmdb(path: Path | None, field: str) -> MmdbReader | None:
    if path is None:
        return None
    import maxminddb

    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ValueError(f"enrich.{field} {str(path)!r} cannot be opened: {exc}") from None
