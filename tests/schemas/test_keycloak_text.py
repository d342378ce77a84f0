"""Keycloak's jboss-logging event text: plain log lines and JSON log records (Quarkus, ECS).

Fixtures (tests/data/formats/keycloak_jboss.log, keycloak_jsonlog.jsonl) follow Keycloak's own
documentation of the output: the listener's pairs as ``JBossLoggingEventListenerProvider`` writes
them (type, realmId, realmName, clientId, userId, sessionId, ipAddress, error, the details, the
auth session ids; ``quotes``/``sanitize`` options in the server configuration guide, "all provider
config: jboss-logging"), the default console pattern ``%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c] (%t) %s%e%n``
("Console logging"), and the JSON and ECS log records of "Configuring JSON or plain console logging".
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.normalize import Normalizer
from schemas.events import CanonicalEvent, EventKind, Network, Outcome, Revocation, Subject, TokenRef, TokenType
from schemas.sources import FORMATS, AdapterContext, UnsupportedEventType, parse_text_record
from schemas.sources.base import InvalidRecord
from schemas.sources.keycloak import KeycloakFormat
from schemas.sources.keycloak_text import MAX_PAIRS, log_line_record, parse_pairs
from tests.fuzzing import FUZZ, NOW, assert_accounted_for, cut_lines, normalize

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
PLAIN = (FORMATS_DIR / "keycloak_jboss.log").read_bytes().splitlines()
JSONLOG = (FORMATS_DIR / "keycloak_jsonlog.jsonl").read_bytes().splitlines()
UTC = timezone.utc
REALM = "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"
MASTER = "0f6c6a55-1d2e-4b8a-9e0f-2a3b4c5d6e7f"
ADMIN = "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4"
ALICE = Subject(id="5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa", kind="user")  # keycloak_jsonlog.jsonl's user
CAROL = Subject(id="d2c1b0a9-8f7e-4d6c-b5a4-93827160fedc", kind="user")  # keycloak_jboss.log's user
SESSION = "e1d2c3b4-a596-4877-8695-a4b3c2d1e0f9"
FAMILY = f"{SESSION}/portal"
SCOPES = ("openid", "orders:read", "profile")
HOME = Network(ip="79.200.1.10")
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _at(minute: int, second: float = 0) -> datetime:
    return datetime(2026, 11, 24, 9, minute, tzinfo=UTC) + timedelta(seconds=second)


def _plain(n: int, ctx: AdapterContext) -> list[CanonicalEvent]:
    record = parse_text_record(PLAIN[n])
    assert record is not None
    return KeycloakFormat().to_events(record, ctx)


def _strip_ids(events: list[CanonicalEvent]) -> list[tuple[str, CanonicalEvent]]:
    """(id suffix, event without its content-hash id): jboss-logging names no event id."""
    out = []
    for event in events:
        assert event.event_id.startswith("keycloak:")
        suffix = event.event_id[len("keycloak:") + 24:]
        out.append((suffix, event.model_copy(update={"event_id": "x"})))
    return out


def _ev(kind: EventKind, time: datetime, **fields: Any) -> CanonicalEvent:
    base: dict[str, Any] = {"source": "keycloak", "tenant": REALM, "subject": CAROL, "client_id": "portal",
                            "session_id": SESSION, "network": HOME}
    return CanonicalEvent(**{"event_id": "x", "kind": kind, "time": time, **base, **fields})


# -- plain log lines, event by event ------------------------------------------------------
def test_plain_login_starts_the_session(ctx: AdapterContext) -> None:
    assert _strip_ids(_plain(0, ctx)) == [
        ("", _ev(EventKind.SESSION_STARTED, _at(0), subject=Subject(id=CAROL.id, name="carol", kind="user"))),
    ]


def test_plain_code_to_token_issues_the_access_and_refresh_token(ctx: AdapterContext) -> None:
    t = _at(0, 0.4)
    grant = {"grant_type": "authorization_code", "scopes": SCOPES}
    assert _strip_ids(_plain(1, ctx)) == [
        ("#at", _ev(EventKind.ISSUED, t, token=TokenRef(id="at-0301", type=TokenType.ACCESS, family_id=FAMILY,
                                                        issued_at=t), **grant)),
        ("#rt", _ev(EventKind.ISSUED, t, token=TokenRef(id="rt-0301", type=TokenType.REFRESH, family_id=FAMILY,
                                                        issued_at=t), **grant)),
    ]


def test_plain_refresh_rotates_and_its_refused_replay_is_a_failed_refresh(ctx: AdapterContext) -> None:
    t = _at(5)
    fields = {"grant_type": "refresh_token", "scopes": SCOPES}
    assert _strip_ids(_plain(2, ctx)) == [
        ("#rt", _ev(EventKind.REFRESHED, t, token=TokenRef(id="rt-0302", type=TokenType.REFRESH, family_id=FAMILY,
                                                           parent_id="rt-0301", issued_at=t), **fields)),
        ("#at", _ev(EventKind.ISSUED, t, token=TokenRef(id="at-0302", type=TokenType.ACCESS, family_id=FAMILY,
                                                        parent_id="rt-0301", issued_at=t), **fields)),
    ]
    assert _strip_ids(_plain(3, ctx)) == [
        ("", _ev(EventKind.REFRESHED, _at(15), token=TokenRef(id="rt-0301", type=TokenType.REFRESH, family_id=FAMILY),
                 grant_type="refresh_token", network=Network(ip="185.220.101.5"),
                 outcome=Outcome(result="failure",
                                 reason="invalid_token; Maximum allowed refresh token reuse exceeded"))),
    ]


def test_plain_introspection_is_a_use_by_the_resource_server(ctx: AdapterContext) -> None:
    assert _strip_ids(_plain(6, ctx)) == [
        ("", _ev(EventKind.USED, _at(40), token=TokenRef(id="at-0302", type=TokenType.ACCESS),
                 client_id="orders-api", network=Network(ip="10.0.4.12"))),
    ]


def test_plain_admin_events_disable_the_user_and_sign_out_all_sessions(ctx: AdapterContext) -> None:
    """The text names only the admin's realm (master): that is the tenant it can give."""
    admin = {"tenant": MASTER, "client_id": None, "session_id": None, "network": Network()}
    assert _strip_ids(_plain(5, ctx)) == [("", _ev(EventKind.PRINCIPAL_DISABLED, _at(30), **admin))]
    assert _strip_ids(_plain(7, ctx)) == [
        ("", _ev(EventKind.REVOKED, _at(45), revocation=Revocation(target="subject", actor=ADMIN), **admin)),
    ]


def test_plain_lines_before_keycloak_23_bare_and_single_quoted_values(ctx: AdapterContext) -> None:
    """No sessionId printed: the grant's tokens still issue (no family); the logout is counted."""
    t = _at(55)
    grant = {"grant_type": "authorization_code", "scopes": ("openid", "orders:read"), "client_id": "mobile",
             "session_id": None}
    assert _strip_ids(_plain(9, ctx)) == [
        ("#at", _ev(EventKind.ISSUED, t, token=TokenRef(id="at-m1", type=TokenType.ACCESS, issued_at=t), **grant)),
        ("#rt", _ev(EventKind.ISSUED, t, token=TokenRef(id="rt-m1", type=TokenType.REFRESH, issued_at=t), **grant)),
    ]
    with pytest.raises(UnsupportedEventType, match="LOGOUT without sessionId"):
        _plain(10, ctx)


@pytest.mark.parametrize(("n", "skipped"), [(4, "log record"), (8, "admin client-secret regenerated")])
def test_plain_lines_without_a_canonical_target_are_skipped(ctx: AdapterContext, n: int, skipped: str) -> None:
    with pytest.raises(UnsupportedEventType) as caught:
        _plain(n, ctx)
    assert caught.value.event_type == skipped


def test_every_fixture_line_is_accounted_for_through_the_normalizer() -> None:
    results = [normalize(line) for line in PLAIN + JSONLOG]
    assert [r.dead_letter for r in results] == [None] * len(results)
    assert all(r.format == "keycloak" for r in results)
    assert [len(r.events) for r in results] == [1, 2, 2, 1, 0, 1, 1, 1, 0, 2, 0] + [1, 2, 2, 1, 0]
    assert [r.skipped_type for r in results if not r.events] == [
        "log record", "admin client-secret regenerated", "LOGOUT without sessionId", "log record"]


# -- JSON log records ------------------------------------------------------------------------
def test_quarkus_json_and_ecs_records_map_as_their_message(ctx: AdapterContext) -> None:
    """Time from ``timestamp`` (Quarkus, +01:00, nanoseconds: cut to the millisecond) or ``@timestamp`` (ECS)."""
    session = "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01"
    family = f"{session}/portal"
    [login] = KeycloakFormat().to_events(orjson.loads(JSONLOG[0]), ctx)
    assert login == _ev(EventKind.SESSION_STARTED, _at(0), session_id=session, event_id=login.event_id,
                        subject=Subject(id=ALICE.id, name="alice", kind="user"))
    t = _at(0, 0.4)
    grant = {"grant_type": "authorization_code", "scopes": SCOPES, "session_id": session, "subject": ALICE}
    assert _strip_ids(KeycloakFormat().to_events(orjson.loads(JSONLOG[1]), ctx)) == [
        ("#at", _ev(EventKind.ISSUED, t, token=TokenRef(id="at-0101", type=TokenType.ACCESS, family_id=family,
                                                        issued_at=t), **grant)),
        ("#rt", _ev(EventKind.ISSUED, t, token=TokenRef(id="rt-0101", type=TokenType.REFRESH, family_id=family,
                                                        issued_at=t), **grant)),
    ]
    with pytest.raises(UnsupportedEventType, match="log record"):
        KeycloakFormat().to_events(orjson.loads(JSONLOG[4]), ctx)


def test_plain_and_json_forms_of_one_event_are_one_event(ctx: AdapterContext) -> None:
    """Same message, same time: the same record, so the same content id (a redelivery in
    the other form is deduplicated)."""
    message = PLAIN[1].split(b") ", 1)[1].decode()
    quarkus = {"timestamp": "2026-11-24T10:00:00.400+01:00", "loggerName": "org.keycloak.events",
               "level": "DEBUG", "message": message}
    ecs = {"@timestamp": "2026-11-24T09:00:00.400Z", "log.logger": "org.keycloak.events", "message": message}
    plain = _plain(1, ctx)
    assert KeycloakFormat().to_events(quarkus, ctx) == plain == KeycloakFormat().to_events(ecs, ctx)


# -- the pairs parser ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "pairs"),
    [
        ('type="LOGIN", clientId="null"', {"type": "LOGIN", "clientId": None}),
        # sanitize escapes the quote character; nothing else is escaped
        ('reason="say \\"hi\\"", x="y"', {"reason": 'say "hi"', "x": "y"}),
        ('reason="a\\\\"b", x="y"', {"reason": 'a\\"b', "x": "y"}),
        # quotes=' and quotes=none
        ("type='LOGIN', scope='openid profile'", {"type": "LOGIN", "scope": "openid profile"}),
        ("type=LOGIN, scope=openid profile, x=1", {"type": "LOGIN", "scope": "openid profile", "x": "1"}),
        # an injected pair inside a quoted value stays inside it
        ('username="x\\", token_id=\\"forged", token_id="at-1"', {"username": 'x", token_id="forged',
                                                                  "token_id": "at-1"}),
        # first occurrence wins; the TRACE context (cookies hold session tokens) is never read
        ('type="LOGIN", type="LOGOUT", requestUri="https://kc/x", cookies=[KEYCLOAK_IDENTITY=' + JWT + "]",
         {"type": "LOGIN"}),
        ('type="LOGIN", scope="openid', {"type": "LOGIN", "scope": "openid"}),  # cut line: the rest
        ("", {}),
        ("no pairs here", {}),
    ],
)
def test_pairs_in_every_quoting_style(text: str, pairs: dict[str, str | None]) -> None:
    assert parse_pairs(text) == pairs


def test_pairs_are_bounded() -> None:
    many = ", ".join(f'k{i}="v"' for i in range(MAX_PAIRS + 50))
    assert len(parse_pairs(many)) == MAX_PAIRS
    [value] = parse_pairs('scope="' + "s" * 100_000 + '"').values()
    assert value is not None and len(value) == 8192 and "cut 100000 chars" in value


def test_long_ids_are_cut_and_counted_never_refused(ctx: AdapterContext) -> None:
    line = PLAIN[1].replace(b'token_id="at-0301"', b'token_id="' + b"a" * 5000 + b'"')
    events = KeycloakFormat().to_events(parse_text_record(line) or {}, ctx)
    assert len(events[0].token.id) == 512 and "cut 5000 chars" in events[0].token.id  # type: ignore[union-attr]  # these events carry a token: a None fails the test just the same
    assert ctx.repairs["keycloak.details: cut"] == 1


def test_a_session_cookie_in_a_trace_line_is_never_kept(ctx: AdapterContext) -> None:
    line = PLAIN[1] + b', requestUri="https://kc/realms/acme/protocol/openid-connect/token", cookies=[KEYCLOAK_IDENTITY=' \
        + JWT.encode() + b"]"
    result = normalize(line)
    assert len(result.events) == 2
    assert all(JWT not in event.model_dump_json() for event in result.events)


# -- recognising the lines ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "line",
    [
        b"hello world",
        b"2026-11-24 09:00:00,000 INFO  [io.quarkus] (main) Keycloak 26.4.0 on JVM started in 4.4s",
        b"2026-11-24 09:00:00,000 [org.keycloak.events] type=\"LOGIN\"",  # not the default pattern
        b"\x00\xff garbage",
    ],
)
def test_other_text_lines_are_not_keycloaks_and_keep_the_not_json_dead_letter(line: bytes) -> None:
    assert log_line_record(line) is None and parse_text_record(line) is None
    dead = normalize(line).dead_letter
    assert dead is not None and dead["reason"].startswith("not JSON")


def test_a_forced_format_reads_only_its_own_text(hasher) -> None:
    assert parse_text_record(PLAIN[0], "keycloak") is not None
    assert parse_text_record(PLAIN[0], "okta") is None
    assert FORMATS["keycloak"].matches(parse_text_record(PLAIN[0]) or {})
    forced = Normalizer(hasher, forced_format="keycloak", clock=lambda: NOW).normalize(PLAIN[1], "t")
    assert [e.token.id for e in forced.events] == ["at-0301", "rt-0301"]  # type: ignore[union-attr]  # these events carry a token: a None fails the test just the same
    other = Normalizer(hasher, forced_format="okta", clock=lambda: NOW).normalize(PLAIN[1], "t").dead_letter
    assert other is not None and other["reason"].startswith("not JSON")


def test_a_json_record_without_its_time_is_invalid(ctx: AdapterContext) -> None:
    raw = {k: v for k, v in orjson.loads(JSONLOG[0]).items() if k != "timestamp"}
    with pytest.raises(InvalidRecord, match="timestamp: Field required"):
        KeycloakFormat().to_events(raw, ctx)


# -- fuzzing ---------------------------------------------------------------------------------
@FUZZ
@given(cut_lines(PLAIN + JSONLOG))
def test_cut_lines_never_escape(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)


@FUZZ
@given(st.sampled_from(PLAIN), st.text(max_size=40), st.integers(0, 400))
def test_lines_with_text_spliced_in_never_escape(line: bytes, text: str, at: int) -> None:
    spliced = line[:at] + text.encode("utf-8", "surrogatepass") + line[at:]
    assert_accounted_for(normalize(spliced), adapter_crash=False)


def test_every_text_reader_belongs_to_a_registered_format() -> None:
    from schemas.sources import TEXT_FORMATS

    assert set(TEXT_FORMATS) <= set(FORMATS) and TEXT_FORMATS["keycloak"] is log_line_record
