"""Geo rules on relay, in-flight, provider and reputation networks: the benign case
is quiet, a theft through the same class still alerts where the evidence proves it.

Events go through the real enricher with egress-list files written here (shapes as in
tests/pipeline/test_egress_lists.py), then through every detector. Each benign case is
also run without the lists, to show what it raised before. Only the geo rules' alerts
are asserted: replay.concurrent_use's reading of the class is another change.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.ingest.enrich import EnrichConfig, Enricher
from schemas.events import CanonicalEvent
from tests.detectors.test_geo_divergence import DIVERGENCE, HOUR, MIN, TRAVEL, issued, used
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, NEW_YORK_HOME, Place, rule_hits, run

# iCloud Private Relay egress (Akamai's relay AS; Apple's egress CSV lists the ranges).
RELAY_FRANKFURT = Place("172.224.226.1", "DE", "Frankfurt", 50.11, 8.68, 36183, "AKAMAI-AS", hosting=True)
RELAY_PARIS = Place("172.224.226.9", "FR", "Paris", 48.86, 2.35, 36183, "AKAMAI-AS", hosting=True)
RELAY_SAO_PAULO = Place("172.224.227.1", "BR", "Sao Paulo", -23.55, -46.63, 36183, "AKAMAI-AS", hosting=True)
# Airline Wi-Fi: the address geolocates to the provider's ground network, not the plane.
IN_FLIGHT = Place("75.105.0.1", "US", "Carlsbad", 33.16, -117.35, 7155, "VIASAT-SP-BACKBONE")
# Exchange Online (Microsoft's Office 365 endpoints, ID 1) calling on the user's behalf...
EXCHANGE_ONLINE = Place("52.96.1.1", "US", "Boydton", 36.67, -78.39, 8075, "MICROSOFT-CORP-MSN-AS-BLOCK", hosting=True)
# ...and a thief's Azure VM: the same AS, not the provider's service range.
AZURE_VM = Place("20.50.1.1", "NL", "Amsterdam", 52.37, 4.90, 8075, "MICROSOFT-CORP-MSN-AS-BLOCK", hosting=True)
# A residential proxy on a threat-intel list: same country, an ordinary ISP by name.
PROXY_MUNICH = Place("94.134.1.5", "DE", "Munich", 48.14, 11.58, 6805, "Telefonica Germany")

APPLE_EGRESS = "172.224.226.0/27,DE,DE-HE,Frankfurt,\n172.224.227.0/27,BR,BR-SP,Sao Paulo,\n"


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> EnrichConfig:
    root = tmp_path_factory.mktemp("egress")
    files = {"relay.csv": APPLE_EGRESS, "exo.txt": "40.96.0.0/13\n52.96.0.0/14\n", "ti.csv": "94.134.1.0/24,proxy\n"}
    for name, text in files.items():
        (root / name).write_text(text)
    return EnrichConfig(egress_lists=[
        {"name": "private-relay", "class": "relay", "path": str(root / "relay.csv")},
        {"name": "exchange-online", "class": "provider", "path": str(root / "exo.txt")},
        {"name": "threat-intel", "class": "reputation", "path": str(root / "ti.csv")},
    ])


def detect(events: list[CanonicalEvent], config: EnrichConfig | None, **kw: Any) -> list[Any]:
    """The geo alerts of every detector over the events as enriched with ``config`` (None:
    no egress lists at all). replay.concurrent_use reads the class in its own change."""
    enricher = Enricher(config or EnrichConfig(shipped_egress_lists=()))
    return [a for a in run([enricher(e) for e in events], **kw) if a.rule.id.startswith("geo_divergence.")]


# -- relay --------------------------------------------------------------------------------


def test_private_relay_user_is_quiet(lists: EnrichConfig) -> None:
    """Safari through Private Relay (Akamai: a hosting AS by name) between uses from home."""
    events = [issued(0), used(MIN, BERLIN_HOME), used(2 * MIN, RELAY_FRANKFURT), used(3 * MIN, BERLIN_HOME),
              used(4 * MIN, RELAY_PARIS)]
    assert rule_hits(detect(events, None)) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert detect(events, lists) == []


def test_theft_through_a_relay_far_away_is_still_impossible_travel(lists: EnrichConfig) -> None:
    """The relay's position is coarse, not absent: Sao Paulo 9 minutes after Berlin is no
    relay blur. The country and the hosting AS of a relay are not alerted on."""
    events = [issued(0), used(MIN, BERLIN_HOME), used(10 * MIN, RELAY_SAO_PAULO)]
    [alert] = detect(events, lists)
    assert alert.rule.id == TRAVEL and alert.token.id == "at-1"
    # Berlin's city accuracy (25 km) and the relay's (enrich.relay_accuracy_km) are allowed for.
    assert alert.details["effective_distance_km"] == pytest.approx(alert.details["distance_km"] - 1025, abs=0.1)


# -- in-flight ------------------------------------------------------------------------------


def test_in_flight_wifi_is_quiet(lists: EnrichConfig) -> None:
    """Berlin -> Munich by air; the Wi-Fi egress geolocates to California (shipped in-flight list)."""
    events = [issued(0), used(MIN, BERLIN_HOME), used(20 * MIN, IN_FLIGHT), used(40 * MIN, IN_FLIGHT),
              used(HOUR + 30 * MIN, MUNICH_OTHER_ISP)]
    assert rule_hits(detect(events, None)) == [(TRAVEL, "at-1"), (TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert detect(events, lists) == []


def test_a_flight_does_not_launder_ground_travel(lists: EnrichConfig) -> None:
    """In-flight points are skipped, the ground points around them still compared:
    Berlin, then in-flight, then New York 20 minutes after Berlin."""
    berlin = used(MIN, BERLIN_HOME)
    events = [issued(0), berlin, used(5 * MIN, IN_FLIGHT), used(21 * MIN, NEW_YORK_HOME)]
    alerts = detect(events, lists)
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    travel = next(a for a in alerts if a.rule.id == TRAVEL)
    assert travel.details["other_event_id"] == berlin.event_id


def test_in_flight_points_are_not_session_locations(lists: EnrichConfig) -> None:
    events = [
        issued(0, token="at-1", session="s-1"), used(MIN, IN_FLIGHT, token="at-1", session="s-1"),
        issued(2 * MIN, token="at-2", session="s-1"), used(3 * MIN, BERLIN_HOME, token="at-2", session="s-1"),
    ]
    assert rule_hits(detect(events, None)) == [(TRAVEL, "at-1"), (TRAVEL, "at-2"), (DIVERGENCE, "at-1")]
    assert detect(events, lists) == []


# -- provider infrastructure ---------------------------------------------------------------


def test_provider_infrastructure_acting_for_the_user_is_quiet(lists: EnrichConfig) -> None:
    events = [issued(0), used(MIN, BERLIN_HOME), used(2 * MIN, EXCHANGE_ONLINE), used(3 * MIN, BERLIN_HOME)]
    assert rule_hits(detect(events, None)) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert detect(events, lists) == []


def test_theft_from_a_vm_in_the_providers_own_as_still_alerts(lists: EnrichConfig) -> None:
    """A provider list takes ranges only, so renting a VM in AS8075 buys nothing."""
    events = [issued(0), used(MIN, BERLIN_HOME), used(2 * MIN, AZURE_VM)]
    alerts = detect(events, lists)
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    divergence = next(a for a in alerts if a.rule.id == DIVERGENCE)
    assert divergence.alert.severity == "high" and divergence.details["use_hosting"] is True


# -- reputation -----------------------------------------------------------------------------


def test_use_from_a_reputation_listed_network_is_high(lists: EnrichConfig) -> None:
    """Same country, an ISP by name: quiet before; a listed proxy is a move to anonymising."""
    events = [issued(0), used(MIN, BERLIN_HOME), used(5 * MIN, PROXY_MUNICH)]
    assert detect(events, None) == []
    [alert] = detect(events, lists)
    assert (alert.rule.id, alert.alert.severity, alert.alert.risk_score) == (DIVERGENCE, "high", 70)
    assert alert.details["use_net_list"] == "threat-intel"
    assert "a hosting/anonymising network on the list threat-intel" in alert.alert.summary


def test_benign_twin_same_isp_change_off_the_list_is_quiet(lists: EnrichConfig) -> None:
    other_proxy_free = Place("84.150.2.2", "DE", "Munich", 48.14, 11.58, 6805, "Telefonica Germany")
    assert detect([issued(0), used(MIN, BERLIN_HOME), used(5 * MIN, other_proxy_free)], lists) == []


# -- late arrivals: the class recorded in the token state ------------------------------------


def test_a_relay_use_recorded_before_its_issue_arrives_is_quiet(lists: EnrichConfig) -> None:
    events = [used(2 * MIN, RELAY_FRANKFURT), issued(0)]
    assert rule_hits(detect(events, None)) == [(DIVERGENCE, "at-1")]
    assert detect(events, lists) == []


def test_a_token_issued_in_flight_names_no_country(lists: EnrichConfig) -> None:
    """Signed in on the plane (egress in California), used at home after landing."""
    events = [issued(0, place=IN_FLIGHT), used(3 * HOUR, BERLIN_HOME)]
    assert rule_hits(detect(events, None)) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert detect(events, lists) == []
