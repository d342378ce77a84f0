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
from pipeline.ingest.enrich import Enricher
from pipeline.ingest.normalize import Normalizer
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


# -- every export shape: diagnostic records (Event Hubs) and Log Analytics rows, crossed --
# Fixtures: entra_rows.jsonl (Log Analytics sign-in rows), entra_workloads.jsonl (service
# principal and managed identity diagnostic records), graph_diagnostic.jsonl (Graph
# diagnostic records); see tests/schemas/test_entra_shapes.py for the documents they follow.

ROWS = [orjson.loads(line) for line in (FORMATS / "entra_rows.jsonl").read_bytes().splitlines()]
WORKLOADS = [orjson.loads(line) for line in (FORMATS / "entra_workloads.jsonl").read_bytes().splitlines()]
GRAPH_RECORDS = [orjson.loads(line) for line in (FORMATS / "graph_diagnostic.jsonl").read_bytes().splitlines()]
ROW_TOKEN = "UTI-row-0004"
MI_TOKEN, MI_ROW_TOKEN = "UTI-mi-0001", "UTI-row-mi01"
MI = "7e1d2c3b-0000-4000-8000-0000000000dd"
EXPORTER = "9a0c7f55-0000-4000-8000-0000000000bb"
AZURE_IP, HETZNER_IP, DIGITALOCEAN_IP = "20.50.2.10", "88.198.10.10", "159.89.1.1"


def _records(*records: dict[str, Any]) -> dict[str, Any]:
    """An Event Hubs message of diagnostic-settings records."""
    return {"records": list(records)}


def _graph_record(n: int, ip: str | None = None, **props: Any) -> dict[str, Any]:
    raw = orjson.loads(orjson.dumps(GRAPH_RECORDS[n]))
    if ip is not None:
        raw["callerIpAddress"] = raw["properties"]["ipAddress"] = ip
    raw["properties"].update(props)
    return raw


def _mi_graph_row(ip: str) -> dict[str, Any]:
    """The managed identity's row-shaped sign-in token, used at Graph (a Log Analytics row)."""
    return _graph(
        0, RequestId="g-mi-1", TimeGenerated="2026-11-24T11:01:00.0000000Z", TokenIssuedAt="2026-11-24T11:00:00Z",
        SignInActivityId=MI_ROW_TOKEN, UserId="", ServicePrincipalId=MI, AppId="c0ffee00-0000-4000-8000-0000000000ee",
        Scopes="", Roles="Reports.Read.All", IPAddress=ip, UserAgent="azure-sdk-for-python",
    )


def test_event_hubs_sign_in_joined_with_a_log_analytics_graph_row_from_another_network() -> None:
    attack = detect_lines([_records(ENTRA[1]), GRAPH[1]])
    assert attack.dead_letters == [] and attack.summary.per_format == {"entra": 1, "graph": 1}
    assert attack.hits == [("geo_divergence.issue_use_divergence", TOKEN)]
    twin = detect_lines([_records(ENTRA[1]), _graph(1, IPAddress=HOME_IP, UserAgent="Mozilla/5.0")])
    assert twin.alerts == [] and twin.dead_letters == [] and twin.summary.events == 2


def test_log_analytics_sign_in_joined_with_an_event_hubs_graph_record_from_another_network() -> None:
    attack = detect_lines([*ROWS[:2], _records(*GRAPH_RECORDS[:2])])
    assert attack.dead_letters == [] and attack.summary.per_format == {"entra": 2, "graph": 2}
    assert attack.hits == [("geo_divergence.issue_use_divergence", ROW_TOKEN)]
    [alert] = attack.alerts
    assert [e["event_id"] for e in alert["evidence"]] == ["entra:id-UTI-row-0004", "graph:gd-2"]
    assert "DIGITALOCEAN" in alert["alert"]["summary"]
    home = _graph_record(1, ip=HOME_IP, userAgent="Mozilla/5.0")
    twin = detect_lines([*ROWS[:2], _records(GRAPH_RECORDS[0], home)])
    assert twin.alerts == [] and twin.dead_letters == [] and twin.summary.events == 4


def test_managed_identity_token_used_at_graph_from_outside_azure_is_a_binding_mismatch() -> None:
    """Diagnostic sign-in (Event Hubs) + Graph diagnostic record: the identity's token,
    minted for a VM, presented from a DigitalOcean droplet."""
    attack = detect_lines([_records(WORKLOADS[1]), _records(_graph_record(2, ip=DIGITALOCEAN_IP))])
    assert attack.dead_letters == []
    assert attack.hits == [("replay.binding_mismatch", MI_TOKEN)]
    [alert] = attack.alerts
    assert "an Azure service (bound to azure)" in alert["alert"]["summary"]
    assert alert["user"]["id"] == MI and alert["details"]["used_from_provider"] == "digitalocean"
    twin = detect_lines([_records(WORKLOADS[1]), _records(GRAPH_RECORDS[2])])  # from an Azure address
    assert twin.alerts == [] and twin.summary.events == 2


def test_managed_identity_row_token_used_from_outside_azure_is_a_binding_mismatch() -> None:
    """Log Analytics sign-in row + Graph row: the same rule from the other export path."""
    attack = detect_lines([ROWS[3], _mi_graph_row(HETZNER_IP)])
    assert attack.hits == [("replay.binding_mismatch", MI_ROW_TOKEN)]
    assert detect_lines([ROWS[3], _mi_graph_row(AZURE_IP)]).alerts == []


def test_service_principal_tokens_are_not_bound_to_a_cloud() -> None:
    """A service principal's secret can live anywhere: its token used from its own AWS
    workload, in either shape pair, is quiet."""
    use = _graph_record(2, ip="3.120.5.5", signInActivityId="UTI-sp-0002", servicePrincipalId=EXPORTER,
                        appId="5d3c1a2b-0000-4000-8000-0000000000cc", requestId="gd-sp")
    assert detect_lines([_records(WORKLOADS[0]), _records(use)]).alerts == []
    row_use = _graph(0, RequestId="g-sp-2", IPAddress="3.120.5.5", UserId="", ServicePrincipalId=EXPORTER,
                     SignInActivityId="UTI-row-sp01", TimeGenerated="2026-11-24T11:01:00Z", Scopes="",
                     Roles="Mail.Read", TokenIssuedAt="2026-11-24T11:00:00Z")
    found = detect_lines([ROWS[2], row_use])
    assert found.alerts == [] and found.summary.per_format == {"entra": 1, "graph": 1}



def test_a_non_ip_caller_address_is_never_a_network() -> None:
    """The attack use with its address replaced by text: kept, counted, and judged as a
    use from an unknown place (no divergence to prove), never as a network named by text."""
    found = detect_lines([ENTRA[1], _graph(1, IPAddress="159.89.1.1.evil")])
    assert found.dead_letters == [] and found.summary.events == 2 and found.alerts == []
    assert found.summary.repairs == {"graph.IPAddress: malformed (dropped)": 1}
    rows = detect_lines([{**ROWS[1], "IPAddress": "home-router"}, _records(GRAPH_RECORDS[1])])
    assert rows.summary.repairs == {"entra.IPAddress: malformed (dropped)": 1}
    assert rows.summary.events == 2 and rows.dead_letters == []


def test_every_shape_interleaved_gives_the_alerts_of_each_pair_alone() -> None:
    pairs = [
        [_records(ENTRA[1]), GRAPH[1]],
        [*ROWS[:2], _records(*GRAPH_RECORDS[:2])],
        [_records(WORKLOADS[1]), _records(_graph_record(2, ip=DIGITALOCEAN_IP))],
        [ROWS[3], _mi_graph_row(HETZNER_IP)],
    ]
    alone = sorted(hit for pair in pairs for hit in detect_lines(pair).hits)
    mixed = [pairs[0][0], pairs[1][0], pairs[2][0], pairs[3][0], pairs[1][1], pairs[0][1], pairs[3][1],
             pairs[2][1], pairs[1][2]]
    found = detect_lines(mixed)
    assert found.hits == alone and found.dead_letters == []
    assert len(alone) == 4
