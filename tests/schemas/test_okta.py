"""Okta System Log adapter: exact canonical events per event type, bad input, fuzzing."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from schemas.events import (
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Revocation,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.okta import OktaFormat
from tests.fuzzing import (
    FUZZ,
    JSON_VALUES,
    assert_accounted_for,
    cut_lines,
    json_dumps,
    mutated_lines,
    normalize,
    paths,
)

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats" / "okta.jsonl"
LINES = SAMPLES.read_bytes().splitlines()
UTC = timezone.utc

BOB = Subject(id="00u8f2kq1zXyAbCdE5d7", name="bob@example.org", kind="user")
SESSION = "102qZ8fGhJkLmN"
BERLIN = Network(
    ip="79.200.1.10",
    user_agent="Mozilla/5.0 (Macintosh)",
    geo=Geo(country="Germany", city="Berlin", lat=52.52, lon=13.4, source="event"),
    asn=3320,
    as_org="deutsche telekom ag",
)
SYDNEY = Network(
    ip="1.120.10.10",
    user_agent="Mozilla/5.0 (Macintosh)",
    geo=Geo(country="Australia", city="Sydney", lat=-33.87, lon=151.21, source="event"),
    asn=1221,
    as_org="telstra limited",
)
ADMIN = {"id": "00uadm1nXyz", "type": "User", "alternateId": "admin@example.org", "displayName": "Alice Admin"}


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int) -> dict[str, Any]:
    return orjson.loads(LINES[n])


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = OktaFormat().to_events(raw, ctx)
    return event


def _at(day: int, hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, micro, tzinfo=UTC)


# -- the documented samples, event by event ---------------------------------------
def test_session_start_sample(ctx: AdapterContext) -> None:
    assert _one(_sample(0), ctx) == CanonicalEvent(
        event_id="okta:u1",
        kind=EventKind.SESSION_STARTED,
        time=_at(24, 9, 0),
        source="okta",
        subject=BOB,
        client_id="0oa5portal",
        session_id=SESSION,
        network=BERLIN,
        request=Request(id="req-u1"),
        outcome=Outcome(result="success"),
    )


def test_access_token_grant_sample_is_an_issue(ctx: AdapterContext) -> None:
    assert _one(_sample(1), ctx) == CanonicalEvent(
        event_id="okta:u2",
        kind=EventKind.ISSUED,
        time=_at(24, 9, 0, 1, 200_000),
        source="okta",
        token=TokenRef(
            id="AT.okta-0001", type=TokenType.ACCESS, family_id=SESSION, expires_at=_at(24, 10, 0, 1)
        ),
        subject=BOB,
        client_id="0oa5portal",
        session_id=SESSION,
        grant_type="authorization_code",
        scopes=("openid", "orders:read", "profile"),
        network=BERLIN,
        request=Request(id="req-u2", resource="/oauth2/aus1/v1/token"),
    )


def test_refresh_token_grant_sample_is_an_issue_of_a_refresh_token(ctx: AdapterContext) -> None:
    event = _one(_sample(2), ctx)
    assert event.kind is EventKind.ISSUED
    assert event.token == TokenRef(
        id="RT.okta-0001", type=TokenType.REFRESH, family_id=SESSION, expires_at=_at(1, 9, 0, 1).replace(month=12)
    )
    assert event.scopes == ("offline_access", "orders:read")
    assert event.grant_type == "authorization_code"


def test_grant_by_refresh_is_refreshed_without_a_parent(ctx: AdapterContext) -> None:
    """Okta does not name the refresh token presented: no parent, so no rotation is recorded."""
    assert _one(_sample(3), ctx) == CanonicalEvent(
        event_id="okta:u4",
        kind=EventKind.REFRESHED,
        time=_at(24, 9, 40),
        source="okta",
        token=TokenRef(
            id="AT.okta-0002", type=TokenType.ACCESS, family_id=SESSION, expires_at=_at(24, 10, 40)
        ),
        subject=BOB,
        client_id="0oa5portal",
        session_id=SESSION,
        grant_type="refresh_token",
        scopes=("orders:read",),
        network=SYDNEY,
        request=Request(id="req-u4"),
    )


def test_token_revoke_sample_revokes_the_token_target(ctx: AdapterContext) -> None:
    assert _one(_sample(4), ctx) == CanonicalEvent(
        event_id="okta:u5",
        kind=EventKind.REVOKED,
        time=_at(24, 9, 45),
        source="okta",
        token=TokenRef(id="RT.okta-0001", type=TokenType.REFRESH, expires_at=_at(1, 9, 0, 1).replace(month=12)),
        subject=Subject(id="00u8f2kq1zXyAbCdE5d7", kind="user"),
        client_id="0oa5portal",
        network=BERLIN,
        request=Request(id="req-u5"),
        revocation=Revocation(target="token", actor="bob@example.org"),
    )


def test_deactivate_sample_disables_the_user_target(ctx: AdapterContext) -> None:
    assert _one(_sample(5), ctx) == CanonicalEvent(
        event_id="okta:u6",
        kind=EventKind.PRINCIPAL_DISABLED,
        time=_at(24, 10, 0),
        source="okta",
        subject=BOB,
        client_id="0oa5portal",
        network=Network(
            ip="81.2.69.142",
            user_agent="Mozilla/5.0 (Macintosh)",
            geo=Geo(country="United Kingdom", city="London", lat=51.5, lon=-0.12, source="event"),
            asn=3320,
            as_org="deutsche telekom ag",
        ),
        request=Request(id="req-u6"),
    )


def test_every_sample_maps_to_one_event_with_a_stable_unique_id(ctx: AdapterContext) -> None:
    adapter = OktaFormat()
    ids = [e.event_id for line in LINES for e in adapter.to_events(orjson.loads(line), ctx)]
    again = [e.event_id for line in LINES for e in OktaFormat().to_events(orjson.loads(line), ctx)]
    assert ids == again == [f"okta:u{n}" for n in range(1, 7)]


def test_only_ids_are_kept_never_okta_token_hashes(ctx: AdapterContext) -> None:
    adapter = OktaFormat()
    dumped = "".join(e.model_dump_json() for line in LINES for e in adapter.to_events(orjson.loads(line), ctx))
    assert "hN3x" not in dumped  # detailEntry.hash is a digest of the token value: not ours to keep


# -- token grants ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("event_type", "target_type", "token_type"),
    [
        ("app.oauth2.token.grant.access_token", "access_token", TokenType.ACCESS),
        ("app.oauth2.token.grant.refresh_token", "refresh_token", TokenType.REFRESH),
        ("app.oauth2.token.grant.id_token", "id_token", TokenType.ID),
        ("app.oauth2.as.token.grant.id_token", "id_token", TokenType.ID),
    ],
)
def test_org_and_custom_server_grants_map_alike(
    ctx: AdapterContext, event_type: str, target_type: str, token_type: TokenType
) -> None:
    raw = _sample(1)
    raw["eventType"] = event_type
    raw["target"][1]["type"] = target_type
    event = _one(raw, ctx)
    assert event.kind is EventKind.ISSUED
    assert event.token == TokenRef(id="AT.okta-0001", type=token_type, family_id=SESSION, expires_at=_at(24, 10, 0, 1))


def test_grant_picks_the_token_its_event_type_names(ctx: AdapterContext) -> None:
    raw = _sample(2)  # grant.refresh_token
    raw["target"].insert(1, {"id": "AT.other", "type": "access_token", "detailEntry": None})
    assert _one(raw, ctx).token == TokenRef(
        id="RT.okta-0001", type=TokenType.REFRESH, family_id=SESSION, expires_at=_at(1, 9, 0, 1).replace(month=12)
    )


def test_refresh_minting_a_refresh_token_is_refreshed_of_type_refresh(ctx: AdapterContext) -> None:
    raw = _sample(2)
    raw["debugContext"]["debugData"]["grantType"] = "refresh_token"
    event = _one(raw, ctx)
    assert event.kind is EventKind.REFRESHED
    assert event.token is not None and event.token.type is TokenType.REFRESH and event.token.parent_id is None


def test_failed_grant_naming_no_token_keeps_who_where_and_why(ctx: AdapterContext) -> None:
    raw = _sample(3)
    raw["eventType"] = "app.oauth2.as.token.grant"
    raw["target"] = [raw["target"][0]]
    raw["outcome"] = {"result": "FAILURE", "reason": "invalid_grant"}
    event = _one(raw, ctx)
    assert event.kind is EventKind.REFRESHED
    assert event.token is None
    assert event.outcome == Outcome(result="failure", reason="invalid_grant")
    assert (event.subject, event.session_id, event.network) == (BOB, SESSION, SYDNEY)


def test_successful_grant_without_token_target_is_invalid(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["target"] = [raw["target"][0]]
    with pytest.raises(InvalidRecord, match="target: successful app.oauth2.as.token.grant.access_token names no token"):
        OktaFormat().to_events(raw, ctx)


@pytest.mark.parametrize(
    ("granted", "scopes"),
    [
        ("openid, profile, orders:read", ("openid", "orders:read", "profile")),
        (" openid ,profile,, orders:read ", ("openid", "orders:read", "profile")),
        ("openid profile", ("openid", "profile")),
        (["openid", " profile ", ""], ("openid", "profile")),
        (None, ()),
    ],
)
def test_granted_scopes_are_split_on_commas_and_trimmed(ctx: AdapterContext, granted: Any, scopes: tuple) -> None:
    raw = _sample(1)
    raw["debugContext"]["debugData"]["grantedScopes"] = granted
    assert _one(raw, ctx).scopes == scopes


def test_client_credentials_grant_has_a_service_subject(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["actor"] = {"id": "0oa5batch", "type": "PublicClientApp", "alternateId": "0oa5batch", "displayName": "Batch"}
    raw["authenticationContext"]["externalSessionId"] = "unknown"
    raw["debugContext"]["debugData"]["grantType"] = "client_credentials"
    event = _one(raw, ctx)
    assert event.subject == Subject(id="0oa5batch", name="0oa5batch", kind="service")
    assert event.session_id is None
    assert event.token is not None and event.token.family_id is None  # "unknown" links nothing


@pytest.mark.parametrize(("okta_type", "kind"), [(None, "user"), ("User", "user"), ("SystemPrincipal", "service"),
                                                 ("AppInstance", "service"), ("Device", "unknown")])
def test_actor_kind_is_user_unless_okta_says_otherwise(ctx: AdapterContext, okta_type: str | None, kind: str) -> None:
    raw = _sample(1)
    raw["actor"]["type"] = okta_type
    subject = _one(raw, ctx).subject
    assert subject is not None and subject.kind == kind


def test_actor_without_login_is_named_by_display_name(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["actor"]["alternateId"] = None
    assert _one(raw, ctx).subject == Subject(id="00u8f2kq1zXyAbCdE5d7", name="Bob", kind="user")


# -- network ---------------------------------------------------------------------
def test_proxy_marks_hosting_and_missing_as_is_left_to_enrichment(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["securityContext"] = {"asNumber": 0, "asOrg": None, "isp": None, "domain": None, "isProxy": True}
    net = _one(raw, ctx).network
    assert (net.asn, net.as_org, net.hosting) == (None, None, True)


def test_not_a_proxy_says_nothing_about_hosting(ctx: AdapterContext) -> None:
    assert _one(_sample(1), ctx).network.hosting is None


def test_country_only_geo_is_kept_and_no_geo_is_left_to_enrichment(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["client"]["geographicalContext"] = {"country": "Germany", "city": None, "geolocation": None}
    assert _one(raw, ctx).network.geo == Geo(country="Germany", source="event")
    raw["client"]["geographicalContext"] = None
    assert _one(raw, ctx).network.geo is None
    raw["client"] = None
    assert _one(raw, ctx).network == Network(asn=3320, as_org="deutsche telekom ag")


# -- revocation, reuse, sessions, lifecycle ---------------------------------------------
def test_org_server_revoke_of_an_access_token(ctx: AdapterContext) -> None:
    raw = _sample(4)
    raw["eventType"] = "app.oauth2.token.revoke"
    raw["target"][1] = {
        "id": "AT.okta-0001", "type": "access_token", "detailEntry": {"expires": "2026-11-24T10:00:01Z"}
    }
    event = _one(raw, ctx)
    assert event.kind is EventKind.REVOKED
    assert event.token == TokenRef(id="AT.okta-0001", type=TokenType.ACCESS, expires_at=_at(24, 10, 0, 1))
    assert event.revocation == Revocation(target="token", actor="bob@example.org")
    assert event.session_id is None  # the caller's session: it must not re-link the token


def test_revoke_without_token_target_is_invalid(ctx: AdapterContext) -> None:
    raw = _sample(4)
    raw["target"] = [raw["target"][0]]
    with pytest.raises(InvalidRecord, match="target: no access_token/refresh_token/id_token target to revoke"):
        OktaFormat().to_events(raw, ctx)


def _reuse(event_type: str = "app.oauth2.as.token.detect_reuse") -> dict[str, Any]:
    raw = _sample(4)
    raw.update(uuid="u-reuse", eventType=event_type, published="2026-11-24T09:30:00.000Z")
    raw["actor"] = {"id": "0oa5portal", "type": "PublicClientApp", "alternateId": "0oa5portal", "displayName": "Portal"}
    raw["client"]["ipAddress"] = "139.59.1.1"
    raw["client"]["geographicalContext"] = {"city": "Bengaluru", "country": "India",
                                            "geolocation": {"lat": 12.97, "lon": 77.59}}
    raw["securityContext"] = {"asNumber": 14061, "asOrg": "digitalocean llc", "isProxy": False}
    return raw


@pytest.mark.parametrize("event_type", ["app.oauth2.as.token.detect_reuse", "app.oauth2.token.detect_reuse"])
def test_detect_reuse_is_the_idps_reuse_verdict(ctx: AdapterContext, event_type: str) -> None:
    assert _one(_reuse(event_type), ctx) == CanonicalEvent(
        event_id="okta:u-reuse",
        kind=EventKind.REUSE_REPORTED,
        time=_at(24, 9, 30),
        source="okta",
        token=TokenRef(
            id="RT.okta-0001", type=TokenType.REFRESH, family_id=SESSION, expires_at=_at(1, 9, 0, 1).replace(month=12)
        ),
        subject=Subject(id="00u8f2kq1zXyAbCdE5d7", kind="user"),  # the User target, not the client actor
        client_id="0oa5portal",
        session_id=SESSION,
        network=Network(
            ip="139.59.1.1",
            user_agent="Mozilla/5.0 (Macintosh)",
            geo=Geo(country="India", city="Bengaluru", lat=12.97, lon=77.59, source="event"),
            asn=14061,
            as_org="digitalocean llc",
        ),
        request=Request(id="req-u5"),
    )


def test_detect_reuse_without_token_target_still_names_the_session(ctx: AdapterContext) -> None:
    raw = _reuse()
    raw["target"] = [raw["target"][0]]
    event = _one(raw, ctx)
    assert (event.kind, event.token, event.session_id) == (EventKind.REUSE_REPORTED, None, SESSION)


def test_session_end_is_session_ended(ctx: AdapterContext) -> None:
    raw = _sample(0)
    raw.update(uuid="u-end", eventType="user.session.end", published="2026-11-24T17:00:00Z")
    assert _one(raw, ctx) == CanonicalEvent(
        event_id="okta:u-end",
        kind=EventKind.SESSION_ENDED,
        time=_at(24, 17, 0),
        source="okta",
        subject=BOB,
        client_id="0oa5portal",
        session_id=SESSION,
        network=BERLIN,
        request=Request(id="req-u1"),
    )


def test_session_end_without_a_session_is_invalid(ctx: AdapterContext) -> None:
    raw = _sample(0)
    raw.update(eventType="user.session.end", authenticationContext={"externalSessionId": "unknown"})
    with pytest.raises(InvalidRecord, match="externalSessionId: user.session.end names no session"):
        OktaFormat().to_events(raw, ctx)


def test_session_clear_by_an_admin_revokes_all_of_the_users_tokens(ctx: AdapterContext) -> None:
    raw = _sample(5)
    raw.update(uuid="u-clear", eventType="user.session.clear", actor=ADMIN)
    assert _one(raw, ctx) == CanonicalEvent(
        event_id="okta:u-clear",
        kind=EventKind.REVOKED,
        time=_at(24, 10, 0),
        source="okta",
        subject=BOB,
        client_id="0oa5portal",
        network=_one(_sample(5), ctx).network,
        request=Request(id="req-u6"),
        revocation=Revocation(target="subject", actor="admin@example.org"),
    )


def test_session_clear_without_user_target_clears_the_actor(ctx: AdapterContext) -> None:
    raw = _sample(0)
    raw["eventType"] = "user.session.clear"
    raw["target"] = None
    assert _one(raw, ctx).subject == BOB


@pytest.mark.parametrize(
    "event_type",
    ["user.lifecycle.deactivate", "user.lifecycle.suspend", "user.lifecycle.delete.initiated",
     "user.account.reset_password"],
)
def test_lifecycle_events_disable_the_user_target_not_the_admin(ctx: AdapterContext, event_type: str) -> None:
    raw = _sample(5)
    raw.update(eventType=event_type, actor=ADMIN)
    event = _one(raw, ctx)
    assert (event.kind, event.subject, event.session_id) == (EventKind.PRINCIPAL_DISABLED, BOB, None)


def test_lifecycle_event_without_user_target_is_invalid(ctx: AdapterContext) -> None:
    raw = _sample(5)
    raw["target"] = [{"id": "0oa5portal", "type": "AppInstance"}]
    with pytest.raises(InvalidRecord, match="target: user.lifecycle.deactivate names no User target"):
        OktaFormat().to_events(raw, ctx)


# -- outcomes -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ({"result": "SUCCESS", "reason": None}, Outcome(result="success")),
        ({"result": "ALLOW"}, Outcome(result="success")),
        ({"result": "FAILURE", "reason": "invalid_grant"}, Outcome(result="failure", reason="invalid_grant")),
        ({"result": "DENY", "reason": None}, Outcome(result="failure", reason="DENY")),
        ({"result": "SKIPPED"}, Outcome(result="unknown", reason="SKIPPED")),
        (None, Outcome(result="unknown")),
    ],
)
def test_outcome_mapping(ctx: AdapterContext, outcome: dict | None, expected: Outcome) -> None:
    raw = _sample(0)
    raw["outcome"] = outcome
    assert _one(raw, ctx).outcome == expected


# -- what is skipped and what is rejected ---------------------------------------------------
@pytest.mark.parametrize(
    "event_type",
    ["user.authentication.sso", "app.oauth2.token.revoke.implicit.as", "policy.evaluate_sign_on", "x"],
)
def test_other_event_types_are_unsupported_not_invalid(ctx: AdapterContext, event_type: str) -> None:
    raw = {**_sample(1), "eventType": event_type, "published": "not even a time"}
    with pytest.raises(UnsupportedEventType) as caught:
        OktaFormat().to_events(raw, ctx)
    assert caught.value.event_type == event_type


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("published",), "2026-11-24T09:00:01", "published"),
        (("published",), "yesterday", "published"),
        (("uuid",), None, "uuid"),
        (("uuid",), 17, "uuid"),
        (("eventType",), 3, "eventType: must be a string"),
        (("eventType",), "e" * 300, "eventType: longer than 256"),
        (("target",), "AT.okta-0001", "target"),
        (("target", 1, "detailEntry", "expires"), "next week", "target.detailEntry.expires: not an ISO 8601"),
        (("target", 1, "detailEntry", "expires"), "2026-11-24T10:00:01",
         "target.detailEntry.expires: time has no timezone"),
        (("target", 1, "detailEntry", "expires"), 1764000000, "target.detailEntry.expires"),
        (("client", "ipAddress"), "9" * 100, "client.ipAddress"),
        (("securityContext", "asNumber"), "AS3320", "securityContext.asNumber"),
        (("client", "geographicalContext", "geolocation", "lat"), 200, "client.geographicalContext.geolocation.lat"),
        (("outcome",), "SUCCESS", "outcome"),
        (("actor",), ["Bob"], "actor"),
        (("debugContext", "debugData", "grantedScopes"), {"openid": True}, "grantedScopes"),
    ],
)
def test_malformed_records_raise_invalid_record_naming_the_field(
    ctx: AdapterContext, path: tuple, value: Any, reason: str
) -> None:
    raw = _sample(1)
    node = raw
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    with pytest.raises(InvalidRecord, match=reason):
        OktaFormat().to_events(raw, ctx)


def test_matches_only_okta_records() -> None:
    adapter = OktaFormat()
    assert all(adapter.matches(orjson.loads(line)) for line in LINES)
    others = sorted(SAMPLES.parent.glob("*.jsonl"))
    assert len(others) > 1
    for path in others:
        if path.name != SAMPLES.name:
            assert not any(adapter.matches(orjson.loads(line)) for line in path.read_bytes().splitlines()), path.name


# -- fuzzing through the normalizer ------------------------------------------------------
@FUZZ
@given(mutated_lines(LINES, most=3, dumps=json_dumps, values=JSON_VALUES))
def test_mutated_samples_never_escape_the_normalizer(line: bytes) -> None:
    """Drop nested keys or replace them with random JSON, up to three at a time."""
    assert_accounted_for(normalize(line), adapter_crash=False)


@FUZZ
@given(cut_lines(LINES))
def test_truncated_samples_are_dead_lettered(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)


def test_mutation_paths_reach_nested_fields() -> None:
    assert ("target", 1, "detailEntry", "expires") in paths(orjson.loads(LINES[1]))
    assert ("client", "geographicalContext", "geolocation", "lat") in paths(orjson.loads(LINES[0]))


def test_a_client_address_that_is_no_ip_is_dropped_and_counted_not_fatal(ctx: AdapterContext) -> None:
    raw = _sample(1)
    raw["client"]["ipAddress"] = "portal.example.org"
    [event] = OktaFormat().to_events(raw, ctx)
    assert event.network.ip is None
    assert ctx.repairs["okta.client.ipAddress: not an IP address (dropped)"] == 1
