"""Detection -> policy -> RFC 7009 revocation against a real authorization server (Authlib).

Tokens are minted by the server; the canonical events that describe them go through the
detection engine; a source-sealed revocation handle per token is the only place the token
string exists on our side. Introspection (RFC 7662) is the proof a revocation happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.response.breaker import RULE_ID
from pipeline.response.config import ResponseConfig, Rfc7009Config
from pipeline.response.executor import Executor
from pipeline.response.handles import HandleStore, generate_key_pem, load_private_key, seal
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from pipeline.store.sqlite import SqliteStore
from schemas.actions import Action
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher
from tests.factories import SINGAPORE_VPS, at, engine, event
from tests.integration.oauth_server import OAuthServer, oauth_server  # noqa: F401 -- a pytest fixture, used by name
from tests.response.conftest import alert_doc

HASH = make_token_hasher(b"integration-test-token-hash-key!")
KEY = load_private_key(generate_key_pem()[0])
DAY = 86_400.0


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_IDP_SECRET", "tokenwatch-secret")


def config(**kw: Any) -> ResponseConfig:
    base: dict[str, Any] = dict(enabled=True, routes={"*": "idp"}, backoff_base_s=0.2, retry_poll_s=0.1,
                                max_attempts=4)
    return ResponseConfig(**(base | kw))


def rfc7009(server: OAuthServer) -> Rfc7009Responder:
    return Rfc7009Responder("idp", Rfc7009Config(revocation_endpoint=f"{server.url}/revoke", client_id="tokenwatch",
                                                 client_secret_env="TW_IDP_SECRET", timeout_s=2))


def handles_for(tokens: dict[str, tuple[str, str]], family: str | None = None) -> HandleStore:
    """What the gateway/IdP hook sends: every token sealed to our public key (raw -> type, family)."""
    store = HandleStore(KEY, HASH)
    for raw, (kind, fam) in tokens.items():
        store.accept(seal(KEY.public_key(), raw, kind, time.time() + 3600, family_id=family or fam))
    return store


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- the must-show flow ------------------------------------------------------------------

def test_detected_refresh_reuse_revokes_the_family_and_introspection_says_inactive(
    oauth_server: OAuthServer, secret: None  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    login = oauth_server.login()
    rotated = oauth_server.refresh(login["refresh_token"])
    stolen = oauth_server.refresh(login["refresh_token"])  # the reuse: a second redemption of rt-1
    raw = {name: pair[kind] for name, pair in (("rt1", login), ("at1", login), ("rt2", rotated), ("at2", rotated),
                                               ("rt2x", stolen), ("at2x", stolen))
           for kind in [("refresh_token" if name.startswith("rt") else "access_token")]}
    tid = {name: HASH(value) for name, value in raw.items()}
    common = dict(family="fam-A", session="s-1", scopes=("openid", "read"), source="idp")
    events = [
        event("issued", 0, token=tid["rt1"], token_type="refresh", expires_in=DAY, grant_type="password", **common),
        event("issued", 0, token=tid["at1"], token_type="access", expires_in=3600, grant_type="password", **common),
        event("refreshed", 60, token=tid["rt2"], token_type="refresh", parent=tid["rt1"], expires_in=DAY,
              grant_type="refresh_token", **common),
        event("refreshed", 360, token=tid["rt2x"], token_type="refresh", parent=tid["rt1"], expires_in=DAY,
              grant_type="refresh_token", place=SINGAPORE_VPS, **common),
    ]
    eng = engine()
    alerts = [a for ev in events for a in eng.submit(ev)] + eng.flush()
    hits = sorted((a.rule.id, a.token.id, a.response.action) for a in alerts)
    assert hits == [("geo_divergence.impossible_travel", tid["rt2x"], "revoke_token"),  # Berlin -> Singapore
                    ("replay.refresh_reuse", tid["rt1"], "revoke_family")]

    handles = handles_for({raw[n]: ("refresh_token" if n.startswith("rt") else "access_token", "fam-A") for n in raw})
    store, revoked = SqliteStore(":memory:"), []
    ex = Executor(config(), store, {"idp": rfc7009(oauth_server)}, handles, on_revoked=revoked.append,
                  clock=lambda: at(400))
    for value in raw.values():
        assert oauth_server.introspect(value)["active"] is True
    actions = {a.rule_id: a for a in ex.submit(alerts)}
    assert actions["geo_divergence.impossible_travel"].state == "awaiting_approval"  # policy: approve
    action = actions["replay.refresh_reuse"]

    done = store.get_action(action.id)
    assert done is not None and (done.state, done.target.label(), done.attempts) == ("succeeded", "family:fam-A", 1)
    for name, value in raw.items():
        assert oauth_server.introspect(value) == {"active": False}, name
    hints = [r["form"].get("token_type_hint") for r in oauth_server.state.revocations]
    # The family's tokens the IdP's own events placed in it (3 refresh tokens, at1); the handles of
    # at2/at2x only declare the family, which is not evidence (the server revokes them with the grant).
    assert hints[:3] == ["refresh_token"] * 3 and len(hints) == 4
    assert all(value not in repr(store.audit_trail()) + repr(store.list_actions()) for value in raw.values())

    # the revoked event arms post-revocation detection: the stolen access token used after the 60 s lag
    eng.submit(CanonicalEvent.model_validate(revoked[0]))
    late_use = event("used", 480, token=tid["at2x"], family="fam-A", session="s-1", scopes=("openid", "read"),
                     required=("read",), expires_in=3000, place=SINGAPORE_VPS, source="idp")
    later = eng.submit(late_use) + eng.flush()
    assert "post_revocation_use.after_revocation" in [a.rule.id for a in later]


def test_503_then_200_is_retried_to_success_after_retry_after(
    oauth_server: OAuthServer, secret: None  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    pair = oauth_server.login()
    handles = handles_for({pair["access_token"]: ("access_token", "f")})
    oauth_server.fail_next(503, retry_after="1")
    store = SqliteStore(":memory:")
    ex = Executor(config(), store, {"idp": rfc7009(oauth_server)}, handles)
    ex.start()
    try:
        [action] = ex.submit([token_alert(1, pair["access_token"])])
        wait_for(lambda: _state(store, action) == "succeeded")
    finally:
        ex.stop()
    first, second = oauth_server.state.revocations
    assert second["time"] - first["time"] >= 1.0  # Retry-After honoured
    assert oauth_server.introspect(pair["access_token"]) == {"active": False}
    assert [e.result for e in store.audit_trail(action_id=action.id) if e.verb == "revoke.result"] == [
        "failed", "succeeded"]


def test_401_is_reported_as_a_configuration_error_and_not_retried(
    oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    monkeypatch.setenv("TW_IDP_SECRET", "wrong-secret")
    handles = handles_for({"some-token": ("access_token", "f")})
    store = SqliteStore(":memory:")
    ex = Executor(config(), store, {"idp": rfc7009(oauth_server)}, handles)
    ex.start()
    try:
        [action] = ex.submit([token_alert(1, "some-token")])
        time.sleep(0.6)  # several retry-job rounds
    finally:
        ex.stop()
    final = store.get_action(action.id)
    assert final is not None and final.state == "gave_up" and final.attempts == 1
    assert "config_error: HTTP 401" in (final.last_error or "")
    assert len(oauth_server.state.revocations) == 1


def test_a_burst_of_500_findings_revokes_at_most_the_cap_and_raises_one_breaker_alert(
    oauth_server: OAuthServer, secret: None  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    tokens = {f"burst-token-{n}": ("access_token", f"f{n}") for n in range(500)}
    store, raised = SqliteStore(":memory:"), []
    ex = Executor(config(max_auto_per_minute=10), store, {"idp": rfc7009(oauth_server)}, handles_for(tokens),
                  on_alert=raised.append)
    actions = ex.submit([token_alert(n, raw) for n, raw in enumerate(tokens)])
    assert len(actions) == 500 and len(oauth_server.state.revocations) == 10
    assert sum(a.state == "awaiting_approval" for a in actions) == 490
    assert [d["rule"]["id"] for d in raised] == [RULE_ID]
    assert len(store.list_alerts(rule=RULE_ID)) == 1


def test_restart_with_pending_retries_loses_none_and_repeats_none(
    oauth_server: OAuthServer, secret: None, tmp_path: Path  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    pairs = [oauth_server.login() for _ in range(5)]
    tokens = {p["access_token"]: ("access_token", f"f{n}") for n, p in enumerate(pairs)}
    alerts = [token_alert(n, p["access_token"]) for n, p in enumerate(pairs)]
    db = tmp_path / "tokenwatch.db"
    oauth_server.fail_next(503, count=5, retry_after="1")
    first = Executor(config(), SqliteStore(db), {"idp": rfc7009(oauth_server)}, handles_for(tokens))
    assert {a.state for a in first.submit(alerts)} == {"pending"}
    first.store.close()  # the process dies with five retries queued
    assert len(oauth_server.state.revocations) == 5

    store = SqliteStore(db)
    second = Executor(config(), store, {"idp": rfc7009(oauth_server)}, handles_for(tokens))  # handles re-sent
    assert second.submit(alerts) == []  # the replayed alerts find their actions: nothing new
    second.start()
    try:
        wait_for(lambda: all(a.state == "succeeded" for a in store.list_actions()))
    finally:
        second.stop()
    sent = [r["form"]["token"] for r in oauth_server.state.revocations[5:]]
    assert sorted(sent) == sorted(tokens)  # each exactly once after the restart
    assert all(oauth_server.introspect(raw) == {"active": False} for raw in tokens)


def test_dry_run_records_but_sends_nothing(oauth_server: OAuthServer, secret: None) -> None:  # noqa: F811 -- the pytest fixture imported above, requested by name
    pair = oauth_server.login()
    store = SqliteStore(":memory:")
    ex = Executor(config(dry_run=True), store, {"idp": rfc7009(oauth_server)},
                  handles_for({pair["access_token"]: ("access_token", "f")}))
    [action] = ex.submit([token_alert(1, pair["access_token"])])
    assert _state(store, action) == "dry_run"
    assert oauth_server.state.revocations == []
    assert oauth_server.introspect(pair["access_token"])["active"] is True


def token_alert(n: int, raw: str) -> dict[str, Any]:
    """An auto-mode alert (refresh reuse rule) asking to revoke one token, by its keyed hash;
    each alert is another user's, so only the global breaker is at stake."""
    doc = alert_doc(n, action="revoke_token", user=f"user-{n}")
    doc["token"] = {"id": HASH(raw), "type": "access"}
    return doc


def _state(store: SqliteStore, action: Action) -> str | None:
    current = store.get_action(action.id)
    return current.state if current else None
