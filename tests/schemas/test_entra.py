"""Entra sign-in adapter: exact canonical events from diagnostic-settings records of user sign-ins.

Other shapes (Log Analytics rows, service principal and managed identity sign-ins) are in
``test_entra_shapes.py``."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from schemas.events import CanonicalEvent, EventKind, Geo, Network, Outcome, Subject, TokenRef, TokenType
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.entra import EntraFormat
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
SAMPLES = (FORMATS / "entra.jsonl").read_bytes().splitlines()
UTC = timezone.utc

TENANT = "4bbb79f7-0000-4000-8000-000000000001"
USER = Subject(id="2ce85a15-0000-4000-8000-0000000000aa", name="carol@contoso.example", kind="user")
CLI_APP = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
GRAPH = "00000003-0000-0000-c000-000000000000"
MUNICH = Network(
    ip="79.200.1.10", geo=Geo(country="DE", city="Munich", lat=48.14, lon=11.58, source="event"), asn=3320
)


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int) -> dict[str, Any]:
    return orjson.loads(SAMPLES[n])


def _with(n: int, **props: Any) -> dict[str, Any]:
    """Sample ``n`` with ``properties`` keys replaced (None deletes the key)."""
    raw = _sample(n)
    for key, value in props.items():
        if value is None:
            raw["properties"].pop(key, None)
        else:
            raw["properties"][key] = value
    return raw


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = EntraFormat().to_events(raw, ctx)
    return event


def test_interactive_sign_in_is_an_issuance_of_the_unique_token(ctx: AdapterContext) -> None:
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert _one(_sample(0), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-aaaa0001",
        kind=EventKind.ISSUED,
        time=at,
        source="entra",
        tenant=TENANT,
        token=TokenRef(id="UTI-aaaa0001", type=TokenType.ACCESS, family_id="sess-e1", issued_at=at, audience=(GRAPH,)),
        subject=USER,
        client_id=CLI_APP,
        session_id="sess-e1",
        scopes=("Mail.Read", "User.Read"),
        network=MUNICH,
        outcome=Outcome(result="success"),
    )


def test_non_interactive_refresh_token_sign_in_is_a_refresh_without_known_parent(ctx: AdapterContext) -> None:
    at = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert _one(_sample(1), ctx) == CanonicalEvent(
        event_id="entra:id-UTI-aaaa0002",
        kind=EventKind.REFRESHED,
        time=at,
        source="entra",
        tenant=TENANT,
        token=TokenRef(id="UTI-aaaa0002", type=TokenType.ACCESS, family_id="sess-e1", issued_at=at, audience=(GRAPH,)),
        subject=USER,
        client_id=CLI_APP,
        session_id="sess-e1",
        grant_type="refresh_token",
        scopes=("Mail.Read", "User.Read"),
        network=MUNICH,
        outcome=Outcome(result="success"),
    )


def test_primary_refresh_token_sign_in_is_a_refresh(ctx: AdapterContext) -> None:
    event = _one(_with(0, incomingTokenType="primaryRefreshToken"), ctx)
    assert event.kind is EventKind.REFRESHED and event.grant_type == "refresh_token"
    assert event.token is not None and event.token.parent_id is None and event.token.type is TokenType.ACCESS


def test_service_principal_sign_in_is_a_client_credentials_issuance(ctx: AdapterContext) -> None:
    raw = _sample(0)
    raw["category"] = "ServicePrincipalSignInLogs"
    props = raw["properties"]
    for key in ("userPrincipalName", "userId", "sessionId", "location", "deviceDetail"):
        del props[key]
    del props["authenticationProcessingDetails"]
    props.update(
        id="id-sp-1", servicePrincipalId="9a0c7f55-0000-4000-8000-0000000000bb",
        servicePrincipalName="nightly-export", appId="5d3c1a2b-0000-4000-8000-0000000000cc",
        ipAddress="3.120.5.5", uniqueTokenIdentifier="UTI-sp-0001", autonomousSystemNumber=16509,
    )
    at = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
    assert _one(raw, ctx) == CanonicalEvent(
        event_id="entra:id-sp-1",
        kind=EventKind.ISSUED,
        time=at,
        source="entra",
        tenant=TENANT,
        token=TokenRef(id="UTI-sp-0001", type=TokenType.ACCESS, issued_at=at, audience=(GRAPH,)),
        subject=Subject(id="9a0c7f55-0000-4000-8000-0000000000bb", name="nightly-export", kind="service"),
        client_id="5d3c1a2b-0000-4000-8000-0000000000cc",
        grant_type="client_credentials",
        network=Network(ip="3.120.5.5", asn=16509),
    )


def test_failed_sign_in_keeps_kind_with_failure_and_error_code(ctx: AdapterContext) -> None:
    raw = _with(0, status={"errorCode": 50126, "failureReason": "Invalid username or password."})
    raw["resultType"] = "50126"
    event = _one(raw, ctx)
    assert event.kind is EventKind.ISSUED
    assert event.outcome == Outcome(result="failure", reason="50126")
    assert event.token is not None and event.token.issued_at is None  # nothing was minted


def test_failed_refresh_is_a_failed_refreshed_event(ctx: AdapterContext) -> None:
    raw = _with(1, status={"errorCode": 70043})
    raw["resultType"] = "70043"
    event = _one(raw, ctx)
    assert event.kind is EventKind.REFRESHED and event.outcome == Outcome(result="failure", reason="70043")


def test_failed_sign_in_without_token_identifier_has_no_token(ctx: AdapterContext) -> None:
    event = _one(_with(0, status={"errorCode": 50126}, uniqueTokenIdentifier=""), ctx)
    assert event.token is None and event.subject == USER and event.outcome.result == "failure"


def test_result_type_stands_in_for_a_missing_status(ctx: AdapterContext) -> None:
    raw = _with(0, status=None)
    raw["resultType"] = "53003"
    assert _one(raw, ctx).outcome == Outcome(result="failure", reason="53003")
    raw["resultType"] = "0"
    assert _one(raw, ctx).outcome == Outcome(result="success")


def test_device_user_agent_and_caller_ip_fallback(ctx: AdapterContext) -> None:
    raw = _with(
        0, deviceDetail={"deviceId": "dev-77", "operatingSystem": "Windows10"},
        userAgent="Mozilla/5.0 (Windows NT 10.0)", ipAddress=None,
    )
    net = _one(raw, ctx).network
    assert net.device_id == "dev-77"
    assert net.user_agent == "Mozilla/5.0 (Windows NT 10.0)"
    assert net.ip == "79.200.1.10"  # from the envelope's callerIpAddress


def test_empty_location_leaves_geo_to_enrichment(ctx: AdapterContext) -> None:
    empty = {"city": "", "state": "", "countryOrRegion": "", "geoCoordinates": {}}
    assert _one(_with(0, location=empty), ctx).network.geo is None
    null_island = {"countryOrRegion": "DE", "geoCoordinates": {"latitude": 0.0, "longitude": 0.0}}
    assert _one(_with(0, location=null_island), ctx).network.geo == Geo(country="DE", source="event")


def test_resource_display_name_is_the_audience_when_no_resource_id(ctx: AdapterContext) -> None:
    event = _one(_with(0, resourceId=None), ctx)
    assert event.token is not None and event.token.audience == ("Microsoft Graph",)


@pytest.mark.parametrize(
    ("details", "scopes"),
    [
        (None, ()),
        ([{"key": "Is CAE Token", "value": "False"}], ()),
        ([{"key": "Oauth Scope Info", "value": ""}], ()),
        ([{"key": "Oauth Scope Info", "value": "[]"}], ()),
        ([{"key": "OAuth Scope Info", "value": '["openid", "Mail.Read", "openid"]'}], ("Mail.Read", "openid")),
        ([{"key": "Oauth Scope Info", "value": ["Files.Read"]}], ("Files.Read",)),
    ],
)
def test_scopes_come_from_oauth_scope_info(ctx: AdapterContext, details: Any, scopes: tuple[str, ...]) -> None:
    assert _one(_with(0, authenticationProcessingDetails=details), ctx).scopes == scopes


def test_missing_sign_in_id_gets_a_stable_content_id(ctx: AdapterContext) -> None:
    first = _one(_with(0, id=None), ctx).event_id
    assert first.startswith("entra:") and first != "entra:id-UTI-aaaa0001"
    assert _one(_with(0, id=None), ctx).event_id == first


@pytest.mark.parametrize("category", ["AuditLogs", "ProvisioningLogs", "RiskyUsers"])
def test_other_categories_are_unsupported_not_invalid(ctx: AdapterContext, category: str) -> None:
    raw = {"time": "2026-11-24T08:00:00Z", "category": category, "operationName": "Add user", "properties": {}}
    with pytest.raises(UnsupportedEventType) as info:
        EntraFormat().to_events(raw, ctx)
    assert info.value.event_type == category


def _scope_info(value: str) -> list[dict[str, str]]:
    return [{"key": "Oauth Scope Info", "value": value}]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({**_sample(0), "time": "yesterday"}, "entra: time"),
        ({**_sample(0), "time": "2026-11-24T08:00:00"}, "time has no timezone"),
        ({k: v for k, v in _sample(0).items() if k != "time"}, "time: Field required"),
        ({k: v for k, v in _sample(0).items() if k != "properties"}, "properties: Field required"),
        ({**_sample(0), "category": 7}, "category: expected a string"),
        ({**_sample(0), "properties": "not an object"}, "properties"),
        (_with(0, status={"errorCode": "abc"}), "properties.status.errorCode"),
        (_with(0, userId=42), "properties.userId"),
        (_with(0, autonomousSystemNumber="AS3320"), "properties.autonomousSystemNumber"),
        (_with(0, location={"geoCoordinates": {"latitude": 200, "longitude": 0}}), "latitude"),
        (_with(0, uniqueTokenIdentifier=None), "uniqueTokenIdentifier missing"),
        (_with(0, authenticationProcessingDetails=_scope_info('["User.Read"')), "Oauth Scope Info']: not a JSON"),
        (_with(0, authenticationProcessingDetails=_scope_info('{"a": 1}')), "array of scope strings"),
        (_with(0, authenticationProcessingDetails=_scope_info("[1, 2]")), "array of scope strings"),
        (_with(0, sessionId="s" * 5000), "properties.sessionId"),
        ({**_with(0, status=None), "resultType": "Success"}, "no result"),
        ({**_with(0, status=None), "resultType": "--5"}, "no result"),
    ],
)
def test_malformed_records_raise_invalid_record_naming_the_field(
    ctx: AdapterContext, raw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRecord, match=reason.replace("[", r"\[").replace("]", r"\]")):
        EntraFormat().to_events(raw, ctx)


def test_matches_sign_ins_in_both_shapes_and_nothing_of_other_formats() -> None:
    fmt = EntraFormat()
    assert all(fmt.matches(orjson.loads(line)) for line in SAMPLES)
    others = [p for p in sorted(FORMATS.glob("*.jsonl")) if not p.stem.startswith("entra")]
    assert not any(fmt.matches(orjson.loads(line)) for p in others for line in p.read_bytes().splitlines())


# -- property-based: mutated and truncated sign-ins never escape the normalizer --

@FUZZ
@given(mutated_lines(SAMPLES))
def test_mutated_sign_ins_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))


@FUZZ
@given(cut_lines(SAMPLES))
def test_truncated_sign_ins_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))
