"""Keycloak events end to end: attacks written as Keycloak logs them raise the right alert, benign twins none."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from tests.detect_helpers import detect_lines

SAMPLES = (Path(__file__).resolve().parents[1] / "data" / "formats" / "keycloak.jsonl").read_bytes().splitlines()
REALM = "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"
ALICE = "5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"
SESSION = "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01"
PORTAL = f"{SESSION}/portal"  # the portal's refresh chain (family) in Alice's SSO session
MOBILE = f"{SESSION}/mobile"  # the mobile app's, after it joined the same SSO session
T0_MS = 1795510800000  # 2026-11-24T09:00:00Z
HOME = "79.200.1.10"  # Deutsche Telekom, DE
RS = "10.0.4.12"  # the resource server introspecting, on the internal network
SCOPE = "openid profile orders:read"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
_ids = count(1)


def kc(type_: str, t: float, details: dict[str, str] | None = None, **keys: Any) -> dict[str, Any]:
    """One Keycloak event ``t`` seconds after 09:00, by Alice's portal session from home."""
    raw: dict[str, Any] = {
        "id": f"kc-{next(_ids)}", "time": T0_MS + int(t * 1000), "type": type_, "realmId": REALM,
        "clientId": "portal", "userId": ALICE, "sessionId": SESSION, "ipAddress": HOME, "error": None,
        "details": details or {},
    }
    raw.update(keys)
    return raw


def login_and_code(t: float = 0) -> list[dict[str, Any]]:
    return [
        kc("LOGIN", t, {"auth_method": "openid-connect", "username": "alice", "code_id": "c-1"}),
        code_to_token(t + 0.4, "c-1", "at-1", "rt-1"),
    ]


def code_to_token(t: float, code: str, access: str, refresh_token: str, **keys: Any) -> dict[str, Any]:
    return kc("CODE_TO_TOKEN", t, {"code_id": code, "token_id": access, "refresh_token_id": refresh_token,
                                   "refresh_token_type": "Refresh", "scope": SCOPE,
                                   "grant_type": "authorization_code"}, **keys)


def refresh(t: float, presented: str, minted: str | None, access: str, **keys: Any) -> dict[str, Any]:
    details = {"token_id": access, "refresh_token_id": presented, "refresh_token_type": "Refresh",
               "scope": SCOPE, "grant_type": "refresh_token"}
    if minted is not None:
        details["updated_refresh_token_id"] = minted
    return kc("REFRESH_TOKEN", t, details, **keys)


def refresh_error(t: float, presented: str, reason: str, **keys: Any) -> dict[str, Any]:
    return kc("REFRESH_TOKEN_ERROR", t, {"refresh_token_id": presented, "grant_type": "refresh_token",
                                         "reason": reason}, error="invalid_token", **keys)


def introspect(t: float, token: str, **keys: Any) -> dict[str, Any]:
    return kc("INTROSPECT_TOKEN", t, {"token_id": token}, **{"clientId": "orders-api", "ipAddress": RS, **keys})


# -- the bundled sample ----------------------------------------------------------------
def test_sample_stream_flags_the_reuse_of_the_rotated_token_from_a_tor_exit() -> None:
    found = detect_lines(list(SAMPLES))
    assert found.hits == [("replay.refresh_reuse", "rt-0001")]
    assert found.dead_letters == [] and found.summary.events == 8
    summary = found.alerts[0]["alert"]["summary"]
    assert "185.220.101.5" in summary and "the IdP rejected it" in summary


# -- refresh-token reuse -----------------------------------------------------------------
def test_rotated_refresh_token_redeemed_again_from_another_network_is_reuse() -> None:
    rotation = refresh(300, "rt-1", "rt-2", "at-2")
    reuse = refresh(900, "rt-1", "rt-3", "at-3", ipAddress="88.198.10.10")  # Hetzner: the thief's server
    found = detect_lines([*login_and_code(), rotation, reuse])
    assert found.hits == [("replay.refresh_reuse", "rt-1")]
    alert = found.alerts[0]
    assert alert["token"]["family_id"] == PORTAL and alert["response"]["action"] == "revoke_family"
    assert [e["event_id"] for e in alert["evidence"]] == [f"keycloak:{rotation['id']}#rt", f"keycloak:{reuse['id']}#rt"]
    assert "88.198.10.10 (DE, Hetzner Online GmbH)" in alert["alert"]["summary"]


def test_retry_of_the_rotated_token_within_the_grace_period_from_the_same_client_is_benign() -> None:
    found = detect_lines([
        *login_and_code(),
        refresh(300, "rt-1", "rt-2", "at-2"),
        refresh(310, "rt-1", "rt-3", "at-3"),  # response lost: the client retries 10 s later
        refresh(900, "rt-3", "rt-4", "at-4"),
    ])
    assert found.alerts == []


def test_refused_redemption_of_a_rotated_token_is_reuse() -> None:
    found = detect_lines([
        *login_and_code(),
        refresh(300, "rt-1", "rt-2", "at-2"),
        refresh_error(900, "rt-1", "Maximum allowed refresh token reuse exceeded", ipAddress="185.220.101.5"),
    ])
    assert found.hits == [("replay.refresh_reuse", "rt-1")]


@pytest.mark.parametrize(
    "error",
    [
        # Keycloak refuses a current token that has gone stale: nothing was rotated, nobody else holds it.
        refresh_error(4000, "rt-2", "Token is not active"),
        # A double submit: Keycloak refuses the second request 2 s after rotating, same client and address.
        refresh_error(302, "rt-1", "Maximum allowed refresh token reuse exceeded"),
    ],
    ids=["stale-current-token", "double-submit"],
)
def test_refused_refresh_that_is_not_a_second_holder_is_benign(error: dict[str, Any]) -> None:
    assert detect_lines([*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), error]).alerts == []


def test_refresh_without_rotation_leaves_the_refresh_token_current() -> None:
    """Keycloak without a new refresh token id: presenting the same token again is normal."""
    found = detect_lines([
        *login_and_code(),
        refresh(300, "rt-1", None, "at-2"),
        refresh(900, "rt-1", None, "at-3"),
    ])
    assert found.alerts == []


# -- use after logout / revocation ---------------------------------------------------------
def _session_then(*tail: dict[str, Any]) -> list[dict[str, Any]]:
    return [*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), introspect(400, "at-2"), *tail]


@pytest.mark.parametrize(
    "ending",
    [
        kc("LOGOUT", 600, {"redirect_uri": "https://portal.example.org/"}, clientId=None),
        kc("REVOKE_GRANT", 600, {"revoked_client": "portal", "refresh_token_id": "rt-2"}),
    ],
    ids=["logout", "revoke-grant"],
)
def test_introspection_vouching_for_a_token_after_its_session_ended_is_post_revocation_use(
    ending: dict[str, Any],
) -> None:
    """Keycloak logs an inactive answer as INTROSPECT_TOKEN_ERROR, so a success after logout
    means the resource server was told the token is still good: revocation did not take."""
    use = introspect(900, "at-2")
    found = detect_lines(_session_then(ending, use))
    assert found.hits == [("post_revocation_use.after_revocation", "at-2")]
    revoke = ending["type"] == "REVOKE_GRANT"
    ended = f"keycloak:{ending['id']}" + ("#family" if revoke else "")
    assert [e["event_id"] for e in found.alerts[0]["evidence"]] == [ended, f"keycloak:{use['id']}"]
    what = f"5 min after its token family {PORTAL} was revoked" if revoke else f"5 min after its session {SESSION}"
    assert what in found.alerts[0]["alert"]["summary"]


@pytest.mark.parametrize(
    "late",
    [
        kc("INTROSPECT_TOKEN_ERROR", 900, {"token_id": "at-2"}, error="token_introspection_failed",
           clientId="orders-api", ipAddress=RS),
        introspect(630, "at-2"),  # 30 s after logout: revocation still propagating
    ],
    ids=["refused-after-logout", "within-propagation-lag"],
)
def test_refused_or_propagating_introspection_after_logout_is_benign(late: dict[str, Any]) -> None:
    ending = kc("LOGOUT", 600, {"redirect_uri": "https://portal.example.org/"}, clientId=None)
    assert detect_lines(_session_then(ending, late)).alerts == []


def test_revoking_one_access_token_does_not_cover_the_rest_of_the_session() -> None:
    found = detect_lines([
        *login_and_code(),
        kc("REVOKE_GRANT", 100, {"token_id": "at-1"}),
        refresh(300, "rt-1", "rt-2", "at-2"),
        introspect(400, "at-2"),
        introspect(900, "at-1"),
    ])
    assert found.hits == [("post_revocation_use.after_revocation", "at-1")]


# -- a client's grant revoked inside a shared SSO session -------------------------------------
def _portal_and_mobile(*tail: dict[str, Any]) -> list[dict[str, Any]]:
    """Alice signs in to the portal; the mobile app joins the same SSO session (no second LOGIN)."""
    return [
        *login_and_code(),
        code_to_token(60, "c-2", "at-m1", "rt-m1", clientId="mobile"),
        refresh(300, "rt-1", "rt-2", "at-2"),
        refresh(320, "rt-m1", "rt-m2", "at-m2", clientId="mobile"),
        introspect(400, "at-2"),
        introspect(410, "at-m2"),
        *tail,
    ]


_REVOKE_PORTAL = [
    # The portal revokes its own refresh token (RFC 7009): Keycloak ends the portal's grant.
    kc("REVOKE_GRANT", 600, {"revoked_client": "portal", "refresh_token_id": "rt-2"}),
    # Alice removes the portal in the account console: no token id, only the revoked client.
    kc("REVOKE_GRANT", 600, {"revoked_client": "portal"}, clientId="account-console"),
    # A listener that logs no sessionId: the family comes from the refresh token's issuance.
    kc("REVOKE_GRANT", 600, {"revoked_client": "portal", "refresh_token_id": "rt-2"}, sessionId=None),
]
_REVOKE_IDS = ["revocation-endpoint", "account-console", "no-session-id"]


@pytest.mark.parametrize("revoke", _REVOKE_PORTAL, ids=_REVOKE_IDS)
@pytest.mark.parametrize("late", [False, True], ids=["in-order", "revocation-logged-late"])
def test_revoking_one_clients_grant_leaves_the_other_clients_in_the_session_alone(
    revoke: dict[str, Any], late: bool
) -> None:
    """Only the portal's family is revoked: its access token vouched for afterwards alerts, the
    mobile app's token in the same SSO session (its own family) does not, in either order."""
    uses = [introspect(900, "at-2"), introspect(905, "at-m2")]
    found = detect_lines(_portal_and_mobile(*uses, revoke) if late else _portal_and_mobile(revoke, *uses))
    assert found.hits == [("post_revocation_use.after_revocation", "at-2")]
    alert = found.alerts[0]
    assert alert["token"]["family_id"] == PORTAL
    assert [e["event_id"] for e in alert["evidence"]] == [f"keycloak:{revoke['id']}#family",
                                                         f"keycloak:{uses[0]['id']}"]
    assert f"its token family {PORTAL} was revoked" in alert["alert"]["summary"]


@pytest.mark.parametrize("revoke", _REVOKE_PORTAL, ids=_REVOKE_IDS)
def test_other_client_keeps_refreshing_and_using_its_tokens_after_the_portal_is_revoked(
    revoke: dict[str, Any],
) -> None:
    """Benign twin: the mobile app's grant is untouched by the portal's revocation."""
    found = detect_lines(_portal_and_mobile(
        revoke,
        introspect(700, "at-m2"),
        refresh(900, "rt-m2", "rt-m3", "at-m3", clientId="mobile"),
        introspect(1000, "at-m3"),
    ))
    assert found.alerts == []


# -- token exchange --------------------------------------------------------------------------
def _exchange(scope: str) -> dict[str, Any]:
    return kc("TOKEN_EXCHANGE", 500, {"token_id": "at-x", "subject_token_id": "at-2", "audience": "billing-api",
                                      "scope": scope, "grant_type": EXCHANGE},
              clientId="orders-api", ipAddress=RS)


def test_exchange_returning_more_scope_than_the_grant_is_widening() -> None:
    widened = _exchange("orders:read orders:admin")
    found = detect_lines([*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), widened])
    assert found.hits == [("scope_escalation.grant_widening", "at-x")]


def test_exchange_narrowing_the_grant_is_benign() -> None:
    found = detect_lines([*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), _exchange("orders:read"),
                          introspect(600, "at-x")])
    assert found.alerts == []


# -- introspection is seen from the resource server's address --------------------------------
def test_resource_server_in_a_cloud_reads_as_a_hosting_use_until_its_range_is_allowlisted() -> None:
    """INTROSPECT_TOKEN carries the resource server's address, not the user's: an RS hosted in
    a cloud looks like a token moving to a hosting network. Allowlisting the RS egress fixes it."""
    events = [*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), introspect(400, "at-2", ipAddress="3.120.5.5")]
    assert detect_lines(events).hits == [("geo_divergence.issue_use_divergence", "at-2")]
    allowlisted = {"enrich": {"allowlist": [{"name": "orders-api", "cidrs": ["3.120.5.0/24"]}]}}
    assert detect_lines(events, allowlisted).alerts == []


# -- the other shapes of the same events (issue 13) ------------------------------------------
# Rendered as Keycloak's documentation and the jboss-logging listener's source say it writes them:
# the pairs in JBossLoggingEventListenerProvider's order (type, realmId, realmName, clientId, userId,
# sessionId when set, ipAddress, error when set, the details), values in "…" with the quote escaped;
# admin events as operationType, the admin's realmId/clientId/userId/ipAddress, resourceType,
# resourcePath, representation; in the default console pattern or a Quarkus JSON / ECS log record.
ADMIN_ID = "9e8d7c6b-5a49-4382-a1b0-c9d8e7f6a5b4"


def _q(value: object) -> str:
    return '"' + str("null" if value is None else value).replace('"', '\\"') + '"'


def jboss_message(raw: dict[str, Any]) -> str:
    """The jboss-logging listener's message for a user event or an admin event."""
    if "operationType" in raw:
        auth = raw["authDetails"]
        pairs = [("operationType", raw["operationType"]), ("realmId", auth["realmId"]), ("realmName", "master"),
                 ("clientId", auth["clientId"]), ("userId", auth["userId"]), ("ipAddress", auth["ipAddress"]),
                 ("resourceType", raw["resourceType"]), ("resourcePath", raw["resourcePath"])]
        if raw.get("representation") is not None:
            pairs.append(("representation", raw["representation"]))
        return ", ".join(f"{k}={_q(v)}" for k, v in pairs)
    pairs = [("type", raw["type"]), ("realmId", raw["realmId"]), ("realmName", "acme"), ("clientId", raw["clientId"]),
             ("userId", raw["userId"])]
    if raw.get("sessionId"):
        pairs.append(("sessionId", raw["sessionId"]))
    pairs.append(("ipAddress", raw["ipAddress"]))
    if raw.get("error"):
        pairs.append(("error", raw["error"]))
    pairs += list(raw["details"].items())
    return ", ".join(f"{k}={_q(v)}" for k, v in pairs)


def _utc(raw: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(raw["time"] / 1000, timezone.utc)


def as_plain(raw: dict[str, Any]) -> bytes:
    """Default console pattern: %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c] (%t) %s."""
    t = _utc(raw)
    level = "WARN " if raw.get("error") else "DEBUG"
    stamp = t.strftime("%Y-%m-%d %H:%M:%S") + f",{t.microsecond // 1000:03d}"
    return f"{stamp} {level} [org.keycloak.events] (executor-thread-1) {jboss_message(raw)}".encode()


def as_quarkus_json(raw: dict[str, Any]) -> dict[str, Any]:
    """--log-console-output=json, the server's zone +01:00."""
    t = _utc(raw).astimezone(timezone(timedelta(hours=1)))
    return {"timestamp": t.isoformat(timespec="microseconds"), "sequence": 1, "loggerClassName":
            "org.jboss.logging.Logger", "loggerName": "org.keycloak.events", "level": "DEBUG",
            "message": jboss_message(raw), "threadName": "executor-thread-1", "threadId": 31, "mdc": {}, "ndc": "",
            "hostName": "keycloak-0", "processName": "java", "processId": 1}


def as_ecs(raw: dict[str, Any]) -> dict[str, Any]:
    """--log-console-output=json --log-console-json-format=ecs."""
    return {"@timestamp": _utc(raw).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log.logger": "org.keycloak.events", "log.level": "DEBUG", "message": jboss_message(raw),
            "process.thread.name": "executor-thread-1", "ecs.version": "1.12.2", "service.name": "Keycloak"}


def as_flat(raw: dict[str, Any]) -> dict[str, Any]:
    """A flat third-party listener: details at the top level, time in epoch seconds."""
    if "operationType" in raw:
        return raw
    flat = {k: v for k, v in raw.items() if k != "details"}
    return {**flat, **raw["details"], "time": raw["time"] / 1000}


SHAPES = {"plain": as_plain, "quarkus-json": as_quarkus_json, "ecs": as_ecs, "flat": as_flat}


def admin(t: float, operation: str, path: str, representation: str | None = None) -> dict[str, Any]:
    """An admin event of a master-realm admin on Alice's realm (AdminEventRepresentation)."""
    return {"id": f"adm-{next(_ids)}", "time": T0_MS + int(t * 1000), "realmId": REALM,
            "authDetails": {"realmId": "0f6c6a55-1d2e-4b8a-9e0f-2a3b4c5d6e7f", "clientId": "security-admin-console",
                            "userId": ADMIN_ID, "ipAddress": "10.0.8.21"},
            "operationType": operation, "resourceType": "USER_SESSION" if path.startswith("sessions/") else "USER",
            "resourcePath": path, "representation": representation, "error": None}


def _disable(t: float, enabled: bool = False) -> dict[str, Any]:
    body = {"id": ALICE, "username": "alice", "enabled": enabled}
    return admin(t, "UPDATE", f"users/{ALICE}", json.dumps(body))


def _in(shape: str, events: list[dict[str, Any]]) -> list[dict[str, Any] | bytes]:
    return [SHAPES[shape](raw) for raw in events]


_REUSE = [*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"),
          refresh(900, "rt-1", "rt-3", "at-3", ipAddress="88.198.10.10")]
_RETRY = [*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), refresh(310, "rt-1", "rt-3", "at-3"),
          refresh(900, "rt-3", "rt-4", "at-4")]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_rotated_refresh_token_redeemed_again_in_every_shape(shape: str) -> None:
    found = detect_lines(_in(shape, _REUSE))
    assert found.hits == [("replay.refresh_reuse", "rt-1")] and found.dead_letters == []
    assert found.alerts[0]["token"]["family_id"] == PORTAL


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_retry_within_the_grace_period_is_benign_in_every_shape(shape: str) -> None:
    found = detect_lines(_in(shape, _RETRY))
    assert found.alerts == [] and found.dead_letters == [] and found.summary.events == 9


_AFTER_DISABLE = [*login_and_code(), refresh(300, "rt-1", "rt-2", "at-2"), introspect(400, "at-2"), _disable(600),
                  introspect(900, "at-2")]


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_token_vouched_for_after_an_admin_disabled_the_user_in_every_shape(shape: str) -> None:
    found = detect_lines(_in(shape, _AFTER_DISABLE))
    assert found.hits == [("post_revocation_use.after_disable", "at-2")] and found.dead_letters == []


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    "change",
    [
        _disable(600, enabled=True),  # the admin edited Alice's profile, she stays enabled
        admin(600, "ACTION", "clients/7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6/client-secret"),  # no canonical target
    ],
    ids=["profile-edit", "client-secret"],
)
def test_admin_changes_that_end_no_token_are_benign(shape: str, change: dict[str, Any]) -> None:
    events = [*_AFTER_DISABLE[:4], change, _AFTER_DISABLE[-1]]
    found = detect_lines(_in(shape, events))
    assert found.alerts == [] and found.dead_letters == []
    assert sum(found.summary.skipped.values()) == 1


@pytest.mark.parametrize(
    "ending",
    [admin(600, "ACTION", f"users/{ALICE}/logout"), admin(600, "DELETE", f"sessions/{SESSION}")],
    ids=["logout-all-sessions", "session-deleted"],
)
@pytest.mark.parametrize("shape", ["plain", "ecs", "flat"])
def test_use_after_an_admin_signed_the_user_out_is_post_revocation_use(ending: dict[str, Any], shape: str) -> None:
    found = detect_lines(_in(shape, [*_AFTER_DISABLE[:4], ending, _AFTER_DISABLE[-1]]))
    assert found.hits == [("post_revocation_use.after_revocation", "at-2")]


def test_mixing_text_and_json_forms_gives_the_alerts_of_the_json_form_alone() -> None:
    """Every event of several scenarios, each in a different shape in turn (the JSON
    representation, plain jboss-logging, Quarkus JSON, ECS, flat): the same alerts."""
    events = [*_REUSE, *_AFTER_DISABLE[4:], kc("LOGOUT", 1200, {}, clientId=None)]
    shapes: list[Any] = [lambda raw: raw, *SHAPES.values()]
    mixed = [shapes[i % len(shapes)](raw) for i, raw in enumerate(events)]
    alone = detect_lines(list(events))
    together = detect_lines(mixed)
    assert alone.hits == together.hits == [("post_revocation_use.after_disable", "at-2"),
                                           ("replay.refresh_reuse", "rt-1")]
    assert together.dead_letters == [] and together.summary.events == alone.summary.events


@pytest.mark.parametrize("shape", ["plain", "quarkus-json", "ecs", "flat"])
def test_a_text_line_is_keyed_for_kafka_like_its_json_form(shape: str) -> None:
    from pipeline.kafka.keys import line_key
    from schemas.redaction import make_token_hasher
    from tests.conftest import TEST_HASH_KEY

    hasher = make_token_hasher(TEST_HASH_KEY)
    for raw in [*_REUSE, _disable(600)]:
        rendered = SHAPES[shape](raw)
        line = rendered if isinstance(rendered, bytes) else json.dumps(rendered).encode()
        want, got = line_key(json.dumps(raw).encode(), hasher), line_key(line, hasher)
        assert (got.key, got.basis, got.format) == (want.key, want.basis, "keycloak")
