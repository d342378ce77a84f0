"""Graph activity logs as diagnostic-settings records (Event Hubs, storage account).

``graph_diagnostic.jsonl`` follows Azure Monitor's top-level resource-log schema ("Common
and service-specific schemas for Azure resource logs": ``time``, ``category``,
``callerIpAddress``, ``properties``) with the columns of Microsoft's
"MicrosoftGraphActivityLogs" table reference in ``properties`` under camelCase names.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from pipeline.ingest.normalize import Normalizer
from schemas.events import CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import FORMATS, AdapterContext, InvalidRecord
from schemas.sources.entra import EntraFormat
from schemas.sources.graph import GraphFormat
from tests.detect_helpers import NOW
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
RECORDS = (FORMATS_DIR / "graph_diagnostic.jsonl").read_bytes().splitlines()
UTC = timezone.utc
TENANT = "4bbb79f7-0000-4000-8000-000000000001"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _record(n: int, **props: Any) -> dict[str, Any]:
    raw = orjson.loads(RECORDS[n])
    for key, value in props.items():
        if value is None:
            raw["properties"].pop(key, None)
        else:
            raw["properties"][key] = value
    return raw


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = GraphFormat().to_events(raw, ctx)
    return event


def test_delegated_request_is_a_use_of_the_sign_in_token(ctx: AdapterContext) -> None:
    assert _one(_record(0), ctx) == CanonicalEvent(
        event_id="graph:gd-1", kind=EventKind.USED, time=datetime(2026, 11, 24, 10, 35, tzinfo=UTC), source="graph",
        tenant=TENANT,
        token=TokenRef(id="UTI-row-0004", type=TokenType.ACCESS, issued_at=datetime(2026, 11, 24, 10, 30, tzinfo=UTC)),
        subject=Subject(id="2ce85a15-0000-4000-8000-0000000000aa", kind="user"),
        client_id="14d82eec-204b-4c2f-b7e8-296a70dab67e", scopes=("Mail.Read", "User.Read"),
        network=Network(ip="79.200.1.10", user_agent="Mozilla/5.0"),
        request=Request(id="gd-1", method="GET", resource="https://graph.microsoft.com/v1.0/me/messages", status=200),
        outcome=Outcome(result="success"),
    )


def test_managed_identity_request_is_an_app_only_use_with_its_roles(ctx: AdapterContext) -> None:
    uri = "https://graph.microsoft.com/v1.0/reports/getOffice365ActiveUserDetail(period='D7')"
    assert _one(_record(2), ctx) == CanonicalEvent(
        event_id="graph:gd-3", kind=EventKind.USED, time=datetime(2026, 11, 24, 12, 2, tzinfo=UTC), source="graph",
        tenant=TENANT,
        token=TokenRef(id="UTI-mi-0001", type=TokenType.ACCESS, issued_at=datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
        subject=Subject(id="7e1d2c3b-0000-4000-8000-0000000000dd", kind="service"),
        client_id="c0ffee00-0000-4000-8000-0000000000ee", scopes=("Reports.Read.All",),
        network=Network(ip="20.50.2.10", user_agent="azure-sdk-for-python"),
        request=Request(id="gd-3", method="GET", resource=uri, status=200),
        outcome=Outcome(result="success"),
    )


def test_a_record_and_its_row_are_the_same_event(ctx: AdapterContext) -> None:
    """The shapes carry one request: the Log Analytics row of gd-1 maps to the same event."""
    props = orjson.loads(RECORDS[0])["properties"]
    row = {"TimeGenerated": "2026-11-24T10:35:00.0000000Z", "Type": "MicrosoftGraphActivityLogs",
           "TenantId": "workspace",
           "AadTenantId": TENANT, **{key[0].upper() + key[1:]: value for key, value in props.items()},
           "IPAddress": props["ipAddress"]}
    del row["IpAddress"]
    assert _one(row, ctx) == _one(_record(0), ctx)


def test_caller_ip_address_stands_in_for_a_missing_property(ctx: AdapterContext) -> None:
    assert _one(_record(1, ipAddress=None), ctx).network.ip == "159.89.1.1"


def test_a_non_ip_address_is_dropped_and_counted(hasher) -> None:
    normalizer = Normalizer(hasher, clock=lambda: NOW)
    raw = _record(1, ipAddress="159.89.1.1, 79.200.1.10")  # one address, never a chain
    raw["callerIpAddress"] = "graph.example"
    [event] = normalizer.normalize(orjson.dumps(raw), "t:1").events
    assert event.network.ip is None and event.event_id == "graph:gd-2"
    assert normalizer.repairs == Counter({"graph.properties.ipAddress: malformed (dropped)": 1,
                                          "graph.callerIpAddress: malformed (dropped)": 1})


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_record(0, signInActivityId=""), "SignInActivityId missing"),
        (_record(0, responseStatusCode=None), "properties.responseStatusCode: Field required"),
        (_record(0, tokenIssuedAt="2026-11-24T10:30:00"), "properties.tokenIssuedAt has no timezone"),
        ({**_record(0), "time": "2026-11-24T10:35:00"}, "graph: time has no timezone"),
    ],
)
def test_malformed_records_raise_invalid_record(ctx: AdapterContext, raw: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        GraphFormat().to_events(raw, ctx)


@pytest.mark.parametrize("line", RECORDS)
def test_graph_records_are_graphs_not_entras(line: bytes) -> None:
    raw = orjson.loads(line)
    assert not EntraFormat().matches(raw)
    assert [name for name, fmt in FORMATS.items() if fmt.matches(raw)] == ["graph"]


def test_an_aks_audit_row_with_a_request_uri_is_not_graphs() -> None:
    row = {"TimeGenerated": "2026-11-24T09:00:00Z", "Type": "AKSAudit", "RequestUri": "/api/v1/pods", "Verb": "list"}
    assert not GraphFormat().matches(row)


@FUZZ
@given(mutated_lines(RECORDS))
def test_mutated_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))


@FUZZ
@given(cut_lines(RECORDS))
def test_truncated_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))
