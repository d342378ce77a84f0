"""Handle replacement: the public key is public, so anyone may seal a handle.

The attack: after the genuine source sent a token's handle, the attacker seals
``not-a-token`` under the same ``token_id``. Had it replaced the genuine handle, RFC 7009
would receive ``not-a-token``, answer 200 (as the RFC requires for unknown tokens), the
action would be marked done, and the stolen token would stay valid. Here the forged handle
is refused and counted, the revocation carries the genuine token, and introspection at a
real authorization server (Authlib, loopback) says it is inactive. Benign twins: the genuine
source sending the same handle again, and handles for other tokens, are filed as before.
"""

from __future__ import annotations

import base64
import json

import pytest

from pipeline.response.config import Rfc7009Config
from pipeline.response.handles import (
    HandleConflict,
    HandleFull,
    HandleLimits,
    HandleStore,
    HandleUnbound,
    generate_key_pem,
    load_private_key,
    seal,
)
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from schemas.actions import RevocationTarget
from schemas.redaction import make_token_hasher
from tests.integration.oauth_server import CLIENTS, OAuthServer, oauth_server  # noqa: F401 -- a pytest fixture, used by name

HASH = make_token_hasher(b"adversarial-handle-hash-key-0123")
KEY = load_private_key(generate_key_pem()[0])
PUBLIC = KEY.public_key()


def forged_jwt(jti: str) -> str:
    """What an attacker who read a jti in a log can build: a JWS shape with any signature."""
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none'})}.{part({'jti': jti, 'exp': 4_000_000_000})}.Zm9yZ2Vk"


def test_a_replacing_handle_is_refused_and_the_genuine_token_is_revoked(
    oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    stolen = oauth_server.login()["access_token"]
    token_id = HASH(stolen)
    store = HandleStore(KEY, HASH)
    assert store.accept(seal(PUBLIC, stolen, "access_token", 4_000_000_000)) == token_id  # the gateway's

    with pytest.raises(HandleUnbound):  # the attacker's, for the same id
        store.accept(seal(PUBLIC, "not-a-token", "access_token", 4_000_000_000, token_id=token_id))
    assert store.accept(seal(PUBLIC, stolen, "access_token", 4_000_000_000)) == token_id  # the gateway again
    assert store.counts == {"accepted": 1, "unbound": 1, "duplicate": 1}

    monkeypatch.setenv("TW_PORTAL_SECRET", CLIENTS["portal"])
    responder = Rfc7009Responder("idp", Rfc7009Config(revocation_endpoint=f"{oauth_server.url}/revoke",
                                                      client_id="portal", client_secret_env="TW_PORTAL_SECRET"))
    result = responder.revoke(RevocationTarget(kind="token", id=token_id), store.get(token_id))
    assert result.outcome == "done"
    assert [r["form"]["token"] for r in oauth_server.state.revocations] == [stolen]
    assert oauth_server.introspect(stolen) == {"active": False}


def test_a_forged_jwt_for_a_held_jti_is_a_conflict_and_the_first_stays() -> None:
    genuine = forged_jwt("at-0001").replace("Zm9yZ2Vk", "Z2VudWluZQ")  # stands for the IdP-signed token
    store = HandleStore(KEY, HASH)
    assert store.accept(seal(PUBLIC, genuine, "access_token", 4_000_000_000)) == "at-0001"
    with pytest.raises(HandleConflict):
        store.accept(seal(PUBLIC, forged_jwt("at-0001"), "access_token", 4_000_000_000, token_id="at-0001"))
    held = store.get("at-0001")
    assert held is not None and held.token.get_secret_value() == genuine
    assert store.counts == {"accepted": 1, "conflict": 1}


def test_a_forger_first_is_visible_as_a_conflict_when_the_genuine_handle_arrives() -> None:
    """The residual race for JWTs (a jti is not secret): the source loses it loudly, never silently."""
    store = HandleStore(KEY, HASH)
    store.accept(seal(PUBLIC, forged_jwt("at-0002"), "access_token", 4_000_000_000))
    genuine = forged_jwt("at-0002").replace("Zm9yZ2Vk", "Z2VudWluZQ")
    with pytest.raises(HandleConflict):
        store.accept(seal(PUBLIC, genuine, "access_token", 4_000_000_000))
    assert store.counts["conflict"] == 1


def test_a_flood_of_self_made_handles_stays_within_the_caps() -> None:
    store = HandleStore(KEY, HASH, clock=lambda: 1_000.0, limits=HandleLimits(max_count=50, max_ttl_s=600))
    for n in range(200):
        try:
            store.accept(seal(PUBLIC, f"junk-{n}", "access_token", 10.0**12))
        except HandleFull:
            pass
    assert len(store) == 50 and store.counts == {"accepted": 50, "full": 150}
    oldest = store.get(HASH("junk-0"))
    assert oldest is not None and oldest.expires_at == 1_600.0  # the sender's 10**12 is capped


def test_a_flood_cannot_evict_a_genuine_handle_to_file_a_forged_one_for_its_jti() -> None:
    """The attack: fill the store with far-expiring junk so the genuine (soonest-expiring)
    handle is evicted, then file a forged JWT under its jti. The store refuses instead."""
    now = [1_000.0]
    store = HandleStore(KEY, HASH, clock=lambda: now[0], limits=HandleLimits(max_count=50, max_ttl_s=600))
    genuine = forged_jwt("at-0003").replace("Zm9yZ2Vk", "Z2VudWluZQ")  # stands for the IdP-signed token
    assert store.accept(seal(PUBLIC, genuine, "access_token", 1_300.0)) == "at-0003"
    for n in range(60):
        try:
            store.accept(seal(PUBLIC, f"junk-{n}", "access_token", 10.0**12))
        except HandleFull:
            pass
    with pytest.raises(HandleConflict):
        store.accept(seal(PUBLIC, forged_jwt("at-0003"), "access_token", 10.0**12, token_id="at-0003"))
    held = store.get("at-0003")
    assert held is not None and held.token.get_secret_value() == genuine
    assert store.counts == {"accepted": 50, "full": 11, "conflict": 1}
    now[0] = 1_400.0  # benign twin: once the genuine handle has expired it is purged to make room
    assert store.accept(seal(PUBLIC, "fresh", "access_token", 1_900.0)) == HASH("fresh")
    assert store.get("at-0003") is None and store.counts["full"] == 11
