"""Hostile input through the export paths of issue 13: what the watched user types and what a
writer on an input topic sends, against Keycloak's jboss-logging text, Keycloak admin events,
AKS audit bodies, and transport envelopes (Event Hubs, EventBridge, CloudWatch Logs).

The Keycloak messages are written as Keycloak writes them (its source,
``services/.../events/log/JBossLoggingEventListenerProvider.java``: ``key=`` then the value
through ``sanitize``, which quotes it and, per ``StringUtil.sanitizeSpacesAndQuotes``, turns
whitespace other than the space into spaces and escapes the quote character, but not the
backslash; a null value is written ``"null"``). Pair order is Keycloak's: the header keys, then
the details in ``HashMap`` order, then the auth session ids.
"""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.ingest.config import TrustConfig
from pipeline.ingest.trust import TrustRules
from schemas.embedded_json import DEPTH_MARKER
from schemas.events import EventKind
from schemas.sources import AdapterContext, parse_text_record
from schemas.sources.keycloak import KeycloakFormat
from schemas.sources.keycloak_text import parse_pairs
from tests.detect_helpers import detect_lines
from tests.fuzzing import normalize
from tests.pipeline.test_e2e_k8s import JTI, _aks_pod_lifetime, aks_record, use
from tests.pipeline.test_e2e_keycloak import (
    _AFTER_DISABLE,
    ALICE,
    EXCHANGE,
    admin,
    as_ecs,
    as_plain,
    kc,
)

FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
Pairs = list[tuple[str, str | None]]


def sanitized(value: str | None, quote: str = '"') -> str:
    """A value as ``sanitize`` writes it (quotes on, sanitize on: Keycloak 23+ defaults)."""
    if value is None:
        return f"{quote}null{quote}"
    text = "".join(" " if (c.isspace() and c != " ") or c == "\xa0" else "\\" + c if c == quote else c
                   for c in value)
    return f"{quote}{text}{quote}"


def message(pairs: Pairs, quote: str = '"') -> str:
    return ", ".join(f"{key}={sanitized(value, quote)}" for key, value in pairs)


def header(type_: str, client: str = "portal", error: str | None = None) -> Pairs:
    pairs: Pairs = [("type", type_), ("realmId", "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"), ("realmName", "acme"),
                    ("clientId", client), ("userId", ALICE), ("sessionId", "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01"),
                    ("ipAddress", "203.0.113.9")]
    return pairs + ([("error", error)] if error else [])


AUTH_SESSION: Pairs = [("authSessionParentId", "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01"), ("authSessionTabId", "Xk2bq9")]


# -- Keycloak jboss-logging text: a typed value ending in a backslash ----------------------------
@pytest.mark.parametrize(
    "pairs",
    [
        # a client_id the caller sent, on the error it caused: userId, sessionId, ipAddress, error follow it
        header("LOGIN_ERROR", client="portal\\", error="client_not_found"),
        # LOGIN's details in HashMap order: the redirect_uri the user sent hides consent, code_id, username
        [*header("LOGIN"), ("auth_method", "openid-connect"), ("auth_type", "code"),
         ("redirect_uri", "https://portal.example.org/cb\\"), ("consent", "no_consent_required"),
         ("code_id", "c-1"), ("username", "alice"), *AUTH_SESSION],
        # the username typed into the login form, last of the details: the auth session ids follow it
        [*header("LOGIN_ERROR", error="user_not_found"), ("auth_method", "openid-connect"),
         ("redirect_uri", "https://portal.example.org/cb"), ("code_id", "c-1"), ("username", "alice\\"),
         *AUTH_SESSION],
        # a value of backslashes only, and one that ends the message
        [*header("LOGIN"), ("redirect_uri", "\\\\"), ("username", "\\")],
    ],
    ids=["client_id", "redirect_uri", "username", "backslashes"],
)
def test_a_value_ending_in_a_backslash_hides_no_pair_after_it(pairs: Pairs) -> None:
    """Before: the escaped-looking closing quote was read as inside the value, which then ran
    on to the next pair's opening quote; every pair after it was lost."""
    assert parse_pairs(message(pairs)) == dict(pairs)


def test_user_values_cannot_add_an_error_to_a_successful_event() -> None:
    """REGISTER's details (HashMap order) put three typed values side by side: last_name,
    redirect_uri, first_name. A backslash ending the first made the second's text the message:
    ``, error=denied, …`` added ``error`` (a failure) and the token id of the typed text."""
    pairs = [*header("REGISTER"), ("auth_method", "openid-connect"), ("auth_type", "code"),
             ("register_method", "form"), ("last_name", "Smith\\"),
             ("redirect_uri", ", error=denied, token_id=forged, x="), ("first_name", ", sessionId=s-2, y="),
             ("code_id", "c-1"), ("email", "a@example.org"), ("username", "alice"), *AUTH_SESSION]
    assert parse_pairs(message(pairs)) == dict(pairs)


def test_a_value_holding_a_trace_key_hides_no_pair_after_it() -> None:
    """``requestUri=`` ends what is read (TRACE context, cookies follow): a typed value ending
    in it must not end the reading early."""
    pairs = [*header("LOGIN"), ("redirect_uri", 'https://x/", requestUri='), ("consent", "no_consent_required"),
             ("code_id", "c-1"), ("username", "alice"), *AUTH_SESSION]
    assert parse_pairs(message(pairs)) == dict(pairs)


_FRAGMENTS = st.sampled_from(["\\", '"', "'", ", ", "=", "x", ", error=", '", error=', ", token_id=",
                              '", requestUri=', '", cookies=[', ", stackTrace=", '", code_id=', " ", "null"])


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_FRAGMENTS, max_size=8).map("".join),
       st.lists(st.lists(_FRAGMENTS, max_size=8).map("".join), max_size=4),
       st.sampled_from(['"', "'"]), st.booleans())
def test_typed_values_never_change_or_add_a_pair(client: str, typed: list[str], quote: str, trace: bool) -> None:
    """Whatever the user types (client_id and any details): every pair read is one Keycloak
    wrote, and every pair Keycloak wrote itself is read."""
    pairs = [*header("LOGIN", client=client), *[(f"d{i}", value) for i, value in enumerate(typed)],
             ("code_id", "c-1"), *AUTH_SESSION]
    text = message(pairs, quote)
    if trace:
        text += f", requestUri={quote}https://kc/realms/acme/x?a=b,c=d{quote}, cookies=[KEYCLOAK_SESSION=v]"
    written = {key: None if value == "null" else value for key, value in pairs}
    read = parse_pairs(text)
    assert all(written.get(key, KeyError) == value for key, value in read.items()), read
    own = ("type", "realmId", "realmName", "userId", "sessionId", "ipAddress", "code_id", "authSessionParentId")
    assert all(key in read for key in own), read


def test_an_exchange_to_an_audience_ending_in_a_backslash_still_issues_its_token(hasher: Any) -> None:
    """TOKEN_EXCHANGE's details in HashMap order: ``audience`` (sent by the client) comes
    before ``token_id``. Before: the minted token was lost, skipped as having no token id."""
    raw = kc("TOKEN_EXCHANGE", 60, {"audience": "orders-api\\", "token_id": "at-x1", "grant_type": EXCHANGE,
                                    "scope": "openid", "client_auth_method": "client-secret"})
    record = parse_text_record(as_plain(raw))
    assert record is not None
    [event] = KeycloakFormat().to_events(record, AdapterContext(hash_token=hasher))
    assert event.token is not None
    assert (event.kind, event.token.id, event.token.audience) == \
        (EventKind.ISSUED, "at-x1", ("orders-api\\",))


def test_with_quotes_none_a_typed_value_can_add_a_pair_by_design() -> None:
    """Documented trade-off (README, Keycloak): ``quotes=none`` (and Keycloak before 23) writes
    values bare, so ``, error=x`` in a typed value reads as a pair; only a key written earlier
    (the header's) is safe, first occurrence wins. Keep quoting on."""
    text = 'type=LOGIN, clientId=portal, userId=u-1, ipAddress=203.0.113.9, username=bob, error=denied'
    assert parse_pairs(text)["error"] == "denied"
    assert parse_pairs('type=LOGIN, userId=u-1, username=x, userId=u-2')["userId"] == "u-1"


@pytest.mark.parametrize("hostile", [
    'type="LOGIN", u="' + '\\", k="' * 150_000 + '"',
    'type="LOGIN", u="' + '\\"' * 500_000 + '"',
    'type="LOGIN", ' + ", ".join(f'k{i}="\\", j{i}="' for i in range(60_000)),
], ids=["ambiguous-ends", "escaped-quotes", "many-pairs"])
def test_a_hostile_message_is_read_in_bounded_time(hostile: str) -> None:
    started = time.perf_counter()
    parse_pairs(hostile)
    assert time.perf_counter() - started < 1.5


# -- Keycloak admin events: a user's own attributes in the representation -----------------------
def _padded_disable(enabled: bool) -> dict[str, Any]:
    """The admin console PUTs the whole user back, attributes included: the user wrote those."""
    body = {"id": ALICE, "username": "alice", "attributes": {f"note{i}": ["x" * 250] for i in range(300)},
            "enabled": enabled}
    return admin(600, "UPDATE", f"users/{ALICE}", json.dumps(body))


@pytest.mark.parametrize("shape", ["json", "plain", "ecs"])
def test_padded_user_attributes_do_not_hide_an_admin_disable(shape: str) -> None:
    """Before: the representation was cut at 64 KiB, no longer JSON, so ``enabled: false`` was
    not read and the use after the disable raised nothing."""
    to_shape = {"json": lambda raw: raw, "plain": as_plain, "ecs": as_ecs}[shape]
    attack = [*_AFTER_DISABLE[:4], _padded_disable(enabled=False), _AFTER_DISABLE[-1]]
    twin = [*_AFTER_DISABLE[:4], _padded_disable(enabled=True), _AFTER_DISABLE[-1]]
    found = detect_lines([to_shape(raw) for raw in attack])
    assert found.hits == [("post_revocation_use.after_disable", "at-2")] and found.dead_letters == []
    benign = detect_lines([to_shape(raw) for raw in twin])
    assert benign.alerts == [] and benign.dead_letters == []


# -- AKS: the audit event's body as text, with what the caller sent inside it ------------------
def _deep(depth: int) -> str:
    """A custom resource's body nested ``depth`` levels (as text: no encoder nests that deep)."""
    return '{"spec": ' * depth + '{"leaf": 1}' + "}" * depth


@pytest.mark.parametrize("body", [
    "nested", "nan", "huge-int", "surrogate",
])
def test_an_aks_body_orjson_refuses_costs_no_event(body: str) -> None:
    """The thief creates a custom resource with the stolen token; the audit event's
    ``requestObject`` holds it. Before: nesting past orjson's 1,024 levels (Kubernetes
    accepts deeper) dead-lettered the whole record, and the stolen use was never seen."""
    stolen = use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")
    stolen.update(level="RequestResponse", verb="create")
    record = aks_record(stolen)
    text = record["properties"]["log"]
    inject = {"nested": _deep(1_100), "nan": '{"x": NaN, "y": Infinity}',
              "huge-int": '{"x": ' + "9" * 400 + "}", "surrogate": '{"x": "\\ud800"}'}[body]
    record["properties"]["log"] = text.rstrip("\n")[:-1] + ', "requestObject": ' + inject + "}\n"
    run = detect_lines([*_aks_pod_lifetime(), record])
    assert run.hits == [("replay.binding_mismatch", JTI)] and run.dead_letters == []
    twin = copy.deepcopy(record)
    twin["properties"]["log"] = twin["properties"]["log"].replace("88.198.10.10", "10.20.3.41")
    benign = detect_lines([*_aks_pod_lifetime(), twin])
    assert benign.alerts == [] and benign.dead_letters == []


def test_a_deep_aks_body_is_cut_to_the_marker_and_counted() -> None:
    record = aks_record(use("a-4", "2026-11-24T09:20:00.000000Z"))
    record["properties"]["log"] = record["properties"]["log"].rstrip("\n")[:-1] + \
        ', "requestObject": ' + _deep(1_100) + "}"
    result = normalize(orjson.dumps(record))
    assert [event.kind for event in result.events] == [EventKind.USED] and result.dead_letter is None
    assert DEPTH_MARKER not in orjson.dumps(result.events[0].model_dump(mode="json")).decode()  # not mapped


# -- transport envelopes --------------------------------------------------------------------------
def _lines(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FORMATS_DIR / name).read_bytes().splitlines() if line.strip()]


def test_an_envelope_cannot_carry_a_format_its_topic_refuses() -> None:
    """A writer on a gateway-only topic wraps a Keycloak record between two gateway records:
    its events are refused as on their own line (``trust.topic_formats``), not waved through
    because most of the envelope is gateway."""
    gateway, keycloak = _lines("gateway.jsonl")[:2], _lines("keycloak.jsonl")[1]
    alone = normalize(orjson.dumps(keycloak))
    rules = TrustRules(TrustConfig(topic_formats={"gw": ("gateway",)}))
    assert rules.split(alone.events, alone.format or "", "gw")[0] == []  # refused on its own line
    wrapped = normalize(orjson.dumps({"records": [*gateway, keycloak]}))
    assert wrapped.format == "gateway" and wrapped.event_formats is not None
    kept, refused = rules.split(wrapped.events, wrapped.format, "gw", wrapped.event_formats)
    assert [event.source for event in kept] == ["gateway", "gateway"]
    assert {refusal.format for _, refusal in refused} == {"keycloak"}


def test_an_envelope_cannot_pass_one_sources_revocation_off_as_anothers() -> None:
    """On a Keycloak topic, an Okta session clear wrapped among Keycloak records is judged as
    Okta's: not authoritative there, refused."""
    keycloak, okta = _lines("keycloak.jsonl")[:2], _lines("okta.jsonl")
    clear = next((e for e in okta if e.get("eventType") == "user.session.clear"), None)
    if clear is None:  # the sample has none: an Okta clear in Okta's shape, from a sample event
        clear = {**okta[0], "uuid": "clear-1", "eventType": "user.session.clear"}
    rules = TrustRules(TrustConfig(authoritative=[{"format": "keycloak", "topics": ["kc"]},
                                                  {"format": "okta", "topics": ["okta"]}]))
    wrapped = normalize(orjson.dumps({"records": [*keycloak, clear]}))
    revocations = [e for e in wrapped.events if e.source == "okta"]
    assert revocations, "the clear maps to a revocation"
    kept, refused = rules.split(wrapped.events, wrapped.format or "", "kc", wrapped.event_formats)
    assert not any(e.source == "okta" for e in kept)
    assert {refusal.code for _, refusal in refused} == {"not_authoritative"}


@pytest.mark.parametrize("payload", [
    b'{"messageType":"DATA_MESSAGE","logEvents":[' + b",".join([b"0"] * 400_000) + b"]}",
    b'{"messageType":"DATA_MESSAGE","logEvents":[' + b",".join([b'{"id":"1","message":"{}"}'] * 40_000) + b"]}",
    b'{"records":[' + b",".join([b"{}"] * 200_000) + b"]}",
], ids=["400k-logevents", "40k-empty-messages", "200k-empty-records"])
def test_an_envelope_of_many_tiny_entries_is_one_bounded_dead_letter(payload: bytes) -> None:
    """Count is bounded by the line cap; each bad entry costs itself; the dead letter quotes
    a bounded number of them."""
    started = time.perf_counter()
    result = normalize(payload)
    assert time.perf_counter() - started < 10
    assert result.events == [] and result.dead_letter is not None
    assert len(orjson.dumps(result.dead_letter)) < 16_384


def test_a_record_with_envelope_keys_inside_its_own_fields_is_not_an_envelope() -> None:
    """Only top-level keys make an envelope; what a caller writes sits below the top level in
    every format (Okta ``debugContext.debugData``, CloudTrail ``requestParameters``)."""
    okta = _lines("okta.jsonl")[0]
    okta.setdefault("debugContext", {}).setdefault("debugData", {}).update(
        {"detail-type": "x", "source": "y", "detail": {"a": 1}, "records": [], "messageType": "DATA_MESSAGE"})
    assert normalize(orjson.dumps(okta)).format == "okta"


def test_counter_of_repairs_names_the_body_not_its_content() -> None:
    repairs: Counter[str] = Counter()
    from schemas.embedded_json import decode_in_place
    holder = {"log": '{"' + "k" * 500 + '": NaN}'}
    decode_in_place(holder, "log", "aks", "properties.log", repairs)
    assert list(repairs) == ["aks.properties.log: non-finite number dropped"]


# -- CloudTrail: what a thief with the key controls -------------------------------------------
def _role_use(session: str, source: str) -> dict[str, Any]:
    """A use of role credentials the thief assumed themselves, naming the session as they like
    (``roleSessionName``); no ``ec2RoleDelivery``: IMDS did not deliver them."""
    record = _lines("cloudtrail_instance.jsonl")[3]
    ident = record["userIdentity"]
    del ident["sessionContext"]["ec2RoleDelivery"]
    ident["principalId"] = f"AROAWEBROLEEXAMPLE:{session}"
    ident["arn"] = f"arn:aws:sts::111122223333:assumed-role/web-role/{session}"
    return {**record, "sourceIPAddress": source}


def test_a_session_named_like_an_instance_buys_no_silence() -> None:
    """Naming one's own role session ``i-<17 hex>`` makes the credentials look delivered to an
    instance: bound to AWS, so their use outside AWS alerts where it did not before. The trick
    adds alerts on the thief, never removes one; the request id (which the called service
    makes) keeps the event id of every call the thief's own."""
    named = detect_lines([_role_use("i-0123456789abcdef0", "5.255.255.5")])
    assert named.hits == [("replay.binding_mismatch", "ASIAIMDSEXAMPLE00001")]
    assert detect_lines([_role_use("build-bot", "5.255.255.5")]).alerts == []
