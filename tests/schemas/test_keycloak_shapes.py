"""Keycloak's other JSON shapes: flat third-party listener records and admin events.

Fixtures: tests/data/formats/keycloak_flat.jsonl (the flat shape documented in
schemas/sources/keycloak_flat.py and the README: EventRepresentation's top-level fields, the
detail keys at the top level, time in s, ms or ISO) and keycloak_admin.jsonl (Keycloak's
``AdminEventRepresentation`` javadoc: id, time, realmId, authDetails, operationType,
resourceType, resourcePath, representation, error; paths as the admin REST API names them).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from schemas.events import CanonicalEvent, EventKind, Network, Revocation, Subject, TokenRef, TokenType
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.keycloak import KeycloakFormat
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, normalize

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
FLAT = [orjson.loads(line) for line in (FORMATS_DIR / "keycloak_flat.jsonl").read_bytes().splitlines()]
ADMIN = [orjson.loads(line) for line in (FORMATS_DIR / "keycloak_admin.jsonl").read_bytes().splitlines()]
UTC = timezone.utc
REALM = "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"
ALICE_ID = "5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"
ALICE = Subject(id=ALICE_ID, kind="user")
BOB = Subject(id="6c1f2e3d-4b5a-4978-8a6b-5c4d3e2f1a0b", kind="user")  # the admin fixture's user
ADMIN_USER = "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4"
SESSION = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"
FAMILY = f"{SESSION}/portal"
SCOPES = ("openid", "orders:read", "profile")


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _at(minute: int, second: float = 0) -> datetime:
    return datetime(2026, 11, 24, 9, minute, tzinfo=UTC) + timedelta(seconds=second)


def _ev(event_id: str, kind: EventKind, time: datetime, **fields: Any) -> CanonicalEvent:
    base: dict[str, Any] = {"source": "keycloak", "tenant": REALM, "subject": ALICE, "client_id": "portal",
                            "session_id": SESSION, "network": Network(ip="79.200.1.10")}
    return CanonicalEvent(event_id=event_id, kind=kind, time=time, **{**base, **fields})


# -- flat listener records ----------------------------------------------------------------------
def test_flat_login_in_epoch_seconds_with_the_username_at_the_top(ctx: AdapterContext) -> None:
    assert KeycloakFormat().to_events(FLAT[0], ctx) == [
        _ev("keycloak:f-0001", EventKind.SESSION_STARTED, _at(0), subject=Subject(id=ALICE_ID, name="alice",
                                                                                   kind="user")),
    ]


def test_flat_code_to_token_with_iso_time_and_token_ids_at_the_top(ctx: AdapterContext) -> None:
    t = _at(0, 0.4)
    grant = {"grant_type": "authorization_code", "scopes": SCOPES}
    assert KeycloakFormat().to_events(FLAT[1], ctx) == [
        _ev("keycloak:f-0002#at", EventKind.ISSUED, t,
            token=TokenRef(id="at-0201", type=TokenType.ACCESS, family_id=FAMILY, issued_at=t), **grant),
        _ev("keycloak:f-0002#rt", EventKind.ISSUED, t,
            token=TokenRef(id="rt-0201", type=TokenType.REFRESH, family_id=FAMILY, issued_at=t), **grant),
    ]


def test_flat_refresh_in_epoch_ms_and_one_timed_by_its_wrapper_timestamp(ctx: AdapterContext) -> None:
    fields = {"grant_type": "refresh_token", "scopes": SCOPES}
    for raw, minute, rotated, access, ip in ((FLAT[2], 5, "rt-0202", "at-0202", "79.200.1.10"),
                                             (FLAT[3], 15, "rt-0203", "at-0203", "88.198.10.10")):
        t = _at(minute)
        assert KeycloakFormat().to_events(raw, ctx) == [
            _ev(f"keycloak:{raw['id']}#rt", EventKind.REFRESHED, t, network=Network(ip=ip),
                token=TokenRef(id=rotated, type=TokenType.REFRESH, family_id=FAMILY, parent_id="rt-0201",
                               issued_at=t), **fields),
            _ev(f"keycloak:{raw['id']}#at", EventKind.ISSUED, t, network=Network(ip=ip),
                token=TokenRef(id=access, type=TokenType.ACCESS, family_id=FAMILY, parent_id="rt-0201",
                               issued_at=t), **fields),
        ]


@pytest.mark.parametrize(
    "time",
    [1795510800.4, 1795510800400, "1795510800400", "1795510800.4" and "2026-11-24T10:00:00.400+01:00"],
)
def test_flat_time_in_every_documented_spelling(ctx: AdapterContext, time: Any) -> None:
    [_, rt] = KeycloakFormat().to_events({**FLAT[1], "time": time}, ctx)
    assert rt.time == _at(0, 0.4)


def test_a_key_in_details_wins_over_the_same_key_at_the_top(ctx: AdapterContext) -> None:
    raw = {**FLAT[1], "details": {"token_id": "at-nested"}}
    assert [e.token.id for e in KeycloakFormat().to_events(raw, ctx)] == ["at-nested", "rt-0201"]  # type: ignore[union-attr]  # these events carry a token: a None fails the test just the same


def test_flat_values_are_bounded_like_nested_ones(ctx: AdapterContext) -> None:
    raw = {**FLAT[1], "token_id": "a" * 2000, "refresh_token_id": 42}
    [at] = KeycloakFormat().to_events(raw, ctx)
    assert len(at.token.id) == 512 and "cut 2000 chars" in at.token.id  # type: ignore[union-attr]  # these events carry a token: a None fails the test just the same
    assert ctx.repairs == {"keycloak.token_id: cut": 1, "keycloak.refresh_token_id: malformed (dropped)": 1}


def test_flat_record_without_any_time_is_invalid_naming_the_keys(ctx: AdapterContext) -> None:
    raw = {k: v for k, v in FLAT[0].items() if k != "time"}
    with pytest.raises(InvalidRecord, match=r"keycloak: time: Field required \(nor timestamp or @timestamp\)"):
        KeycloakFormat().to_events(raw, ctx)


def test_flat_grant_naming_no_token_is_skipped_not_dead_lettered() -> None:
    raw = {k: v for k, v in FLAT[1].items() if k not in ("token_id", "refresh_token_id")}
    result = normalize(orjson.dumps(raw))
    assert result.dead_letter is None and result.skipped_type == "CODE_TO_TOKEN without token id"


# -- admin events --------------------------------------------------------------------------------
def _admin(event_id: str, kind: EventKind, time: datetime, **fields: Any) -> CanonicalEvent:
    return CanonicalEvent(event_id=event_id, kind=kind, time=time, source="keycloak", tenant=REALM, **fields)


def test_admin_disable_delete_logout_and_session_delete_map_to_their_targets(ctx: AdapterContext) -> None:
    adapter = KeycloakFormat()
    assert [adapter.to_events(raw, ctx) for raw in ADMIN[:4]] == [
        [_admin("keycloak:a-0001", EventKind.PRINCIPAL_DISABLED, _at(6), subject=BOB)],
        [_admin("keycloak:a-0002", EventKind.PRINCIPAL_DISABLED, _at(6, 20),
                subject=Subject(id="2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", kind="user"))],
        [_admin("keycloak:a-0003", EventKind.REVOKED, _at(6, 40), subject=BOB,
                revocation=Revocation(target="subject", actor=ADMIN_USER))],
        [_admin("keycloak:a-0004", EventKind.SESSION_ENDED, _at(7),
                session_id="0a9b8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d")],
    ]


@pytest.mark.parametrize(
    ("change", "skipped"),
    [
        ({}, "admin client-secret regenerated"),
        ({"operationType": "CREATE", "resourceType": "GROUP", "resourcePath": "groups/g-1"}, "admin CREATE GROUP"),
        # an update that leaves the user enabled, or one whose representation the realm does not include
        ({"operationType": "UPDATE", "resourceType": "USER", "resourcePath": f"users/{ALICE_ID}",
          "representation": '{"enabled": true, "firstName": "Alice"}'}, "admin UPDATE USER"),
        ({"operationType": "UPDATE", "resourceType": "USER", "resourcePath": f"users/{ALICE_ID}"},
         "admin UPDATE USER (no representation)"),
        ({"operationType": "DELETE", "resourceType": "USER", "resourcePath": f"users/{ALICE_ID}",
          "error": "unknown_error"}, "admin DELETE USER (failed)"),
        ({"operationType": "ACTION", "resourceType": "REALM", "resourcePath": "logout-all"}, "admin ACTION REALM"),
    ],
)
def test_other_admin_events_are_skipped_and_counted(ctx: AdapterContext, change: dict[str, Any], skipped: str) -> None:
    with pytest.raises(UnsupportedEventType) as caught:
        KeycloakFormat().to_events({**ADMIN[4], **change}, ctx)
    assert caught.value.event_type == skipped


def test_a_representation_embedded_as_an_object_is_read_too(ctx: AdapterContext) -> None:
    raw = {**ADMIN[0], "representation": {"id": BOB.id, "enabled": False}}
    assert [e.kind for e in KeycloakFormat().to_events(raw, ctx)] == [EventKind.PRINCIPAL_DISABLED]


def test_admin_fixture_lines_through_the_normalizer() -> None:
    results = [normalize(orjson.dumps(raw)) for raw in ADMIN + FLAT]
    assert [r.dead_letter for r in results] == [None] * len(results)
    assert [r.skipped_type for r in results] == [None] * 4 + ["admin client-secret regenerated",
                                                             "admin CREATE GROUP"] + [None] * 4


@FUZZ
@given(cut_lines([orjson.dumps(raw) for raw in ADMIN + FLAT]))
def test_cut_lines_never_escape(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)
