"""Egress lists: the file formats, bad lines reported with file:line, start-up errors,
reload on change, and what enrichment sets from them.

List shapes, from their publishers' documentation:
- the Tor Project's bulk exit list (check.torproject.org/torbulkexitlist): one address a line;
- a threat-intel export ``cidr,label``;
- Apple's Private Relay egress ranges, linked from "Prepare your network or web server for
  iCloud Private Relay": an RFC 8805 geofeed, ``ip_prefix,country,region,city,postal``;
- Microsoft's "Office 365 worldwide endpoints", Exchange Online (ID 1): 40.96.0.0/13, 52.96.0.0/14.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from detectors.base import Finding
from detectors.geo import UNLOCATED_ACCURACY_KM
from detectors.replay import REFRESH_REUSE
from pipeline.analyst.render import source_line
from pipeline.ingest.egress_lists import EgressListError, EgressLists, ListSource, parse_list
from pipeline.ingest.enrich import EnrichConfig, Enricher
from pipeline.ingest.geoip import parse_ip
from pipeline.runtime.alerting import Alerter
from schemas.events import CanonicalEvent, Geo, NetClass, Network
from tests.factories import event

TOR_BULK = "185.220.101.1\n185.220.101.2\n2a0b:f4c2::1\n"
THREAT_CSV = "cidr,label\n94.134.1.0/24,residential-proxy\n203.0.113.0/24,botnet-c2\n"
APPLE_GEOFEED = "172.224.226.0/27,GB,GB-EN,London,\n172.224.227.0/27,BR,BR-SP,Sao Paulo,\n"
EXCHANGE_ONLINE = "40.96.0.0/13\n52.96.0.0/14\n2603:1006::/40\n"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def parse(text: str, net_class: NetClass = "relay", max_entries: int = 100) -> Any:
    return parse_list(Path("l.txt"), text.splitlines(), net_class, max_entries)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the file format --------------------------------------------------------------


def test_every_entry_form_and_comments() -> None:
    parsed = parse("# header comment\n\n10.1.2.3\n10.9.0.0/16  # inline\nAS64500\nas7155\norg: Gogo Business\n")
    assert parsed.cidrs == ("10.1.2.3/32", "10.9.0.0/16")
    assert parsed.asns == frozenset({64500, 7155})
    assert parsed.orgs == ("Gogo Business",)
    assert parsed.problems == ()


def test_tor_bulk_exit_list_threat_csv_and_apple_geofeed() -> None:
    assert parse(TOR_BULK, "reputation").cidrs == ("185.220.101.1/32", "185.220.101.2/32", "2a0b:f4c2::1/128")
    threat = parse(THREAT_CSV, "reputation")
    assert threat.cidrs == ("94.134.1.0/24", "203.0.113.0/24") and threat.problems == ()
    assert parse(APPLE_GEOFEED).cidrs == ("172.224.226.0/27", "172.224.227.0/27")


def test_bad_lines_are_reported_with_file_and_line_and_skipped() -> None:
    parsed = parse("10.0.0.0/8\n10.0.0.300/24\norg:\nAS\nhello world\n" + "1" * 1100 + "\n11.0.0.0/8\n")
    assert parsed.cidrs == ("10.0.0.0/8", "11.0.0.0/8")
    assert [str(p) for p in parsed.problems] == [
        "l.txt:2: '10.0.0.300/24' is not a range, an address, AS<number> or org: <AS name>",
        "l.txt:3: org: needs AS organisation words",
        "l.txt:4: 'AS' is not a range, an address, AS<number> or org: <AS name>",
        "l.txt:5: 'hello world' is not a range, an address, AS<number> or org: <AS name>",
        "l.txt:6: longer than 1024 characters",
    ]


def test_a_header_is_only_a_header_on_the_first_line() -> None:
    assert [str(p) for p in parse("10.0.0.0/8\ncidr,label\n").problems] == [
        "l.txt:2: 'cidr' is not a range, an address, AS<number> or org: <AS name>",
    ]


def test_a_provider_list_takes_ranges_only() -> None:
    """An AS number or name of a cloud covers machines anyone can rent: a thief's VM."""
    parsed = parse("52.96.0.0/14\nAS8075\norg: Microsoft\n", "provider")
    assert parsed.cidrs == ("52.96.0.0/14",) and not parsed.asns and not parsed.orgs
    assert [p.line for p in parsed.problems] == [2, 3]
    assert "ranges only" in parsed.problems[0].message


def test_entries_are_capped_per_file() -> None:
    parsed = parse("10.0.0.1\n10.0.0.2\n10.0.0.3\n10.0.0.4\n", max_entries=2)
    assert parsed.cidrs == ("10.0.0.1/32", "10.0.0.2/32")
    assert [str(p) for p in parsed.problems] == ["l.txt:3: more than 2 entries; the rest are ignored"]


def test_bad_lines_are_logged_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "tor.txt", "185.220.101.1\nnot-an-ip\n")
    with caplog.at_level(logging.WARNING, logger="pipeline.ingest.egress_lists"):
        lists = EgressLists([ListSource("tor", "reputation", path)])
    assert [str(p) for p in lists.problems] == [
        f"{path}:2: 'not-an-ip' is not a range, an address, AS<number> or org: <AS name>"
    ]
    assert f"egress list 'tor': {path}:2:" in caplog.text


# --- start-up and reload -------------------------------------------------------------


def test_a_missing_file_is_a_clear_start_up_error(tmp_path: Path) -> None:
    with pytest.raises(EgressListError, match=r"egress list 'tor': '.*/absent.txt' does not exist"):
        EgressLists([ListSource("tor", "reputation", tmp_path / "absent.txt")])
    config = EnrichConfig(egress_lists=[{"name": "tor", "class": "reputation", "path": str(tmp_path / "absent.txt")}])
    with pytest.raises(ValueError, match=r"^enrich.egress_lists: egress list 'tor': .* does not exist"):
        Enricher(config)


def test_a_file_over_the_size_cap_is_refused_at_start_up(tmp_path: Path) -> None:
    path = write(tmp_path, "big.txt", TOR_BULK)
    with pytest.raises(EgressListError, match="larger than 10 bytes"):
        EgressLists([ListSource("tor", "reputation", path)], max_bytes=10)


def test_class_is_a_config_key_and_must_be_known(tmp_path: Path) -> None:
    config = EnrichConfig.model_validate({"egress_lists": [{"name": "m365", "class": "provider", "path": "/x"}]})
    assert config.egress_lists[0].net_class == "provider"
    with pytest.raises(ValidationError):
        EnrichConfig.model_validate({"egress_lists": [{"name": "x", "class": "vpn", "path": "/x"}]})


def test_reload_on_change_at_most_every_interval(tmp_path: Path) -> None:
    path = write(tmp_path, "tor.txt", "185.220.101.1\n")
    clock = Clock()
    lists = EgressLists([ListSource("tor", "reputation", path)], reload_interval_s=30, clock=clock)
    new_exit = parse_ip("185.220.101.9")
    assert lists.classify(new_exit, None, ()) is None
    path.write_text("185.220.101.1\n185.220.101.9\n")
    clock.now = 29.0
    assert lists.refresh() is False and lists.classify(new_exit, None, ()) is None  # not checked yet
    clock.now = 30.0
    assert lists.refresh() is True
    assert lists.classify(new_exit, None, ()) == ("reputation", "tor")
    clock.now = 60.0
    assert lists.refresh() is False  # checked, unchanged


def test_a_file_that_disappears_keeps_its_entries(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "tor.txt", "185.220.101.1\n")
    clock = Clock()
    lists = EgressLists([ListSource("tor", "reputation", path)], reload_interval_s=1, clock=clock)
    path.unlink()
    clock.now = 5.0
    with caplog.at_level(logging.ERROR, logger="pipeline.ingest.egress_lists"):
        assert lists.refresh() is False
    assert "is gone; keeping its 1 entries" in caplog.text
    assert lists.classify(parse_ip("185.220.101.1"), None, ()) == ("reputation", "tor")
    path.write_text("185.220.101.2\n")
    clock.now = 10.0
    assert lists.refresh() is True
    assert lists.classify(parse_ip("185.220.101.1"), None, ()) is None


def test_reputation_wins_over_any_other_list(tmp_path: Path) -> None:
    relay = write(tmp_path, "relay.txt", "172.224.0.0/12\n")
    intel = write(tmp_path, "intel.csv", "172.224.226.7,abused-relay-exit\n")
    lists = EgressLists([ListSource("relay", "relay", relay), ListSource("intel", "reputation", intel)])
    assert lists.classify(parse_ip("172.224.226.7"), None, ()) == ("reputation", "intel")
    assert lists.classify(parse_ip("172.224.226.8"), None, ()) == ("relay", "relay")


# --- enrichment ------------------------------------------------------------------------


def ev(**network: Any) -> CanonicalEvent:
    return event("used", 0, token="t1", place=None).model_copy(update={"network": Network(**network)})


def lists_config(tmp_path: Path, **extra: Any) -> EnrichConfig:
    return EnrichConfig(egress_lists=[
        {"name": "tor-exits", "class": "reputation", "path": str(write(tmp_path, "tor.txt", TOR_BULK))},
        {"name": "threat-intel", "class": "reputation", "path": str(write(tmp_path, "ti.csv", THREAT_CSV))},
        {"name": "private-relay", "class": "relay", "path": str(write(tmp_path, "pr.csv", APPLE_GEOFEED))},
        {"name": "exchange-online", "class": "provider", "path": str(write(tmp_path, "exo.txt", EXCHANGE_ONLINE))},
    ], **extra)


def test_enrichment_sets_the_class_and_what_it_means_for_the_position(tmp_path: Path) -> None:
    enricher = Enricher(lists_config(tmp_path))
    relay = enricher(ev(ip="172.224.226.1")).network
    assert (relay.net_class, relay.net_list, relay.as_org, relay.hosting) == ("relay", "private-relay", "AKAMAI-AS", True)
    assert relay.geo is not None and relay.geo.country == "GB" and relay.geo.accuracy_km == 1000.0
    provider = enricher(ev(ip="52.96.1.1")).network
    assert (provider.net_class, provider.net_list) == ("provider", "exchange-online")
    assert provider.geo is not None and provider.geo.accuracy_km == UNLOCATED_ACCURACY_KM
    proxy = enricher(ev(ip="94.134.1.5", hosting=False)).network
    assert (proxy.net_class, proxy.net_list, proxy.hosting) == ("reputation", "threat-intel", True)
    home = enricher(ev(ip="79.200.1.10")).network
    assert (home.net_class, home.net_list, home.hosting) == (None, None, False)


def test_a_source_geo_on_a_listed_network_gets_the_class_accuracy(tmp_path: Path) -> None:
    enricher = Enricher(lists_config(tmp_path))
    geo = Geo(country="GB", city="London", lat=51.5, lon=-0.12, accuracy_km=20.0, source="event")
    net = enricher(ev(ip="172.224.226.1", geo=geo)).network
    assert net.geo == geo.model_copy(update={"accuracy_km": 1000.0})


def test_shipped_in_flight_list_is_on_by_default_and_relay_is_one_line_away() -> None:
    viasat = Enricher()(ev(ip="75.105.0.1")).network
    assert (viasat.net_class, viasat.net_list, viasat.as_org) == ("in_flight", "shipped-in_flight", "VIASAT-SP-BACKBONE")
    assert viasat.geo is not None and viasat.geo.accuracy_km == UNLOCATED_ACCURACY_KM
    assert Enricher()(ev(ip="172.224.226.1")).network.net_class is None
    with_relay = Enricher(EnrichConfig(shipped_egress_lists=("in_flight", "relay")))
    for ip in ("172.224.226.1", "172.225.1.1", "104.16.1.1", "146.75.1.1"):  # Akamai, Cloudflare, Fastly
        assert with_relay(ev(ip=ip)).network.net_list == "shipped-relay", ip
    assert with_relay(ev(ip="172.105.1.1", as_org="Akamai Connected Cloud")).network.net_class is None  # Linode
    assert Enricher(EnrichConfig(shipped_egress_lists=()), egress_lists=None).egress_lists is None


def test_shipped_lists_parse_without_problems() -> None:
    lists = Enricher(EnrichConfig(shipped_egress_lists=("in_flight", "relay"))).egress_lists
    assert lists is not None and lists.problems == ()


def test_the_enricher_sees_a_changed_list_through_its_caches(tmp_path: Path) -> None:
    path = write(tmp_path, "tor.txt", "185.220.101.1\n")
    clock = Clock()
    lists = EgressLists([ListSource("tor", "reputation", path)], reload_interval_s=10, clock=clock)
    enricher = Enricher(EnrichConfig(shipped_egress_lists=()), egress_lists=lists)
    use = ev(ip="94.134.1.5")
    assert enricher(use).network.net_class is None
    path.write_text("185.220.101.1\n94.134.1.0/24\n")
    clock.now = 10.0
    assert enricher(use).network.net_list == "tor"


# --- end to end: `tokenwatch detect` on an Entra sign-in and Graph activity ------------------


def _detect_graph_use(ip: str, tmp_path: Path | None) -> list[tuple[str, str | None]]:
    """The sample refresh in Munich, then a Graph call with the token from ``ip``."""
    from tests.detect_helpers import detect_lines
    from tests.pipeline.test_e2e_entra_graph import ENTRA, _graph

    settings = {"enrich": lists_config(tmp_path).model_dump(by_alias=True)} if tmp_path is not None else None
    found = detect_lines([ENTRA[1], _graph(1, IPAddress=ip)], settings)
    assert found.dead_letters == []
    return [(rule, token) for rule, token in found.hits if rule.startswith("geo_divergence.")]


def test_detect_graph_called_from_exchange_online_and_via_private_relay_is_quiet(tmp_path: Path) -> None:
    from tests.pipeline.test_e2e_entra_graph import TOKEN

    before = [("geo_divergence.impossible_travel", TOKEN), ("geo_divergence.issue_use_divergence", TOKEN)]
    assert _detect_graph_use("52.96.1.1", None) == before  # US, Microsoft's AS: hosting
    assert _detect_graph_use("52.96.1.1", tmp_path) == []
    assert _detect_graph_use("172.224.226.1", None) == before  # Akamai's relay egress, GB: hosting
    assert _detect_graph_use("172.224.226.1", tmp_path) == []


def test_detect_graph_called_from_a_vm_in_microsofts_as_still_alerts(tmp_path: Path) -> None:
    from tests.pipeline.test_e2e_entra_graph import TOKEN

    assert _detect_graph_use("20.50.1.1", tmp_path) == [("geo_divergence.issue_use_divergence", TOKEN)]


def test_an_alert_from_a_tor_exit_names_it_so(tmp_path: Path) -> None:
    """The alert's source carries the egress list and its class, so `alerts show` can say
    "Tor exit" from the operator's own Tor list, not only from the AS name."""
    used = Enricher(lists_config(tmp_path))(ev(ip="185.220.101.1", as_org="Some Hosting GmbH"))
    rule = REFRESH_REUSE
    alerter = Alerter()
    alerter.add(Finding(rule=rule, event=used, key="t1", summary="A test finding.", evidence=()))
    [alert] = alerter.flush()
    source = alert.to_json_dict()["source"]
    assert (source["net_class"], source["net_list"]) == ("reputation", "tor-exits")
    assert "Tor exit" in source_line(alert.to_json_dict())
    home = Enricher(lists_config(tmp_path))(ev(ip="79.200.1.10", as_org="Deutsche Telekom AG"))
    alerter.add(Finding(rule=rule, event=home, key="t2", summary="A test finding.", evidence=()))
    [quiet] = alerter.flush()
    assert "Tor" not in source_line(quiet.to_json_dict())
