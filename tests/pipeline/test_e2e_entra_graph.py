"""Entra sign-ins and Graph activity end to end: one token across two formats.

An Entra sign-in issues the token named by ``uniqueTokenIdentifier``; Graph
activity rows name the token they accepted by ``SignInActivityId``. The
issue -> use rules therefore compare the sign-in's place and scopes with the
Graph caller's, through the real normalizer, offline IP enrichment and every
detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from detectors.state import network_key
from pipeline.enrich import Enricher
from pipeline.normalize import Normalizer
from schemas.events import CanonicalEvent
from tests.detect_helpers import NOW, detect_lines

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
ENTRA = [orjson.loads(line) for line in (FORMATS / "entra.jsonl").read_bytes().splitlines()]
GRAPH = [orjson.loads(line) for line in (FORMATS / "graph.jsonl").read_bytes().splitlines()]
TOKEN = "UTI-aaaa0002"
HOME_IP = "79.200.1.10"  # Deutsche Telekom, DE: where the sign-ins happened


def _graph(n: int, **changes: Any) -> dict[str, Any]:
    return {**GRAPH[n], **changes}


def _enriched(raw: dict[str, Any], hasher) -> CanonicalEvent:
    [event] = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(raw), "t:1").events
    return Enricher()(event)


def test_sample_pair_graph_use_from_hosting_network_is_issue_use_divergence() -> None:
    """The samples are the attack: refreshed in Munich on Telekom, used 7.5 min later from DigitalOcean.

    Only the divergence fires: 159.89.1.1 geolocates (country level) to Germany's
    centroid, ~380 km from Munich, below impossible travel's 500 km minimum; and
    the benign use g-1 came 150 s before g-2, outside the 60 s concurrent-use window.
    """
    found = detect_lines([*ENTRA, *GRAPH])
    assert found.dead_letters == []
    assert found.summary.per_format == {"entra": 2, "graph": 2}
    assert found.hits == [("geo_divergence.issue_use_divergence", TOKEN)]
    [alert] = found.alerts
    assert alert["alert"]["severity"] == "high"
    assert "DIGITALOCEAN" in alert["alert"]["summary"] and "hosting" in alert["alert"]["summary"]
    assert [e["event_id"] for e in alert["evidence"]] == ["entra:id-UTI-aaaa0002", "graph:g-2"]
    assert alert["user"]["id"] == "2ce85a15-0000-4000-8000-0000000000aa"


def test_minimal_attack_is_the_refresh_and_the_hosting_use() -> None:
    assert detect_lines([ENTRA[1], GRAPH[1]]).hits == [("geo_divergence.issue_use_divergence", TOKEN)]


def test_benign_twin_graph_uses_from_the_sign_in_address_are_quiet() -> None:
    found = detect_lines([*ENTRA, GRAPH[0], _graph(1, IPAddress=HOME_IP, UserAgent="Mozilla/5.0")])
    assert found.dead_letters == []
    assert found.alerts == []


def test_sign_in_asn_and_graph_as_name_compare_as_one_network(hasher) -> None:
    """Entra carries AS3320 without a name, Graph carries neither: enrichment names
    both from the IP, so the networks agree (the benign twin depends on it)."""
    sign_in, use = _enriched(ENTRA[1], hasher), _enriched(GRAPH[0], hasher)
    assert (sign_in.network.asn, sign_in.network.as_org) == (3320, "Deutsche Telekom AG")
    assert sign_in.network.geo is not None and sign_in.network.geo.city == "Munich"  # the event's geo is kept
    assert use.network.as_org == "Deutsche Telekom AG" and use.network.hosting is False
    assert network_key(sign_in.network.as_org, sign_in.network.asn) == network_key(use.network.as_org, use.network.asn)


def test_use_from_a_far_hosting_network_is_also_impossible_travel() -> None:
    """139.59.1.1 is DigitalOcean in India: 6,500 km from Munich in 7.5 minutes."""
    found = detect_lines([ENTRA[1], _graph(1, IPAddress="139.59.1.1")])
    assert found.hits == [
        ("geo_divergence.impossible_travel", TOKEN),
        ("geo_divergence.issue_use_divergence", TOKEN),
    ]


def test_uses_from_two_networks_within_the_window_are_also_concurrent() -> None:
    found = detect_lines([ENTRA[1], GRAPH[0], _graph(1, TimeGenerated="2026-11-24T09:05:30.0000000Z")])
    assert found.hits == [("geo_divergence.issue_use_divergence", TOKEN), ("replay.concurrent_use", TOKEN)]


def test_graph_use_presenting_a_scope_the_sign_in_did_not_grant_is_scope_escalation() -> None:
    found = detect_lines([ENTRA[1], _graph(0, Scopes="User.Read Mail.Read Mail.Send")])
    assert found.hits == [("scope_escalation.scope_not_granted", TOKEN)]
    assert "Mail.Send" in found.alerts[0]["alert"]["summary"]


def test_benign_twin_graph_use_with_the_granted_scopes_is_quiet() -> None:
    assert detect_lines([ENTRA[1], _graph(0, Scopes="Mail.Read User.Read")]).alerts == []


def test_service_principal_sign_in_and_app_only_graph_use_are_quiet() -> None:
    """Client credentials from an AWS workload: hosting at issue and at use is not a move to hosting."""
    sign_in = orjson.loads(orjson.dumps(ENTRA[0]))
    sign_in["category"] = "ServicePrincipalSignInLogs"
    props = sign_in["properties"]
    for key in ("userPrincipalName", "userId", "sessionId", "authenticationProcessingDetails"):
        del props[key]
    props.update(
        id="id-sp-1", servicePrincipalId="9a0c7f55-0000-4000-8000-0000000000bb", servicePrincipalName="export",
        appId="5d3c1a2b-0000-4000-8000-0000000000cc", ipAddress="3.120.5.5", uniqueTokenIdentifier="UTI-sp-0001",
        autonomousSystemNumber=16509, isInteractive=False,
        location={"city": "Frankfurt am Main", "countryOrRegion": "DE",
                  "geoCoordinates": {"latitude": 50.11, "longitude": 8.68}},
    )
    use = _graph(
        0, RequestId="g-sp-1", IPAddress="3.120.5.5", UserId="",
        ServicePrincipalId="9a0c7f55-0000-4000-8000-0000000000bb", AppId="5d3c1a2b-0000-4000-8000-0000000000cc",
        SignInActivityId="UTI-sp-0001", Scopes="", Roles="Mail.Read",
        TimeGenerated="2026-11-24T08:01:00Z", TokenIssuedAt="2026-11-24T08:00:00Z",
    )
    found = detect_lines([sign_in, use])
    assert found.dead_letters == [] and found.summary.per_format == {"entra": 1, "graph": 1}
    assert found.alerts == []


def test_other_entra_categories_are_counted_not_dead_lettered() -> None:
    audit = {"time": "2026-11-24T08:00:00Z", "category": "AuditLogs", "operationName": "Add member to role",
             "properties": {"id": "audit-1"}}
    found = detect_lines([audit, *ENTRA])
    assert found.dead_letters == [] and found.alerts == []
    assert found.summary.skipped == {"entra:AuditLogs": 1}
