"""Enrichment against the data the geo packages ship, plus a tiny .mmdb written here.

The .mmdb writer below is a minimal implementation of the MaxMind DB format
(IPv4 tree, 24-bit records) so that the optional city/ASN path is tested with
the real ``maxminddb`` reader rather than a fake.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.ingest.enrich import (
    DEFAULT_HOSTING_AS_ORGS,
    DEFAULT_HOSTING_ASNS,
    DEFAULT_PROVIDER_ASNS,
    DEFAULT_PROVIDERS,
    EnrichConfig,
    Enricher,
)
from pipeline.ingest.geoip import IpLocator, country_code, country_positions, geoip2fast_source, parse_ip
from schemas.events import CanonicalEvent, Geo, Network
from tests.factories import BERLIN_HOME, event


def ev(**network: Any) -> CanonicalEvent:
    return event("used", 0, token="t1", place=None).model_copy(update={"network": Network(**network)})


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    return Enricher(EnrichConfig(allowlist=[
        {"name": "corp-proxy", "cidrs": ["198.51.100.0/24", "2001:db8:42::/48"]},
        {"name": "corp-vpn", "cidrs": ["10.8.0.0/16"], "asns": [64500]},
        {"name": "partner", "as_orgs": ["Deutsche Telekom"]},
    ]))


# --- offline lookups -------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "country", "as_org", "hosting"),
    [
        ("88.198.10.10", "DE", "Hetzner Online GmbH", True),
        ("79.200.1.10", "DE", "Deutsche Telekom AG", False),
        ("8.8.8.8", "US", "GOOGLE", True),
        ("2a01:4f8::1", "DE", "Hetzner Online GmbH", True),
        ("::ffff:8.8.8.8", "US", "GOOGLE", True),  # IPv4-mapped IPv6 is unwrapped
        ("185.220.101.1", "DE", "Stiftung Erneuerbare Freiheit", True),  # Tor exits
        ("139.59.1.1", "IN", "DIGITALOCEAN-ASN", True),
    ],
)
def test_lookup_from_shipped_data(enricher: Enricher, ip: str, country: str, as_org: str, hosting: bool) -> None:
    net = enricher(ev(ip=ip)).network
    assert net.geo is not None and net.geo.country == country and net.geo.source == "country_db"
    assert net.geo.lat is not None and net.geo.lon is not None and net.geo.accuracy_km
    assert net.as_org == as_org
    assert net.asn is None  # the shipped data has AS names, not numbers
    assert net.hosting is hosting
    assert net.ip == ip  # the event's own string is kept


def test_country_position_is_plausible(enricher: Enricher) -> None:
    geo = enricher(ev(ip="88.198.10.10")).network.geo
    assert geo is not None and 47 < geo.lat < 55 and 6 < geo.lon < 15  # inside Germany
    assert 300 < geo.accuracy_km < 400  # about a disk of Germany's area
    us = enricher(ev(ip="8.8.8.8")).network.geo
    assert us is not None and us.accuracy_km <= 2500.0


def test_country_positions_across_the_antimeridian_and_for_long_countries() -> None:
    positions = country_positions()
    assert abs(positions["FJ"].lon) > 170  # Fiji: not averaged to the Greenwich side
    chile = positions["CL"]
    assert chile.radius_km is not None and chile.radius_km > math.sqrt(756_102 / math.pi) * 1.3


def test_data_vintage_is_reported() -> None:
    assert "GeoLite2" in geoip2fast_source()


@pytest.mark.parametrize("ip", ["10.0.0.1", "127.0.0.1", "::1", "192.168.1.5", "100.64.0.1", "fe80::1%eth0"])
def test_private_addresses_get_no_geo_and_are_not_hosting(enricher: Enricher, ip: str) -> None:
    net = enricher(ev(ip=ip)).network
    assert net.geo is None and net.as_org is None and net.hosting is False


@pytest.mark.parametrize("ip", ["ec2.amazonaws.com", "garbage", "", "999.1.1.1", "1.2.3.4:443", "\x00"])
def test_non_ip_strings_never_raise(enricher: Enricher, ip: str) -> None:
    e = ev(ip=ip)
    assert enricher(e) is e  # nothing known: the event comes back untouched


def test_service_name_with_source_supplied_asn_is_classified(enricher: Enricher) -> None:
    net = enricher(ev(ip="ec2.amazonaws.com", asn=16509)).network
    assert net.geo is None and net.hosting is True


def test_parse_ip() -> None:
    assert str(parse_ip(" ::ffff:1.2.3.4 ")) == "1.2.3.4"
    assert parse_ip("sts.amazonaws.com") is None


# --- what the event already carries ----------------------------------------------


def test_event_geo_is_kept_and_missing_fields_are_filled(enricher: Enricher) -> None:
    okta_geo = Geo(country="DE", city="Falkenstein", lat=50.48, lon=12.37, accuracy_km=10, source="event")
    e = ev(ip="88.198.10.10", geo=okta_geo, asn=24940, user_agent="okta-test")
    net = enricher(e).network
    assert net.geo is okta_geo
    assert net.asn == 24940 and net.as_org == "Hetzner Online GmbH" and net.hosting is True
    assert net.user_agent == "okta-test"


def test_event_as_org_is_kept(enricher: Enricher) -> None:
    net = enricher(ev(ip="8.8.8.8", as_org="google llc")).network
    assert net.as_org == "google llc" and net.hosting is True and net.geo is not None


def test_empty_geo_counts_as_missing(enricher: Enricher) -> None:
    net = enricher(ev(ip="79.200.1.10", geo=Geo(source="event"))).network
    assert net.geo is not None and net.geo.country == "DE"


def test_fully_enriched_event_is_returned_unchanged(enricher: Enricher) -> None:
    e = event("used", 0, token="t1", place=BERLIN_HOME)  # factory places carry geo, org, hosting
    e = e.model_copy(update={"network": e.network.model_copy(update={"egress": "home"})})
    assert enricher(e) is e
    bare = event("revoked", 0, token="t1", revoke="token", place=None)
    assert enricher(bare) is bare


def test_unchanged_fields_and_event_are_preserved(enricher: Enricher) -> None:
    e = ev(ip="79.200.1.10", user_agent="Mozilla/5.0", device_id="d1")
    out = enricher(e)
    assert out is not e and e.network.geo is None  # the input is not mutated
    assert out.model_dump(exclude={"network"}) == e.model_dump(exclude={"network"})
    assert (out.network.user_agent, out.network.device_id) == ("Mozilla/5.0", "d1")


# --- hosting classification ------------------------------------------------------


@pytest.mark.parametrize(
    ("as_org", "hosting"),
    [
        ("AMAZON-02", True),
        ("Amazon.com, Inc.", True),
        ("digitalocean llc", True),
        ("Mullvad VPN AB", True),
        ("Iron Hosting Centre LTD", True),
        ("GOOGLE-FIBER", False),  # residential, excluded by default
        ("AMAZONIA TELECOMUNICACOES LTDA", False),  # whole words only
        ("AMAZON+ SERVICOS DE INTERNET LTDA", False),
        ("TELX-TOR", False),  # Toronto, not Tor
        ("Deutsche Telekom AG", False),
    ],
)
def test_hosting_by_as_org(enricher: Enricher, as_org: str, hosting: bool) -> None:
    assert enricher(ev(ip="sts.amazonaws.com", as_org=as_org)).network.hosting is hosting


def test_what_the_organisation_words_say_is_memoised_per_names_without_mixing_them_up() -> None:
    """A network's organisation names are read against the word patterns once per names (an AS's
    name is shared by thousands of addresses, and an address-rotating source makes each event a
    new address): asked in any order, again and again, one enricher answers what a fresh one does."""
    config = EnrichConfig(allowlist=[{"name": "corp", "as_orgs": ["Example Corp"]},
                                     {"name": "vpn-vendor", "as_orgs": ["Mullvad"]}])
    orgs = ["AMAZON-02", "Deutsche Telekom AG", "GOOGLE-FIBER", "Google LLC", "Mullvad VPN AB",
            "Example Corp Networks", "digitalocean llc", "AMAZONIA TELECOMUNICACOES LTDA", "Microsoft Corporation"]

    def facts(network: Network) -> tuple[object, ...]:
        return network.hosting, network.provider, network.egress

    fresh = {org: facts(Enricher(config)(ev(ip="sts.amazonaws.com", as_org=org)).network) for org in orgs}
    assert fresh["Mullvad VPN AB"] == (True, None, "vpn-vendor") and fresh["Example Corp Networks"][2] == "corp"
    assert fresh["Google LLC"][1] == "gcp" and fresh["GOOGLE-FIBER"][:2] == (False, None)
    shared = Enricher(config)
    for org in [*orgs, *reversed(orgs), *orgs]:
        assert facts(shared(ev(ip="sts.amazonaws.com", as_org=org)).network) == fresh[org], org
    # An event's name and the address's own: the first name that says a provider wins, and every
    # name counts for hosting, so the answers are kept per ordered names, not per first name or set.
    pairs = [("Google LLC", "Microsoft Corporation"), ("Microsoft Corporation", "Google LLC"),
             ("Deutsche Telekom AG", "digitalocean llc"), ("Deutsche Telekom AG", "GOOGLE-FIBER")]
    answers = [shared._org_facts(names) for names in pairs]  # noqa: SLF001 -- two names reach it only with an address's own
    assert [(a.provider, a.hosting) for a in answers] == [("gcp", True), ("azure", True), ("digitalocean", True), (None, False)]
    assert answers == [Enricher(config)._org_facts(names) for names in pairs]  # noqa: SLF001 -- each fresh enricher's first answer


def test_hosting_by_configured_cidr_and_asn() -> None:
    enrich = Enricher(EnrichConfig(hosting_as_orgs=[], hosting_asns=[3320], hosting_cidrs=["79.200.0.0/16"]))
    assert enrich(ev(ip="79.200.1.10")).network.hosting is True
    assert enrich(ev(ip="84.150.2.2")).network.hosting is False  # not listed
    assert enrich(ev(ip="84.150.2.2", asn=3320)).network.hosting is True
    assert enrich(ev(ip="88.198.10.10")).network.hosting is False  # org list emptied


def test_default_hosting_asns_include_the_big_clouds() -> None:
    assert {16509, 15169, 8075, 14061, 24940}.issubset(DEFAULT_HOSTING_ASNS)


# --- cloud provider --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ip", "provider"),
    [
        ("3.120.5.5", "aws"),  # AMAZON-02 (EC2 Frankfurt)
        ("52.95.110.1", "aws"),  # AMAZON-02
        ("15.177.1.1", "aws"),  # AMAZON-AES
        ("2600:1f18::1", "aws"),  # AMAZON-AES, IPv6
        ("35.190.1.1", "gcp"),  # GOOGLE
        ("34.64.1.1", "gcp"),  # Google Asia Pacific Pte. Ltd.
        ("34.102.136.180", "gcp"),  # GOOGLE-CLOUD-PLATFORM
        ("20.50.1.1", "azure"),  # MICROSOFT-CORP-MSN-AS-BLOCK
        ("40.74.1.1", "azure"),
        ("129.146.1.1", "oracle"),  # ORACLE-BMC-31898
        ("47.88.1.1", "alibaba"),  # Alibaba US Technology Co., Ltd.
        ("139.59.1.1", "digitalocean"),  # DIGITALOCEAN-ASN
        ("79.200.1.10", None),  # Deutsche Telekom: residential
        ("23.228.128.1", None),  # GOOGLE-FIBER: residential, not GCP
        ("10.0.0.1", None),  # private
    ],
)
def test_provider_by_shipped_as_name(enricher: Enricher, ip: str, provider: str | None) -> None:
    assert enricher(ev(ip=ip)).network.provider == provider


@pytest.mark.parametrize(
    ("service", "provider"),
    [
        ("ec2.amazonaws.com", "aws"),
        ("sts.AmazonAWS.com.", "aws"),
        ("AWS Internal", "aws"),  # CloudTrail's sourceIPAddress for AWS-internal calls
        ("notamazonaws.com", None),  # a suffix, not a substring
        ("cloudbuild.example.com", None),
    ],
)
def test_provider_of_service_callers_needs_no_ip(enricher: Enricher, service: str, provider: str | None) -> None:
    net = enricher(ev(service=service)).network
    assert net.provider == provider
    assert net.geo is None and net.hosting is None  # a service name is not a network


def test_provider_by_event_asn_and_as_org(enricher: Enricher) -> None:
    assert enricher(ev(asn=8075)).network.provider == "azure"
    assert enricher(ev(ip="ec2.amazonaws.com", asn=396982)).network.provider == "gcp"
    assert enricher(ev(ip="79.200.1.10", asn=16509)).network.provider == "aws"  # the source's ASN wins
    assert enricher(ev(as_org="Amazon.com, Inc.")).network.provider == "aws"
    assert enricher(ev(as_org="google fiber inc.")).network.provider is None
    assert enricher(ev(as_org="Subex Azure Limited")).network.provider is None
    assert enricher(ev(asn=3320)).network.provider is None


def test_provider_the_event_carries_is_kept(enricher: Enricher) -> None:
    assert enricher(ev(ip="3.120.5.5", provider="corp-cloud")).network.provider == "corp-cloud"
    e = ev(service="ec2.amazonaws.com", provider="aws")
    assert enricher(e) is e


def test_provider_tables_accept_the_list_form_and_a_table() -> None:
    config = EnrichConfig(
        providers=["Hetzner: Hetzner", "corp: ACME Cloud, ACME-NET", "corp: Example Hosting"],
        provider_asns={"corp": [64500]},
        provider_services=["gcp: googleapis.com"],
    )
    assert config.providers == {"hetzner": ("Hetzner",), "corp": ("ACME Cloud", "ACME-NET", "Example Hosting")}
    enrich = Enricher(config)
    assert enrich(ev(ip="88.198.10.10")).network.provider == "hetzner"
    assert enrich(ev(as_org="acme-net gmbh")).network.provider == "corp"
    assert enrich(ev(asn=64500)).network.provider == "corp"
    assert enrich(ev(service="cloudbuild.googleapis.com")).network.provider == "gcp"
    assert enrich(ev(ip="3.120.5.5")).network.provider is None  # the defaults are replaced
    with pytest.raises(ValidationError, match="is not 'provider: item, item'"):
        EnrichConfig(providers=["aws Amazon"])
    with pytest.raises(ValidationError, match="needs a name"):
        EnrichConfig(provider_asns={" ": [1]})


def test_provider_defaults_are_a_subset_of_the_hosting_defaults() -> None:
    assert EnrichConfig().providers == DEFAULT_PROVIDERS
    assert {"aws", "gcp", "azure", "oracle", "alibaba", "ibm", "tencent", "huawei"} <= set(DEFAULT_PROVIDERS)
    assert set(DEFAULT_PROVIDER_ASNS) <= set(DEFAULT_PROVIDERS)
    for asns in DEFAULT_PROVIDER_ASNS.values():
        assert set(asns) <= set(DEFAULT_HOSTING_ASNS)
    enrich = Enricher(EnrichConfig(hosting_as_orgs=DEFAULT_HOSTING_AS_ORGS))
    for words in DEFAULT_PROVIDERS.values():
        for word in words:
            assert enrich(ev(as_org=word)).network.hosting is True, word


def test_defaults_render_as_toml_that_loads_back() -> None:
    import tomllib

    from pipeline.config import defaults_toml

    section = tomllib.loads(defaults_toml())["enrich"]
    assert EnrichConfig(**section) == EnrichConfig()


# --- country names and event geo -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Germany", "DE"),
        ("United Kingdom", "GB"),
        ("United States", "US"),
        ("united states of america", "US"),
        ("USA", "US"),
        ("UK", "GB"),
        ("de", "DE"),
        ("Russia", "RU"),
        ("Russian Federation", "RU"),
        ("South Korea", "KR"),
        ("Korea, Republic of", "KR"),
        ("Czechia", "CZ"),
        ("Czech Republic", "CZ"),
        ("Türkiye", "TR"),
        ("Turkey", "TR"),
        ("Viet Nam", "VN"),
        ("Côte d'Ivoire", "CI"),
        ("St Kitts & Nevis", "KN"),
        ("The Netherlands", "NL"),
        ("Netherlands", "NL"),
        ("DEU", "DE"),  # ISO alpha-3
        ("Atlantis", "Atlantis"),  # unknown: kept as given
        ("Deutschland", "Deutschland"),
        ("中国", "中国"),
    ],
)
def test_event_country_names_become_iso_codes(enricher: Enricher, name: str, code: str) -> None:
    geo = Geo(country=name, city="X", lat=50.0, lon=10.0, accuracy_km=10, source="event")
    out = enricher(ev(ip="88.198.10.10", geo=geo)).network.geo
    assert out == geo.model_copy(update={"country": code})


def test_every_geolite2_country_name_is_known() -> None:
    """The names Okta's geographicalContext uses come from the same GeoLite2 data."""
    import geoip2fast.geoip2fast as g2f

    geoip2fast_source()  # loads the data
    names = getattr(g2f, "geoipCountryNamesDict", None)
    assert names, "geoip2fast moved its country-name table: update this test to find it"
    countries = {code: name for code, name in names.items() if len(code) == 2 and code.isalpha() and code != "EU"}
    assert len(countries) > 240
    assert {code: country_code(name) for code, name in countries.items()} == {c: c for c in countries}


def test_event_geo_without_accuracy_gets_the_default(enricher: Enricher) -> None:
    geo = Geo(country="Germany", lat=50.48, lon=12.37, source="event")
    out = enricher(ev(ip="88.198.10.10", geo=geo)).network.geo
    assert out is not None and out.country == "DE" and out.accuracy_km == 50.0 and out.lat == 50.48
    no_position = enricher(ev(ip="88.198.10.10", geo=Geo(country="DE", source="event"))).network.geo
    assert no_position is not None and no_position.accuracy_km is None
    narrow = Enricher(EnrichConfig(event_geo_accuracy_km=5))
    assert narrow(ev(geo=geo)).network.geo.accuracy_km == 5.0  # type: ignore[union-attr]  # the event's own geo is kept: a None fails the test just the same


def test_event_geo_is_fixed_without_any_address(enricher: Enricher) -> None:
    e = ev(geo=Geo(country="United Kingdom", lat=51.5, lon=-0.12, accuracy_km=20, source="event"))
    assert enricher(e).network.geo == Geo(country="GB", lat=51.5, lon=-0.12, accuracy_km=20, source="event")
    ok = ev(geo=Geo(country="GB", lat=51.5, lon=-0.12, accuracy_km=20, source="event"))
    assert enricher(ok) is ok


def test_fixed_event_geo_is_served_from_the_network_cache() -> None:
    enrich = Enricher()
    geo = Geo(country="Germany", lat=50.48, lon=12.37, source="event")
    first = enrich(ev(ip="88.198.10.10", geo=geo)).network
    assert enrich(ev(ip="88.198.10.10", geo=geo)).network is first


# --- allowlisted egress ----------------------------------------------------------


def test_allowlist_by_cidr(enricher: Enricher) -> None:
    assert enricher(ev(ip="198.51.100.7")).network.egress == "corp-proxy"
    assert enricher(ev(ip="2001:db8:42::9")).network.egress == "corp-proxy"
    assert enricher(ev(ip="10.8.3.4")).network.egress == "corp-vpn"  # private ranges too
    assert enricher(ev(ip="10.9.3.4")).network.egress is None


def test_allowlist_by_asn_and_by_org(enricher: Enricher) -> None:
    assert enricher(ev(ip="88.198.10.10", asn=64500)).network.egress == "corp-vpn"
    assert enricher(ev(ip="79.200.1.10")).network.egress == "partner"  # shipped org name
    assert enricher(ev(ip="88.198.10.10")).network.egress is None


def test_first_allowlist_entry_wins() -> None:
    enrich = Enricher(EnrichConfig(allowlist=[
        {"name": "first", "as_orgs": ["Telekom"]},
        {"name": "second", "cidrs": ["79.200.0.0/16"]},
    ]))
    assert enrich(ev(ip="79.200.1.10")).network.egress == "first"


# --- configuration ---------------------------------------------------------------


def test_bad_cidr_names_the_entry() -> None:
    with pytest.raises(ValueError, match=r"allowlist entry 'corp-vpn'.*'10\.0\.0\.0/33'"):
        EnrichConfig(allowlist=[{"name": "corp-vpn", "cidrs": ["10.0.0.0/33"]}])
    with pytest.raises(ValueError, match=r"hosting_cidrs.*'tor-exits'"):
        EnrichConfig(hosting_cidrs=["tor-exits"])


def test_allowlist_entry_needs_a_matcher_and_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="no cidrs, asns or as_orgs"):
        EnrichConfig(allowlist=[{"name": "empty"}])
    with pytest.raises(ValidationError):
        EnrichConfig(allow_list=[])  # type: ignore[call-arg]  # the misspelt key on purpose: it must be refused


def test_every_config_field_is_described() -> None:
    from pipeline.ingest.enrich import AllowlistEntry

    for model in (EnrichConfig, AllowlistEntry):
        assert all(f.description for f in model.model_fields.values()), model


# --- cache -----------------------------------------------------------------------


def test_repeated_network_is_served_from_the_caches_and_the_caches_are_bounded() -> None:
    enrich = Enricher(EnrichConfig(cache_size=2, network_cache_size=2))
    first = enrich(ev(ip="79.200.1.10", user_agent="a"))
    second = enrich(ev(ip="79.200.1.10", user_agent="a"))
    assert second.network is first.network  # whole-network cache: no copy of the network
    other_agent = enrich(ev(ip="79.200.1.10", user_agent="b"))
    assert other_agent.network.user_agent == "b" and other_agent.network.geo is first.network.geo
    assert enrich.cache_info().hits == 1  # per-IP cache served the second user agent
    for ip in ("8.8.8.8", "88.198.10.10", "139.59.1.1"):
        enrich(ev(ip=ip))
    assert enrich.cache_info().currsize == 2
    assert len(enrich._networks) <= 2  # noqa: SLF001 -- the bound of the cache is the point; no public size
    no_network_cache = Enricher(EnrichConfig(network_cache_size=0))
    assert no_network_cache(ev(ip="8.8.8.8")).network.geo is not None
    assert not no_network_cache._networks  # noqa: SLF001 -- the bound of the cache is the point; no public size


# --- optional .mmdb ----------------------------------------------------------------


class U16(int):
    pass


class U64(int):
    pass


def _ctrl(type_: int, size: int) -> bytes:
    head, extra = (size, b"") if size < 29 else (29, bytes([size - 29]))
    return bytes([(type_ << 5) | head]) + extra if type_ <= 7 else bytes([head, type_ - 7]) + extra


def _encode(value: Any) -> bytes:
    if isinstance(value, str):
        return _ctrl(2, len(value.encode())) + value.encode()
    if isinstance(value, float):
        return _ctrl(3, 8) + struct.pack(">d", value)
    if isinstance(value, int):
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return _ctrl(5 if isinstance(value, U16) else 9 if isinstance(value, U64) else 6, len(raw)) + raw
    if isinstance(value, dict):
        return _ctrl(7, len(value)) + b"".join(_encode(k) + _encode(v) for k, v in value.items())
    if isinstance(value, list):
        return _ctrl(11, len(value)) + b"".join(_encode(v) for v in value)
    raise TypeError(value)


def write_mmdb(path: Path, records: list[tuple[str, dict[str, Any]]], database_type: str) -> Path:
    """A valid IPv4-only MaxMind DB holding ``records`` (cidr -> record)."""
    nodes: list[list[tuple[str, int] | None]] = [[None, None]]
    data = b""
    for cidr, record in records:
        net = ip_network(cidr)
        offset, data = len(data), data + _encode(record)
        node, bits = 0, int(net.network_address)
        for depth in range(net.prefixlen):
            bit = (bits >> (31 - depth)) & 1
            if depth == net.prefixlen - 1:
                nodes[node][bit] = ("data", offset)
                break
            if nodes[node][bit] is None:
                nodes.append([None, None])
                nodes[node][bit] = ("node", len(nodes) - 1)
            node = nodes[node][bit][1]  # type: ignore[index]  # the walk follows only the ("node", i) entries set above
    count = len(nodes)

    def pointer(rec: tuple[str, int] | None) -> int:
        return count if rec is None else rec[1] if rec[0] == "node" else count + 16 + rec[1]

    tree = b"".join(pointer(a).to_bytes(3, "big") + pointer(b).to_bytes(3, "big") for a, b in nodes)
    meta = {
        "node_count": count, "record_size": U16(24), "ip_version": U16(4), "database_type": database_type,
        "languages": ["en"], "binary_format_major_version": U16(2), "binary_format_minor_version": U16(0),
        "build_epoch": U64(1_700_000_000), "description": {"en": "tokenwatch test"},
    }
    path.write_bytes(tree + b"\x00" * 16 + data + b"\xab\xcd\xefMaxMind.com" + _encode(meta))
    return path


@pytest.fixture(scope="module")
def mmdb_enricher(tmp_path_factory: pytest.TempPathFactory) -> Enricher:
    tmp = tmp_path_factory.mktemp("mmdb")
    city = write_mmdb(tmp / "city.mmdb", [
        ("88.198.0.0/16", {
            "city": {"names": {"en": "Falkenstein", "de": "Falkenstein"}},
            "country": {"iso_code": "DE"},
            "location": {"latitude": 50.4779, "longitude": 12.3713, "accuracy_radius": U16(20)},
        }),
        ("79.200.0.0/16", {"city": {"names": {"en": "Berlin"}}, "country": {"iso_code": "DE"},
                           "location": {"latitude": 52.52, "longitude": 13.405}}),  # DB-IP: no radius
        ("8.8.8.0/24", {"country": {"iso_code": "US"}}),  # country only
    ], "GeoLite2-City")
    asn = write_mmdb(tmp / "asn.mmdb", [
        ("88.198.0.0/16", {"autonomous_system_number": 24940,
                           "autonomous_system_organization": "Hetzner Online GmbH"}),
    ], "GeoLite2-ASN")
    return Enricher(EnrichConfig(mmdb_path=city, asn_mmdb_path=asn, hosting_as_orgs=[],
                                 mmdb_default_accuracy_km=50))


def test_city_level_geo_from_mmdb(mmdb_enricher: Enricher) -> None:
    net = mmdb_enricher(ev(ip="88.198.10.10")).network
    assert net.geo == Geo(country="DE", city="Falkenstein", lat=50.4779, lon=12.3713,
                          accuracy_km=20.0, source="city_db")
    assert net.asn == 24940 and net.as_org == "Hetzner Online GmbH"
    assert net.hosting is True  # by ASN, since the org list is emptied here


def test_mmdb_without_radius_and_without_location(mmdb_enricher: Enricher) -> None:
    berlin = mmdb_enricher(ev(ip="79.200.1.10")).network.geo
    assert berlin is not None and berlin.city == "Berlin" and berlin.accuracy_km == 50.0
    us = mmdb_enricher(ev(ip="8.8.8.8")).network.geo
    assert us is not None and us.source == "country_db" and us.country == "US" and us.lat is not None


def test_ip_missing_from_mmdb_falls_back_to_shipped_data(mmdb_enricher: Enricher) -> None:
    net = mmdb_enricher(ev(ip="139.59.1.1")).network
    assert net.geo is not None and net.geo.source == "country_db" and net.geo.country == "IN"
    v6 = mmdb_enricher(ev(ip="2a01:4f8::1")).network  # IPv6 in an IPv4-only file: no crash
    assert v6.geo is not None and v6.geo.country == "DE" and v6.geo.source == "country_db"


def test_event_asn_beats_mmdb_asn(mmdb_enricher: Enricher) -> None:
    assert mmdb_enricher(ev(ip="88.198.10.10", asn=64500)).network.asn == 64500


def test_unreadable_mmdb_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mmdb_path"):
        Enricher(EnrichConfig(mmdb_path=tmp_path / "missing.mmdb"))
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    with pytest.raises(ValueError, match="asn_mmdb_path"):
        Enricher(EnrichConfig(asn_mmdb_path=tmp_path / "junk.mmdb"))


def test_reader_can_be_injected() -> None:
    class Reader:
        def get(self, ip: str) -> Any:
            raise RuntimeError("corrupt record")

    locator = IpLocator(city_reader=Reader())
    info = locator.lookup("88.198.10.10")
    assert info.geo is not None and info.geo.source == "country_db"


def test_loading_the_shipped_geo_tables_starts_no_process() -> None:
    """geoip2fast's loader ran `ps` twice to report its memory use (~70 ms at every start)."""
    code = (
        "import subprocess\n"
        "started = []\n"
        "real = subprocess.Popen.__init__\n"
        "def spy(self, *args, **kwargs):\n"
        "    started.append(args[0] if args else kwargs.get('args'))\n"
        "    real(self, *args, **kwargs)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from pipeline.ingest.geoip import IpLocator\n"
        "print(IpLocator().lookup('79.200.1.10').geo.country, started)\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["DE", "[]"]
