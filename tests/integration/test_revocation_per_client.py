"""`tokenwatch run` against an authorization server that enforces RFC 7009's client check.

Authlib's revocation endpoint, configured as a conformant server does (Okta, Keycloak,
oidc-provider): a token is revoked only by the client it was issued to, so one responder
client cannot revoke the tokens of the others. Three clients' refresh tokens are reused;
tokenwatch holds credentials for two of them (one secret from the environment, one from a
file, one client_secret_basic, one client_secret_post). The two families are revoked, each
as its own client, and introspection says inactive; the third client's tokens are never
sent under another client's name and stay active, and its action fails with the reason.
Handles are made as an operator would: `tokenwatch handles keygen` and `handles seal`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaProducer

from pipeline.kafka.config import producer_kwargs
from pipeline.kafka.topics import ensure_topics
from pipeline.store.sqlite import SqliteStore
from schemas.redaction import make_token_hasher
from tests.integration.oauth_server import CLIENTS, OAuthServer, strict_oauth_server  # noqa: F401 -- a pytest fixture, used by name
from tests.integration.test_service_run import HASH_KEY, ROOT, _config, _start, _write_config

HASH = make_token_hasher(HASH_KEY.encode())
# client -> (user, family id, session id)
FAMILIES = {"portal": ("alice", "fam-P", "s-P"), "mobile": ("bob", "fam-M", "s-M"), "cli": ("alice", "fam-C", "s-C")}


def _tokenwatch(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "pipeline.cli.main", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _seal(public_key: Path, token: str, family: str) -> str:
    """What the source does, with the operator's command (the token goes by environment, never argv)."""
    return _tokenwatch("handles", "seal", "--public-key", str(public_key), "--token-env", "TW_SEAL_TOKEN",
                       "--token-type", "refresh_token", "--family-id", family,
                       env={"TW_SEAL_TOKEN": token}).strip()


def _line(event_id: str, kind: str, when: datetime, client: str, token: str, parent: str | None,
          handle: str) -> bytes:
    user, family, session = FAMILIES[client]
    iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps({
        "canonical_version": 1, "event_id": event_id, "kind": kind, "time": iso, "source": "idp",
        "subject": {"id": user, "kind": "user"}, "client_id": client, "session_id": session,
        "network": {"ip": "79.200.1.10", "user_agent": "Mozilla/5.0"},
        "token": {"id": HASH(token), "type": "refresh", "family_id": family, "parent_id": parent and HASH(parent),
                  "issued_at": iso, "expires_at": (when + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "scopes": ["openid"],
        "tokenwatch_handle": handle,
    })


def _reused_family(server: OAuthServer, client: str) -> list[str]:
    """login, a refresh, and the first refresh token redeemed again: a reuse tokenwatch sees."""
    user = FAMILIES[client][0]
    login = server.login(user, client)
    rotated = server.refresh(login["refresh_token"], client)
    stolen = server.refresh(login["refresh_token"], client)
    return [login["refresh_token"], rotated["refresh_token"], stolen["refresh_token"]]


def test_run_revokes_each_clients_tokens_as_that_client(
    kafka_bootstrap: str, osmem_clone: Any, strict_oauth_server: OAuthServer, tmp_path: Path  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    server = strict_oauth_server
    # The server really enforces the check: portal cannot revoke a cli token.
    probe = server.login("alice", "cli")["refresh_token"]
    refused = server.revoke_as(probe, "portal")
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert server.introspect(probe)["active"] is True
    server.state.revocations.clear()

    name = f"rpc-{uuid.uuid4().hex[:8]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    _tokenwatch("handles", "keygen", "--out-dir", str(tmp_path / "keys"))
    public_key, private_key = tmp_path / "keys" / "handle-key.pub.pem", tmp_path / "keys" / "handle-key.pem"

    tokens = {client: _reused_family(server, client) for client in FAMILIES}
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    lines: list[bytes] = []
    for client, (rt1, rt2, rt2x) in tokens.items():
        family = FAMILIES[client][1]
        lines += [
            _line(f"{client}-1", "issued", start, client, rt1, None, _seal(public_key, rt1, family)),
            _line(f"{client}-2", "refreshed", start + timedelta(minutes=1), client, rt2, rt1,
                  _seal(public_key, rt2, family)),
            _line(f"{client}-3", "refreshed", start + timedelta(minutes=2), client, rt2x, rt1,
                  _seal(public_key, rt2x, family)),
        ]

    mobile_secret = tmp_path / "mobile-secret"
    mobile_secret.write_text(CLIENTS["mobile"] + "\n")
    db = tmp_path / "alerts.db"
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, f"tw{uuid.uuid4().hex[:6]}")
    with config_path.open("a") as config:
        config.write(f"""
[store]
path = "{db}"

[response]
enabled = true
routes = {{"*" = "idp"}}
retry_poll_s = 0.2
handle_key_file = "{private_key}"

[response.responders.idp]
type = "rfc7009"
revocation_endpoint = "{server.url}/revoke"
timeout_s = 2

[response.responders.idp.clients.portal]
client_secret_env = "TW_PORTAL_SECRET"

[response.responders.idp.clients.mobile]
client_secret_file = "{mobile_secret}"
auth_method = "client_secret_post"
""")
    log_path = tmp_path / "run.log"
    proc = _start(config_path, log_path, {"TW_PORTAL_SECRET": CLIENTS["portal"],
                                          "TOKENWATCH_ENGINE__ALLOWED_LATENESS_S": "0.5"})
    producer = KafkaProducer(**producer_kwargs(kafka))
    revoked = [raw for client in ("portal", "mobile") for raw in tokens[client]]
    try:
        for line in lines:
            producer.send(name, key=orjson.loads(line)["subject"]["id"].encode(), value=line)
        producer.flush()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if not any(server.introspect(raw)["active"] for raw in revoked) and _actions_settled(db):
                break
            time.sleep(0.3)
    finally:
        producer.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]

    log = log_path.read_text()
    assert [server.introspect(raw)["active"] for raw in revoked] == [False] * 6, log[-3000:]
    assert [server.introspect(raw)["active"] for raw in tokens["cli"]] == [True] * 3  # untouched
    # Every request went out as the token's own client; none carried a cli token.
    sent = [(entry["client"], entry["form"]["token"]) for entry in server.state.revocations]
    owner = {raw: client for client, raws in tokens.items() for raw in raws}
    assert sent and all(owner[token] == client for client, token in sent), sent
    assert {client for client, _ in sent} == {"portal", "mobile"}
    assert not any(entry["basic"] for entry in server.state.revocations if entry["client"] == "mobile")

    store = SqliteStore(db)
    try:
        actions = {action.target.client_id: action for action in store.list_actions()}
    finally:
        store.close()
    assert {client: (a.target.kind, a.target.id, a.state) for client, a in actions.items()} == {
        "portal": ("family", "fam-P", "succeeded"), "mobile": ("family", "fam-M", "succeeded"),
        "cli": ("family", "fam-C", "gave_up")}
    assert actions["cli"].last_error == \
        "config_error: no credentials for client 'cli' (add [response.responders.idp.clients.cli])"
    # No token, handle or secret in the log.
    for secret in [*owner, CLIENTS["portal"], CLIENTS["mobile"]]:
        assert secret not in log


def _actions_settled(db: Path) -> bool:
    """Three actions, none still pending or in flight."""
    if not db.exists():
        return False
    store = SqliteStore(db)
    try:
        actions = store.list_actions()
    finally:
        store.close()
    return len(actions) == 3 and all(a.state in ("succeeded", "gave_up") for a in actions)
