"""Enrichment settings: hosting, VPN and cloud-provider networks by AS organisation,
AS number and range, the allowlisted egresses, the operator's egress lists, and the
.mmdb files to read.

Kept apart from the enricher so the defaults can be read and reviewed as lists;
``pipeline.ingest.enrich`` re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from ipaddress import ip_network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas.events import NetClass

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


class EgressListSource(BaseModel):
    """A list of networks of one class in a file the operator maintains (README "Egress lists")."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=64, description="Set as network.net_list when this list matches")
    net_class: NetClass = Field(
        alias="class", description="relay, in_flight, provider (CIDR lines only) or reputation"
    )
    path: Path = Field(description="One entry a line: CIDR or IP, AS<number>, org: <AS name>, or CSV cidr,label")


ShippedList = Literal["relay", "in_flight"]


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
    egress_lists: tuple[EgressListSource, ...] = Field(
        default=(),
        description="Your egress lists ([[enrich.egress_lists]] name, class, path): relay egress, in-flight "
        "Wi-Fi, a provider's own infrastructure, Tor exits and threat-intel CSVs; network.net_class is the "
        "class of the first that matches (reputation lists first); reloaded when the file changes",
    )
    shipped_egress_lists: tuple[ShippedList, ...] = Field(
        default=("in_flight",),
        description="Shipped AS-name lists to load (pipeline/data/egress/<class>.txt): in_flight (airline "
        "Wi-Fi providers) on by default; add relay for iCloud Private Relay's partner networks by AS name, "
        "which also covers compute anyone can rent there (prefer Apple's published egress ranges)",
    )
    egress_reload_interval_s: float = Field(
        default=60.0, gt=0, description="How often the egress list files are checked for changes (mtime)"
    )
    egress_list_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="A larger egress list file is refused (kept as before)"
    )
    egress_list_max_entries: int = Field(
        default=1_000_000, ge=1, description="Entries read per egress list file; the rest are reported and ignored"
    )
    relay_accuracy_km: float = Field(
        default=1000.0, ge=0,
        description="Accuracy given to a relay network's position: Private Relay maps users to their region "
        "by default, to their country and time zone when they ask",
    )
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="CIDRs of your own proxies and load balancers: in a forwarded-for chain (Keycloak "
        "ipAddress, k8s sourceIPs, a gateway's client_ip list) the caller is the rightmost address "
        "outside them; entries to its left are written by the client and never believed",
    )
    cache_size: int = Field(default=65536, ge=1, description="Per-IP results kept (LRU, ~0.4 KB each); also "
                            "the most AS organisation names whose word matches are kept")
    network_cache_size: int = Field(
        default=16384, ge=0,
        description="Enriched networks kept per (ip, user agent, ...) (~1.2 KB each; cleared when full; 0: off)",
    )

    @field_validator("hosting_cidrs", "trusted_proxies")
    @classmethod
    def _valid_cidrs(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        _check_cidrs(value, str(info.field_name))
        return value

    @field_validator("providers", "provider_asns", "provider_services", mode="before")
    @classmethod
    def _provider_list_form(cls, value: object) -> object:
        return _provider_table(value)

    @field_validator("providers", "provider_asns", "provider_services")
    @classmethod
    def _provider_name(cls, value: dict[str, tuple[object, ...]]) -> dict[str, tuple[object, ...]]:
        return _provider_names(value)
