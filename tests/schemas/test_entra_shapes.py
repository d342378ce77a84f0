"""Entra sign-ins in every export shape: exact canonical events.

Fixtures are built from Microsoft's own references, field names and types:
- ``entra_rows.jsonl``: Log Analytics rows, columns of the "Azure Monitor Logs reference"
  pages of SigninLogs, AADNonInteractiveUserSignInLogs, AADServicePrincipalSignInLogs and
  AADManagedIdentitySignInLogs (dynamic columns as objects in the first row, as JSON text
  in the others; ``AutonomousSystemNumber`` a string; ``TenantId`` the workspace).
- ``entra_workloads.jsonl``: diagnostic-settings records (top-level schema of "Common and
  service-specific schemas for Azure resource logs") of the categories
  ServicePrincipalSignInLogs and ManagedIdentitySignInLogs, properties named as Graph's
  ``signIn`` resource (``managedServiceIdentity`` as its ``managedIdentity`` type).
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
from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, UnsupportedEventType, detect_format
from schemas.sources.entra import EntraFormat
from tests.detect_helpers import NOW
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
ROWS = (FORMATS_DIR / "entra_rows.jsonl").read_bytes().splitlines()
WORKLOADS = (FORMATS_DIR / "entra_workloads.jsonl").read_bytes().splitlines()
DIAGNOSTIC = (FORMATS_DIR / "entra.jsonl").read_bytes().splitlines()
UTC = timezone.utc
TENANT = "4bbb79f7-0000-4000-8000-000000000001"
CAROL = Subject(id="2ce85a15-0000-4000-8000-0000000000aa", name="carol@contoso.example", kind="user")
EXPORTER = Subject(id="9a0c7f55-0000-4000-8000-0000000000bb", name="nightly-export", kind="service")
REPORTING_VM = Subject(id="7e1d2c3b-0000-4000-8000-0000000000dd", name="vm-reporting", kind="service")
CLI_APP, SP_APP, MI_APP = (
    "14d82eec-204b-4c2f-b7e8-296a70dab67e",
    "5d3c1a2b-0000-4000-8000-0000000000cc",
    "c0ffee00-0000-4000-8000-0000000000ee",
)
GRAPH = ("00000003-0000-0000-c000-000000000000",)
MUNICH = Network(
    ip="79.200.1.10", user_agent="Mozilla/5.0 (Windows NT 10.0)",
    geo=Geo(country="DE", city="Munich", lat=48.14, lon=11.58, source="event"), asn=3320,
)
FRANKFURT = Geo(country="DE", city="Frankfurt am Main", lat=50.11, lon=8.68, source="event")
AZURE = Binding(method="network", value="azure")
VM = ("/subscriptions/11111111-0000-4000-8000-000000000001/resourceGroups/rg-reports/providers/"
      "Microsoft.Compute/virtualMachines/vm-reporting")


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _row(n: int, **changes: Any) -> dict[str, Any]:
    raw = orjson.loads(ROWS[n])
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = EntraFormat().to_events(raw, ctx)
    return event


def _at(hour: int) -> datetime:
    return datetime(2026, 11, 24, hour, 0, tzinfo=UTC)


def test_signinlogs_row_is_an_issuance_like_the_diagnostic_record(ctx: AdapterContext) -> None:
    assert _one(_row(0), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-row-0003", kind=EventKind.ISSUED, time=_at(10), source="entra", tenant=TENANT,
        token=TokenRef(
            id="UTI-row-0003", type=TokenType.ACCESS, family_id="sess-e2", issued_at=_at(10), audience=GRAPH
        ),
        subject=CAROL, client_id=CLI_APP, session_id="sess-e2", scopes=("Mail.Read", "User.Read"), network=MUNICH,
        outcome=Outcome(result="success"),
    )


def test_non_interactive_row_with_json_text_columns_is_a_refresh(ctx: AdapterContext) -> None:
    at = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)
    assert _one(_row(1), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-row-0004", kind=EventKind.REFRESHED, time=at, source="entra",  # no AADTenantId column
        token=TokenRef(id="UTI-row-0004", type=TokenType.ACCESS, family_id="sess-e2", issued_at=at, audience=GRAPH),
        subject=CAROL, client_id=CLI_APP, session_id="sess-e2", grant_type="refresh_token",
        scopes=("Mail.Read", "User.Read"), network=MUNICH, outcome=Outcome(result="success"),
    )


def test_service_principal_row_is_a_client_credentials_issuance(ctx: AdapterContext) -> None:
    assert _one(_row(2), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-row-sp01", kind=EventKind.ISSUED, time=_at(11), source="entra",
        token=TokenRef(id="UTI-row-sp01", type=TokenType.ACCESS, issued_at=_at(11), audience=GRAPH),
        subject=EXPORTER, client_id=SP_APP, grant_type="client_credentials",
        network=Network(ip="3.120.5.5", geo=FRANKFURT), outcome=Outcome(result="success"),
    )


def test_managed_identity_row_issues_an_azure_bound_token(ctx: AdapterContext) -> None:
    assert _one(_row(3), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-row-mi01", kind=EventKind.ISSUED, time=_at(11), source="entra",
        token=TokenRef(id="UTI-row-mi01", type=TokenType.ACCESS, issued_at=_at(11), audience=GRAPH, binding=AZURE),
        subject=REPORTING_VM, client_id=MI_APP, grant_type="client_credentials", network=Network(),
        outcome=Outcome(result="success"),
    )


def test_service_principal_diagnostic_record_is_a_client_credentials_issuance(ctx: AdapterContext) -> None:
    assert _one(orjson.loads(WORKLOADS[0]), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-sp-0002", kind=EventKind.ISSUED, time=_at(12), source="entra", tenant=TENANT,
        token=TokenRef(id="UTI-sp-0002", type=TokenType.ACCESS, issued_at=_at(12), audience=GRAPH),
        subject=EXPORTER, client_id=SP_APP, grant_type="client_credentials",
        network=Network(ip="3.120.5.5", geo=FRANKFURT, asn=16509), outcome=Outcome(result="success"),
    )


def test_managed_identity_diagnostic_record_names_its_azure_resource(ctx: AdapterContext) -> None:
    assert _one(orjson.loads(WORKLOADS[1]), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-mi-0001", kind=EventKind.ISSUED, time=_at(12), source="entra", tenant=TENANT,
        token=TokenRef(id="UTI-mi-0001", type=TokenType.ACCESS, issued_at=_at(12), audience=GRAPH, binding=AZURE),
        subject=REPORTING_VM, client_id=MI_APP, grant_type="client_credentials", network=Network(device_id=VM),
        outcome=Outcome(result="success"),
    )


def test_one_sign_in_exported_both_ways_is_one_event_id(ctx: AdapterContext) -> None:
    """Diagnostic ``properties.id`` and the row's ``Id`` are the same sign-in id: a tenant
    streaming to Event Hubs and exporting from Log Analytics gets the event once (dedup)."""
    record = orjson.loads(DIAGNOSTIC[0])
    row = _row(0, Id=record["properties"]["id"])
    assert _one(row, ctx).event_id == _one(record, ctx).event_id == "entra:id-UTI-aaaa0001"


def test_row_without_its_table_name_is_read_by_its_category_column(ctx: AdapterContext) -> None:
    event = _one(_row(3, Type=None), ctx)
    assert event.token is not None and event.token.binding == AZURE and event.subject == REPORTING_VM
    with pytest.raises(UnsupportedEventType) as info:
        EntraFormat().to_events(_row(0, Type=None, Category="AuditLogs"), ctx)
    assert info.value.event_type == "AuditLogs"


def test_rows_of_other_tables_with_a_token_column_are_skipped(ctx: AdapterContext) -> None:
    raw = _row(0, Type="ADFSSignInLogs")
    assert detect_format(raw).name == "entra"
    with pytest.raises(UnsupportedEventType) as info:
        EntraFormat().to_events(raw, ctx)
    assert info.value.event_type == "ADFSSignInLogs"


def test_failed_row_keeps_its_code_from_result_type(ctx: AdapterContext) -> None:
    event = _one(_row(2, ResultType="7000215"), ctx)  # invalid client secret
    assert event.outcome == Outcome(result="failure", reason="7000215")
    assert event.token is not None and event.token.issued_at is None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_row(0, TimeGenerated="2026-11-24T10:00:00"), "TimeGenerated has no timezone"),
        (_row(0, TimeGenerated="yesterday"), "entra: TimeGenerated"),
        (_row(0, UniqueTokenIdentifier=None), "uniqueTokenIdentifier missing"),
        (_row(0, AuthenticationProcessingDetails="[{"), "AuthenticationProcessingDetails: not a JSON array"),
        (_row(2, ResultType="Success"), "no result: Status.errorCode missing and ResultType"),
        (_row(0, Type=None, Category=None), "category: expected a string"),
    ],
)
def test_malformed_rows_raise_invalid_record_naming_the_field(
    ctx: AdapterContext, raw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        EntraFormat().to_events(raw, ctx)


# -- refused fields: dropped and counted, the event kept --

def _normalized(raw: dict[str, Any], hasher) -> tuple[CanonicalEvent, Counter[str]]:
    normalizer = Normalizer(hasher, clock=lambda: NOW)
    result = normalizer.normalize(orjson.dumps(raw), "t:1")
    assert result.dead_letter is None
    [event] = result.events
    return event, normalizer.repairs


@pytest.mark.parametrize("value", ["evil.example", "79.200.1.10, 159.89.1.1", "::ffff:not", "<script>"])
def test_a_non_ip_row_address_is_dropped_and_counted(hasher, value: str) -> None:
    event, repairs = _normalized(_row(0, IPAddress=value), hasher)
    assert event.network.ip is None and event.event_id == "entra:id-UTI-row-0003"
    assert repairs == Counter({"entra.IPAddress: malformed (dropped)": 1})


def test_a_non_ip_record_address_falls_back_to_the_callers_and_is_counted(hasher) -> None:
    raw = orjson.loads(DIAGNOSTIC[0])
    raw["properties"]["ipAddress"] = "attacker.example"
    event, repairs = _normalized(raw, hasher)
    assert event.network.ip == "79.200.1.10"  # callerIpAddress, an address Azure Monitor wrote
    assert repairs == Counter({"entra.properties.ipAddress: malformed (dropped)": 1})
    raw["callerIpAddress"] = "also not an address"
    event, repairs = _normalized(raw, hasher)
    assert event.network.ip is None
    assert repairs == Counter({"entra.properties.ipAddress: malformed (dropped)": 1,
                               "entra.callerIpAddress: malformed (dropped)": 1})


def test_an_ipv6_address_is_kept_in_its_short_form(ctx: AdapterContext) -> None:
    assert _one(_row(0, IPAddress="2001:0db8:0000:0000:0000:0000:0000:0001"), ctx).network.ip == "2001:db8::1"


def test_a_dynamic_column_that_is_not_json_is_dropped_not_the_sign_in(hasher) -> None:
    event, repairs = _normalized(_row(1, LocationDetails="{city: Munich", DeviceDetail="x" * 70_000), hasher)
    assert event.network.geo is None and event.network.ip == "79.200.1.10"
    assert repairs == Counter({"entra.LocationDetails: malformed (dropped)": 1,
                               "entra.DeviceDetail: malformed (dropped)": 1})


# -- recognition: no other format's records, none of entra's taken by another --

def _diagnostic(category: str) -> dict[str, Any]:
    return {"time": "2026-11-24T08:00:00Z", "category": category, "operationName": "op", "properties": {"log": "{}"}}


@pytest.mark.parametrize("category", ["kube-audit", "kube-audit-admin", "MicrosoftGraphActivityLogs"])
def test_diagnostic_records_of_other_formats_are_not_entras(category: str) -> None:
    assert not EntraFormat().matches(_diagnostic(category))


def test_other_diagnostic_categories_stay_entras_to_skip() -> None:
    assert EntraFormat().matches(_diagnostic("AuditLogs")) and EntraFormat().matches(_diagnostic("AuditEvent"))
    assert EntraFormat().matches({**_diagnostic("x"), "category": ["not", "hashable"]})


@pytest.mark.parametrize("line", [*ROWS, *WORKLOADS])
def test_every_shape_is_recognised_as_entra_only(line: bytes) -> None:
    raw = orjson.loads(line)
    assert [name for name, fmt in FORMATS.items() if fmt.matches(raw)] == ["entra"]


@FUZZ
@given(mutated_lines([*ROWS, *WORKLOADS]))
def test_mutated_rows_and_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))


@FUZZ
@given(cut_lines([*ROWS, *WORKLOADS]))
def test_truncated_rows_and_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))
