"""Graph activity-log adapter: exact canonical events from MicrosoftGraphActivityLogs rows."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from schemas.events import CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.graph import GraphFormat
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
SAMPLES = (FORMATS / "graph.jsonl").read_bytes().splitlines()
UTC = timezone.utc
USER = "2ce85a15-0000-4000-8000-0000000000aa"
CLI_APP = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
ISSUED = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int, **changes: Any) -> dict[str, Any]:
    raw = orjson.loads(SAMPLES[n])
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = GraphFormat().to_events(raw, ctx)
    return event


def test_graph_request_is_a_use_of_the_sign_in_token(ctx: AdapterContext) -> None:
    assert _one(_sample(0), ctx) == CanonicalEvent(
        event_id="graph:g-1",
        kind=EventKind.USED,
        time=datetime(2026, 11, 24, 9, 5, tzinfo=UTC),
        source="graph",
        token=TokenRef(id="UTI-aaaa0002", type=TokenType.ACCESS, issued_at=ISSUED),
        subject=Subject(id=USER, kind="user"),
        client_id=CLI_APP,
        scopes=("Mail.Read", "User.Read"),
        network=Network(ip="79.200.1.10", user_agent="Mozilla/5.0"),
        request=Request(id="g-1", method="GET", resource="https://graph.microsoft.com/v1.0/me/messages", status=200),
        outcome=Outcome(result="success"),
    )


def test_second_sample_is_the_same_token_from_another_caller(ctx: AdapterContext) -> None:
    event = _one(_sample(1), ctx)
    assert event.event_id == "graph:g-2" and event.time == datetime(2026, 11, 24, 9, 7, 30, tzinfo=UTC)
    assert event.token == TokenRef(id="UTI-aaaa0002", type=TokenType.ACCESS, issued_at=ISSUED)
    assert event.network == Network(ip="159.89.1.1", user_agent="python-requests/2.32")
    users = "https://graph.microsoft.com/v1.0/users"
    assert event.request == Request(id="g-2", method="GET", resource=users, status=200)


def test_service_location_is_not_the_callers_place(ctx: AdapterContext) -> None:
    assert _one(_sample(0, Location="Southeast Asia"), ctx).network.geo is None


def test_rejected_request_is_a_failed_use(ctx: AdapterContext) -> None:
    assert _one(_sample(0, ResponseStatusCode=403), ctx).outcome == Outcome(result="failure", reason="HTTP 403")


def test_app_only_request_has_a_service_subject_and_roles_as_scopes(ctx: AdapterContext) -> None:
    raw = _sample(
        0, UserId="", ServicePrincipalId="9a0c7f55-0000-4000-8000-0000000000bb", Scopes="",
        Roles="Mail.Read User.Read.All", DeviceId="dev-1", SessionId="sess-x", TenantId="workspace-1",
        AadTenantId="t-1",
    )
    event = _one(raw, ctx)
    assert event.subject == Subject(id="9a0c7f55-0000-4000-8000-0000000000bb", kind="service")
    assert event.scopes == ("Mail.Read", "User.Read.All")
    assert event.network.device_id == "dev-1"
    assert event.session_id == "sess-x" and event.tenant == "t-1"  # TenantId is the Log Analytics workspace


@pytest.mark.parametrize(
    ("scopes", "roles", "expected"),
    [
        ("User.Read  Mail.Read ", "", ("Mail.Read", "User.Read")),
        ("User.Read,Mail.Send", None, ("Mail.Send", "User.Read")),
        ("User.Read", "Mail.Read", ("Mail.Read", "User.Read")),
        (["User.Read", "Mail.Read"], ["Sites.Read.All"], ("Mail.Read", "Sites.Read.All", "User.Read")),
        (None, None, ()),
    ],
)
def test_scopes_and_roles_are_the_presented_permissions(
    ctx: AdapterContext, scopes: Any, roles: Any, expected: tuple[str, ...]
) -> None:
    raw = _sample(0, Scopes=scopes, Roles=roles)
    assert _one(raw, ctx).scopes == expected


def test_missing_request_id_gets_a_stable_content_id(ctx: AdapterContext) -> None:
    first = _one(_sample(0, RequestId=None), ctx)
    assert first.event_id.startswith("graph:") and first.event_id != "graph:g-1"
    assert first.request is not None and first.request.id is None
    assert _one(_sample(0, RequestId=None), ctx).event_id == first.event_id


def test_empty_token_issued_at_is_unknown(ctx: AdapterContext) -> None:
    event = _one(_sample(0, TokenIssuedAt=""), ctx)
    assert event.token == TokenRef(id="UTI-aaaa0002", type=TokenType.ACCESS)


def test_rows_of_other_tables_are_unsupported(ctx: AdapterContext) -> None:
    with pytest.raises(UnsupportedEventType) as info:
        GraphFormat().to_events(_sample(0, Type="AADGraphActivityLogs"), ctx)
    assert info.value.event_type == "AADGraphActivityLogs"
    assert _one(_sample(0, Type="MicrosoftGraphActivityLogs"), ctx).event_id == "graph:g-1"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_sample(0, ResponseStatusCode="ok"), "graph: ResponseStatusCode"),
        (_sample(0, ResponseStatusCode=None), "ResponseStatusCode: Field required"),
        (_sample(0, ResponseStatusCode=42), "ResponseStatusCode"),
        (_sample(0, TimeGenerated="yesterday"), "graph: TimeGenerated"),
        (_sample(0, TimeGenerated="2026-11-24T09:05:00"), "TimeGenerated has no timezone"),
        (_sample(0, TokenIssuedAt="soon"), "TokenIssuedAt"),
        (_sample(0, TokenIssuedAt="2026-11-24T09:00:00"), "TokenIssuedAt has no timezone"),
        (_sample(0, SignInActivityId=None), "SignInActivityId missing"),
        (_sample(0, SignInActivityId=""), "SignInActivityId missing"),
        (_sample(0, UserId=7), "graph: UserId"),
        (_sample(0, IPAddress="1" * 100), "IPAddress"),
        (_sample(0, IPAddress="159.89.1.1, 79.200.1.10"), "IPAddress: Value error, not an IP address"),
    ],
)
def test_malformed_rows_raise_invalid_record_naming_the_field(
    ctx: AdapterContext, raw: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        GraphFormat().to_events(raw, ctx)


def test_matches_only_graph_rows() -> None:
    fmt = GraphFormat()
    assert all(fmt.matches(orjson.loads(line)) for line in SAMPLES)
    others = [p for p in sorted(FORMATS.glob("*.jsonl")) if not p.stem.startswith("graph")]
    assert not any(fmt.matches(orjson.loads(line)) for p in others for line in p.read_bytes().splitlines())


@FUZZ
@given(mutated_lines(SAMPLES))
def test_mutated_rows_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))


@FUZZ
@given(cut_lines(SAMPLES))
def test_truncated_rows_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line))
