"""Keycloak user-event adapter: exact canonical events per event type, skips, dead letters, fuzzing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    CanonicalEvent,
    EventKind,
    Network,
    Outcome,
    Revocation,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.keycloak import EXCHANGE_GRANT, KeycloakFormat
from tests.fuzzing import FUZZ, FUZZ_HASHER, assert_accounted_for, cut_lines, json_dumps, json_values, normalize

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
SAMPLES = (FORMATS_DIR / "keycloak.jsonl").read_bytes().splitlines()
UTC = timezone.utc
REALM = "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"
USER = "5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"
SESSION = "c1f4e2a0-9b7d-4c3e-8f21-6a5b4c3d2e10"
FAMILY = f"{SESSION}/portal"  # the portal client's refresh chain in Alice's SSO session
SCOPES = ("openid", "orders:read", "profile")
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int) -> dict[str, Any]:
    return orjson.loads(SAMPLES[n])


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _record(type_: str, details: dict[str, Any] | None = None, **keys: Any) -> dict[str, Any]:
    """A record shaped like the samples: Alice's portal session, 2026-11-24 09:00 UTC."""
    raw: dict[str, Any] = {
        "id": "ev-1", "time": 1795510800000, "type": type_, "realmId": REALM, "clientId": "portal",
        "userId": USER, "sessionId": SESSION, "ipAddress": "79.200.1.10", "error": None, "details": details or {},
    }
    raw.update(keys)
    return raw


def _event(event_id: str, kind: EventKind, time: datetime, **fields: Any) -> CanonicalEvent:
    """The fields every event of a ``_record``/sample carries, overridable."""
    base: dict[str, Any] = {
        "source": "keycloak", "tenant": REALM, "subject": Subject(id=USER, kind="user"), "client_id": "portal",
        "session_id": SESSION, "network": Network(ip="79.200.1.10"),
    }
    return CanonicalEvent(event_id=event_id, kind=kind, time=time, **{**base, **fields})


T0 = _at(1795510800000)


# -- the samples, event by event ---------------------------------------------------
def test_login_sample_starts_the_session_without_a_token(ctx: AdapterContext) -> None:
    assert KeycloakFormat().to_events(_sample(0), ctx) == [
        _event("keycloak:e0a1", EventKind.SESSION_STARTED, _at(1764000000000),
               subject=Subject(id=USER, name="alice", kind="user")),
    ]


def test_code_to_token_sample_issues_access_and_refresh_token(ctx: AdapterContext) -> None:
    t = _at(1764000000400)
    common = {"grant_type": "authorization_code", "scopes": SCOPES}
    assert KeycloakFormat().to_events(_sample(1), ctx) == [
        _event("keycloak:e0a2#at", EventKind.ISSUED, t, **common,
               token=TokenRef(id="at-0001", type=TokenType.ACCESS, family_id=FAMILY, issued_at=t)),
        _event("keycloak:e0a2#rt", EventKind.ISSUED, t, **common,
               token=TokenRef(id="rt-0001", type=TokenType.REFRESH, family_id=FAMILY, issued_at=t)),
    ]


def test_refresh_sample_rotates_the_refresh_token_and_issues_an_access_token(ctx: AdapterContext) -> None:
    t = _at(1764000300000)
    common = {"grant_type": "refresh_token", "scopes": SCOPES}
    assert KeycloakFormat().to_events(_sample(2), ctx) == [
        _event("keycloak:e0a3#rt", EventKind.REFRESHED, t, **common,
               token=TokenRef(id="rt-0002", type=TokenType.REFRESH, family_id=FAMILY, parent_id="rt-0001",
                              issued_at=t)),
        _event("keycloak:e0a3#at", EventKind.ISSUED, t, **common,
               token=TokenRef(id="at-0002", type=TokenType.ACCESS, family_id=FAMILY, parent_id="rt-0001",
                              issued_at=t)),
    ]


def test_refresh_error_sample_is_a_failed_redemption_of_the_presented_token(ctx: AdapterContext) -> None:
    assert KeycloakFormat().to_events(_sample(3), ctx) == [
        _event("keycloak:e0a4", EventKind.REFRESHED, _at(1764000900000), grant_type="refresh_token",
               token=TokenRef(id="rt-0001", type=TokenType.REFRESH, family_id=FAMILY),
               network=Network(ip="185.220.101.5"),
               outcome=Outcome(result="failure", reason="invalid_token; Maximum allowed refresh token reuse exceeded")),
    ]


def test_introspection_sample_is_a_use_by_the_resource_server(ctx: AdapterContext) -> None:
    """No family: the clientId is the resource server asking, not the client the token belongs to."""
    assert KeycloakFormat().to_events(_sample(4), ctx) == [
        _event("keycloak:e0a5", EventKind.USED, _at(1764001000000), client_id="orders-api",
               token=TokenRef(id="at-0002", type=TokenType.ACCESS),
               network=Network(ip="10.0.4.12")),
    ]


def test_logout_sample_ends_the_session(ctx: AdapterContext) -> None:
    assert KeycloakFormat().to_events(_sample(5), ctx) == [
        _event("keycloak:e0a6", EventKind.SESSION_ENDED, _at(1764001200000), client_id=None),
    ]


# -- other shapes of each type ----------------------------------------------------------
def test_client_credentials_login_issues_a_token_to_the_service_account(ctx: AdapterContext) -> None:
    """Sessionless: no family (a ``client:<id>`` family would lump all its tokens into one grant)."""
    raw = _record("CLIENT_LOGIN", {"token_id": "at-svc-1", "grant_type": "client_credentials",
                                    "scope": "orders:write profile", "username": "service-account-orders-worker",
                                    "client_auth_method": "client-secret"},
                  clientId="orders-worker", userId="9d1f0c2e-svc", sessionId=None, ipAddress="3.120.5.5")
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#at", EventKind.ISSUED, T0, client_id="orders-worker", session_id=None,
               subject=Subject(id="9d1f0c2e-svc", name="service-account-orders-worker", kind="service"),
               grant_type="client_credentials", scopes=("orders:write", "profile"), network=Network(ip="3.120.5.5"),
               token=TokenRef(id="at-svc-1", type=TokenType.ACCESS, issued_at=T0)),
    ]


def test_client_credentials_login_in_a_session_gets_the_session_client_family(ctx: AdapterContext) -> None:
    raw = _record("CLIENT_LOGIN", {"token_id": "at-svc-1", "refresh_token_id": "rt-svc-1",
                                    "username": "service-account-orders-worker"},
                  clientId="orders-worker", userId="9d1f0c2e-svc")
    events = KeycloakFormat().to_events(raw, ctx)
    assert [(e.token.id, e.token.family_id, e.session_id) for e in events if e.token] == [
        ("at-svc-1", f"{SESSION}/orders-worker", SESSION), ("rt-svc-1", f"{SESSION}/orders-worker", SESSION),
    ]


def test_each_client_of_one_sso_session_has_its_own_family(ctx: AdapterContext) -> None:
    """Keycloak rotates and revokes refresh tokens per client session, not per SSO session."""
    adapter = KeycloakFormat()
    portal = adapter.to_events(_record("CODE_TO_TOKEN", {"token_id": "at-p", "refresh_token_id": "rt-p"}), ctx)
    mobile = adapter.to_events(
        _record("CODE_TO_TOKEN", {"token_id": "at-m", "refresh_token_id": "rt-m"}, id="ev-2", clientId="mobile"), ctx
    )
    assert {e.token.family_id for e in portal if e.token} == {FAMILY}
    assert {e.token.family_id for e in mobile if e.token} == {f"{SESSION}/mobile"}
    assert {e.session_id for e in [*portal, *mobile]} == {SESSION}


@pytest.mark.parametrize(
    "raw",
    [
        _record("REFRESH_TOKEN", {"token_id": "at-2", "refresh_token_id": "rt-1"}, clientId=None),
        _record("REFRESH_TOKEN", {"token_id": "at-2", "refresh_token_id": "rt-1"}, sessionId=None),
        _record("REFRESH_TOKEN_ERROR", {"refresh_token_id": "rt-1"}, error="invalid_token", clientId=""),
        _record("CODE_TO_TOKEN", {"token_id": "at-1"}, sessionId=""),
    ],
    ids=["no-client", "no-session", "empty-client", "empty-session"],
)
def test_token_event_without_session_or_client_has_no_family(ctx: AdapterContext, raw: dict[str, Any]) -> None:
    [event] = KeycloakFormat().to_events(raw, ctx)
    assert event.token is not None and event.token.family_id is None
    assert event.session_id == raw["sessionId"]  # session_id stays sessionId as given


def test_refresh_without_a_new_refresh_token_mints_only_an_access_token(ctx: AdapterContext) -> None:
    raw = _record("REFRESH_TOKEN", {"token_id": "at-2", "refresh_token_id": "rt-1", "scope": "openid"})
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#at", EventKind.REFRESHED, T0, grant_type="refresh_token", scopes=("openid",),
               token=TokenRef(id="at-2", type=TokenType.ACCESS, family_id=FAMILY, parent_id="rt-1", issued_at=T0)),
    ]


def test_refresh_returning_the_presented_refresh_token_is_not_a_rotation(ctx: AdapterContext) -> None:
    raw = _record("REFRESH_TOKEN", {"token_id": "at-2", "refresh_token_id": "rt-1",
                                    "updated_refresh_token_id": "rt-1"})
    [event] = KeycloakFormat().to_events(raw, ctx)
    assert event.kind is EventKind.REFRESHED and event.token is not None
    assert (event.token.id, event.token.type, event.token.parent_id) == ("at-2", TokenType.ACCESS, "rt-1")


def test_offline_refresh_token_is_a_refresh_token(ctx: AdapterContext) -> None:
    raw = _record("CODE_TO_TOKEN", {"token_id": "at-1", "refresh_token_id": "ot-1", "refresh_token_type": "Offline",
                                    "scope": "openid offline_access"})
    events = KeycloakFormat().to_events(raw, ctx)
    assert [(e.event_id, e.token.id, e.token.type) for e in events if e.token] == [
        ("keycloak:ev-1#at", "at-1", TokenType.ACCESS), ("keycloak:ev-1#rt", "ot-1", TokenType.REFRESH),
    ]
    assert all(e.scopes == ("offline_access", "openid") for e in events)


def test_password_grant_login_also_issues_its_tokens(ctx: AdapterContext) -> None:
    raw = _record("LOGIN", {"auth_method": "openid-connect", "grant_type": "password", "username": "alice",
                            "token_id": "at-1", "refresh_token_id": "rt-1", "scope": "openid"})
    events = KeycloakFormat().to_events(raw, ctx)
    assert [(e.event_id, e.kind, e.token.id if e.token else None, e.grant_type) for e in events] == [
        ("keycloak:ev-1", EventKind.SESSION_STARTED, None, None),
        ("keycloak:ev-1#at", EventKind.ISSUED, "at-1", "password"),
        ("keycloak:ev-1#rt", EventKind.ISSUED, "rt-1", "password"),
    ]


def test_token_exchange_issues_for_the_requested_audience_and_subject(ctx: AdapterContext) -> None:
    raw = _record("TOKEN_EXCHANGE", {"token_id": "at-x", "audience": "billing-api ledger-api",
                                     "requested_subject": "bob", "subject_token_id": "at-1",
                                     "scope": "billing:read", "grant_type": EXCHANGE_GRANT},
                  clientId="orders-api", ipAddress="10.0.4.12")
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#at", EventKind.ISSUED, T0, client_id="orders-api", network=Network(ip="10.0.4.12"),
               subject=Subject(id="bob", kind="user"), grant_type=EXCHANGE_GRANT, scopes=("billing:read",),
               token=TokenRef(id="at-x", type=TokenType.ACCESS, family_id=f"{SESSION}/orders-api", parent_id="at-1",
                              issued_at=T0, audience=("billing-api", "ledger-api"))),
    ]


def test_token_exchange_without_subject_token_id_has_no_parent(ctx: AdapterContext) -> None:
    raw = _record("TOKEN_EXCHANGE", {"token_id": "at-x", "audience": "billing-api"})
    [event] = KeycloakFormat().to_events(raw, ctx)
    assert event.token is not None and event.token.parent_id is None
    assert event.subject == Subject(id=USER, kind="user") and event.grant_type == EXCHANGE_GRANT


def test_failed_introspection_is_a_refused_use(ctx: AdapterContext) -> None:
    raw = _record("INTROSPECT_TOKEN_ERROR", {"token_id": "at-1", "reason": "Access token JWT check failed"},
                  error="token_introspection_failed", clientId="orders-api", ipAddress="10.0.4.12")
    [event] = KeycloakFormat().to_events(raw, ctx)
    assert event.kind is EventKind.USED and event.client_id == "orders-api"
    reason = "token_introspection_failed; Access token JWT check failed"
    assert event.outcome == Outcome(result="failure", reason=reason)


def test_error_on_a_success_type_is_a_failure(ctx: AdapterContext) -> None:
    raw = _record("INTROSPECT_TOKEN", {"token_id": "at-1"}, error="invalid_request")
    [event] = KeycloakFormat().to_events(raw, ctx)
    assert event.outcome == Outcome(result="failure", reason="invalid_request")


def test_revoke_grant_with_refresh_token_revokes_it_and_the_clients_family(ctx: AdapterContext) -> None:
    """The grant is the portal's family in the session, not the session: other clients keep theirs."""
    raw = _record("REVOKE_GRANT", {"revoked_client": "portal", "refresh_token_id": "rt-2"})
    rt = TokenRef(id="rt-2", type=TokenType.REFRESH, family_id=FAMILY)
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#rt", EventKind.REVOKED, T0, revocation=Revocation(target="token", actor="portal"),
               token=rt),
        _event("keycloak:ev-1#family", EventKind.REVOKED, T0, revocation=Revocation(target="family", actor="portal"),
               token=rt),
    ]


def test_revoking_only_an_access_token_does_not_revoke_the_family(ctx: AdapterContext) -> None:
    raw = _record("REVOKE_GRANT", {"token_id": "at-2"})
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#at", EventKind.REVOKED, T0, revocation=Revocation(target="token", actor="portal"),
               token=TokenRef(id="at-2", type=TokenType.ACCESS, family_id=FAMILY)),
    ]


def test_access_token_named_with_the_revoked_client_revokes_the_family_too(ctx: AdapterContext) -> None:
    raw = _record("REVOKE_GRANT", {"revoked_client": "portal", "token_id": "at-2"})
    at = TokenRef(id="at-2", type=TokenType.ACCESS, family_id=FAMILY)
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#at", EventKind.REVOKED, T0, revocation=Revocation(target="token", actor="portal"),
               token=at),
        _event("keycloak:ev-1#family", EventKind.REVOKED, T0, revocation=Revocation(target="family", actor="portal"),
               token=at),
    ]


def test_client_revocation_in_a_session_without_token_ids_carries_the_family_on_a_placeholder(
    ctx: AdapterContext,
) -> None:
    """The account console revoking the portal in this session: the family is the revoked client's,
    the actor the client that asked; the family id travels as a placeholder token."""
    raw = _record("REVOKE_GRANT", {"revoked_client": "portal"}, clientId="account-console")
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#family", EventKind.REVOKED, T0, client_id="account-console",
               revocation=Revocation(target="family", actor="account-console"),
               token=TokenRef(id=FAMILY, type=TokenType.UNKNOWN, family_id=FAMILY)),
    ]


def test_revoke_grant_without_session_leaves_the_family_to_the_named_tokens_issuance(ctx: AdapterContext) -> None:
    """No session, no family id: the family event still names the refresh token, whose family the
    lineage state knows from its issuance."""
    raw = _record("REVOKE_GRANT", {"revoked_client": "portal", "refresh_token_id": "rt-2"}, sessionId=None)
    rt = TokenRef(id="rt-2", type=TokenType.REFRESH)
    assert KeycloakFormat().to_events(raw, ctx) == [
        _event("keycloak:ev-1#rt", EventKind.REVOKED, T0, session_id=None,
               revocation=Revocation(target="token", actor="portal"), token=rt),
        _event("keycloak:ev-1#family", EventKind.REVOKED, T0, session_id=None,
               revocation=Revocation(target="family", actor="portal"), token=rt),
    ]


def test_wrapper_keys_are_ignored(ctx: AdapterContext) -> None:
    raw = {**_sample(1), "timestamp": "2025-11-24T16:00:00.400Z", "eventType": "CODE_TO_TOKEN",
           "realmName": "main", "loggerName": "org.keycloak.events"}
    assert KeycloakFormat().to_events(raw, ctx) == KeycloakFormat().to_events(_sample(1), ctx)


def test_record_without_id_gets_stable_content_ids_with_role_suffixes(ctx: AdapterContext) -> None:
    raw = {k: v for k, v in _sample(1).items() if k != "id"}
    first = [e.event_id for e in KeycloakFormat().to_events(raw, ctx)]
    again = [e.event_id for e in KeycloakFormat().to_events(orjson.loads(orjson.dumps(raw)), ctx)]
    other = [e.event_id for e in KeycloakFormat().to_events({**raw, "ipAddress": "79.201.5.5"}, ctx)]
    assert first == again and first[0].startswith("keycloak:")
    assert [i[-3:] for i in first] == ["#at", "#rt"] and first[0][:-3] == first[1][:-3]
    assert set(other).isdisjoint(first)


@pytest.mark.parametrize(
    ("address", "ip"),
    [("2a02:8108::1", "2a02:8108::1"), ("79.200.1.10, 10.0.0.1", "10.0.0.1"), ("unknown", None), ("", None)],
)
def test_ip_address_is_kept_only_when_it_is_an_ip(ctx: AdapterContext, address: str, ip: str | None) -> None:
    [event] = KeycloakFormat().to_events({**_sample(0), "ipAddress": address}, ctx)
    assert event.network == Network(ip=ip)


def test_a_raw_token_a_listener_adds_is_never_kept(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["details"] = {**raw["details"], "access_token": JWT, "refresh_token": JWT + "x"}
    events = KeycloakFormat().to_events({**raw, "authorization": f"Bearer {JWT}"}, ctx)
    assert len(events) == 2
    assert all(JWT not in e.model_dump_json() for e in events)


# -- skipped and dead-lettered --------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "skipped"),
    [
        (_record("UPDATE_PROFILE"), "UPDATE_PROFILE"),
        (_record("REGISTER"), "REGISTER"),
        (_record("LOGIN_ERROR", error="invalid_user_credentials"), "LOGIN_ERROR"),
        (_record("CODE_TO_TOKEN_ERROR", error="invalid_code"), "CODE_TO_TOKEN_ERROR"),
        (_record("UPDATE_PROFILE", time="not even a time"), "UPDATE_PROFILE"),
        (_record("REFRESH_TOKEN_ERROR", {"reason": "Invalid refresh token"}, error="invalid_token"),
         "REFRESH_TOKEN_ERROR without refresh_token_id"),
        (_record("INTROSPECT_TOKEN", {}), "INTROSPECT_TOKEN without token_id"),
        # The account console revoking the portal for Alice in every session: no canonical target.
        (_record("REVOKE_GRANT", {"revoked_client": "portal"}, sessionId=None, clientId="account-console"),
         "REVOKE_GRANT without sessionId"),
        (_record("REVOKE_GRANT", {}, sessionId=None), "REVOKE_GRANT without sessionId"),
        (_record("REVOKE_GRANT", {}, clientId=None), "REVOKE_GRANT without clientId"),
        # Records that name nothing to follow (a listener that drops the details, a jboss-logging
        # line from before Keycloak 24 without sessionId): counted, not dead-lettered.
        (_record("CODE_TO_TOKEN", {"scope": "openid"}), "CODE_TO_TOKEN without token id"),
        (_record("LOGOUT", sessionId=None), "LOGOUT without sessionId"),
        (_record("LOGIN", sessionId=None), "LOGIN without sessionId"),
        (_record("REFRESH_TOKEN", {"token_id": "at-2"}), "REFRESH_TOKEN without refresh_token_id"),
        (_record("REFRESH_TOKEN", {"refresh_token_id": "rt-1"}), "REFRESH_TOKEN without token id"),
        (_record("TOKEN_EXCHANGE", {"audience": "billing-api"}), "TOKEN_EXCHANGE without token id"),
    ],
)
def test_types_without_a_use_are_skipped(ctx: AdapterContext, raw: dict[str, Any], skipped: str) -> None:
    with pytest.raises(UnsupportedEventType) as caught:
        KeycloakFormat().to_events(raw, ctx)
    assert caught.value.event_type == skipped


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"time": True}, "time"),
        ({"time": "yesterday"}, "time: not an ISO 8601 time"),
        ({"time": "2026-11-24T09:00:00"}, "time: time has no timezone"),
        ({"time": None}, "time"),
        ({"time": -5}, "time: epoch time out of range"),
        ({"time": 10**20}, "time: epoch time out of range"),
        ({"type": 7}, "type"),
        ({"type": ""}, "type"),
        ({"type": "X" * 65}, "type"),
        ({"details": ["token_id", "at-1"]}, "details"),
        ({"details": {"token_id": 42, "refresh_token_id": "rt-1"}}, "details.token_id"),
        ({"realmId": "r" * 600}, "realmId"),
        ({"userId": {"id": "alice"}}, "userId"),
    ],
)
def test_malformed_records_raise_invalid_record_naming_the_field(
    ctx: AdapterContext, change: dict[str, Any], reason: str
) -> None:
    raw = {**_record("CODE_TO_TOKEN", {"token_id": "at-1", "refresh_token_id": "rt-1"}), **change}
    with pytest.raises(InvalidRecord, match=reason) as caught:
        KeycloakFormat().to_events(raw, ctx)
    assert caught.value.reason.startswith("keycloak: ")


def test_missing_time_is_invalid(ctx: AdapterContext) -> None:
    raw = {k: v for k, v in _sample(0).items() if k != "time"}
    with pytest.raises(InvalidRecord, match="time: Field required \\(nor timestamp or @timestamp\\)"):
        KeycloakFormat().to_events(raw, ctx)


# -- detection -------------------------------------------------------------------------
def test_matches_keycloak_events_and_nothing_else() -> None:
    adapter = KeycloakFormat()
    assert all(adapter.matches(orjson.loads(line)) for line in SAMPLES)
    for sample in FORMATS_DIR.glob("*.jsonl"):
        if not sample.stem.startswith("keycloak"):  # keycloak_*.jsonl: its other shapes
            assert not any(adapter.matches(orjson.loads(line)) for line in sample.read_bytes().splitlines())
    admin_event = {"time": 1795510800000, "realmId": REALM, "operationType": "UPDATE", "resourceType": "USER",
                   "authDetails": {"realmId": REALM, "clientId": "admin-cli"}}
    assert adapter.matches(admin_event)  # admin events are Keycloak's too (keycloak_admin)
    assert FORMATS["keycloak"].name == "keycloak"


# -- fuzzing through the normalizer -------------------------------------------------------
# No Infinity: the adapter is also called on the dict itself, and parsed JSON never holds one.
_json = json_values(infinity=False, max_leaves=10)
_TOP_KEYS = ["id", "time", "type", "realmId", "clientId", "userId", "sessionId", "ipAddress", "error", "details"]
_DETAIL_KEYS = ["token_id", "refresh_token_id", "updated_refresh_token_id", "refresh_token_type", "scope",
                "audience", "requested_subject", "subject_token_id", "revoked_client", "username", "reason"]
_TYPES = st.sampled_from(["LOGIN", "CODE_TO_TOKEN", "CLIENT_LOGIN", "REFRESH_TOKEN", "REFRESH_TOKEN_ERROR",
                          "TOKEN_EXCHANGE", "INTROSPECT_TOKEN", "INTROSPECT_TOKEN_ERROR", "LOGOUT", "REVOKE_GRANT"])


def _check(raw: dict[str, Any] | None, line: bytes) -> None:
    """Adapter: events or one of its two exceptions; normalizer: events, a skip, or a reasoned dead letter."""
    if raw is not None and KeycloakFormat().matches(raw):
        try:
            assert KeycloakFormat().to_events(raw, AdapterContext(hash_token=FUZZ_HASHER))
        except (InvalidRecord, UnsupportedEventType):
            pass
    assert_accounted_for(normalize(line), adapter_crash=False)


@FUZZ
@given(
    st.integers(0, len(SAMPLES) - 1),
    st.sets(st.sampled_from(_TOP_KEYS)),
    st.dictionaries(st.sampled_from(_TOP_KEYS), _json, max_size=3),
    st.dictionaries(st.sampled_from(_DETAIL_KEYS), _json | st.text(max_size=12), max_size=4),
    _TYPES | st.none(),
)
def test_mutated_samples_never_escape(
    n: int, dropped: set[str], replaced: dict[str, Any], details: dict[str, Any], type_: str | None
) -> None:
    raw = {k: v for k, v in _sample(n).items() if k not in dropped}
    raw.update(replaced)
    if type_ is not None and "type" not in dropped:
        raw["type"] = type_
    if isinstance(raw.get("details"), dict):
        raw["details"] = {**raw["details"], **details}
    _check(raw, json_dumps(raw))


@FUZZ
@given(cut_lines(SAMPLES))
def test_truncated_samples_never_escape(line: bytes) -> None:
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        raw = None
    _check(raw if isinstance(raw, dict) else None, line)
