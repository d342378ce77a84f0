"""The responder contract, once for every responder in the registry (``RESPONDERS``): the four
outcomes for the same HTTP answers, no exception for HTTP trouble, no secret in a repr or a
reason. Each meets a fake at the HTTP boundary (the IdP admin APIs cannot run here; the
vendor-specific requests are checked in tests/response/test_responders.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import SecretStr

from pipeline.response.config import CaepConfig, EntraConfig, KeycloakConfig, OktaConfig, Rfc7009Config
from pipeline.response.responders import RESPONDERS
from pipeline.response.responders.base import Responder, RevocationHandle
from pipeline.response.responders.caep import CaepResponder
from pipeline.response.responders.entra import EntraResponder
from pipeline.response.responders.keycloak import KeycloakResponder
from pipeline.response.responders.okta import OktaResponder
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from schemas.actions import RevocationTarget, TargetKind

SECRET = "s3cr3t-value-9f2e"
HANDLE = RevocationHandle("hmac:abc", SecretStr("raw-refresh-token-77"), "refresh_token", 2e9, "fam-1")
SESSION = RevocationTarget(kind="session", id="sess-1", user_id="u-1")
SUBJECT = RevocationTarget(kind="subject", id="00u1", source="okta")
FAMILY = RevocationTarget(kind="family", id="fam-1", user_id="u-1", client_id="portal")

Build = Callable[[httpx.BaseTransport], Responder]
CASES: dict[str, tuple[Build, RevocationTarget, RevocationHandle | None]] = {
    "rfc7009": (lambda t: Rfc7009Responder("idp", Rfc7009Config(
        revocation_endpoint="https://idp.test/revoke", client_id="tw", client_secret_env="TW_CONTRACT_SECRET"), t),
        FAMILY, HANDLE),
    "keycloak": (lambda t: KeycloakResponder("kc", KeycloakConfig(
        base_url="https://sso.test", realm="acme", client_id="tw", client_secret_env="TW_CONTRACT_SECRET"), t),
        SESSION, None),
    "okta": (lambda t: OktaResponder("okta", OktaConfig(
        base_url="https://acme.okta.test", api_token_env="TW_CONTRACT_SECRET"), t), SUBJECT, None),
    "entra": (lambda t: EntraResponder("entra", EntraConfig(
        tenant_id="tenant-1", client_id="app", client_secret_env="TW_CONTRACT_SECRET",
        login_url="https://login.test", graph_url="https://graph.test/v1.0"), t), SESSION, None),
    "caep": (lambda t: CaepResponder("caep", CaepConfig(
        endpoint="https://rx.test/events", issuer="https://tokenwatch.test", audience="https://rx.test",
        signing_key_env="TW_CONTRACT_KEY", auth_token_env="TW_CONTRACT_SECRET"), t), SESSION, None),
}


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_CONTRACT_SECRET", SECRET)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    monkeypatch.setenv("TW_CONTRACT_KEY", pem.decode())


def answering(status: int | None, seen: list[httpx.Request]) -> httpx.MockTransport:
    """Admin-token requests succeed; every other request gets ``status`` (None: the connection fails)."""
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "adm-1", "expires_in": 300, "token_type": "Bearer"})
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status, json={"error": "scripted"})
    return httpx.MockTransport(handler)


def test_every_registered_responder_is_in_the_contract() -> None:
    assert set(CASES) == set(RESPONDERS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_registry_key_type_and_kinds_agree(kind: str) -> None:
    build, target, _ = CASES[kind]
    responder = build(answering(200, []))
    try:
        assert type(responder) is RESPONDERS[kind] and responder.type == kind
        assert responder.kinds and responder.kinds <= set(get_args(TargetKind))
        assert target.kind in responder.kinds
    finally:
        responder.close()


@pytest.mark.parametrize(("status", "outcome"), [
    (200, "done"), (204, "done"), (401, "config_error"), (403, "config_error"),
    (429, "retry"), (500, "retry"), (503, "retry"), (None, "retry"),
])
@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_same_answer_is_the_same_outcome_for_every_responder(kind: str, status: int | None, outcome: str) -> None:
    build, target, handle = CASES[kind]
    seen: list[httpx.Request] = []
    responder = build(answering(status, seen))
    try:
        result = responder.revoke(target, handle)  # never raises for HTTP trouble
    finally:
        responder.close()
    assert result.outcome == outcome, result
    assert seen, "the responder made no request"
    for text in (repr(responder), result.reason):
        assert SECRET not in text and "raw-refresh-token-77" not in text


def test_a_done_result_is_not_given_a_retry_delay() -> None:
    for kind, (build, target, handle) in CASES.items():
        responder = build(answering(200, []))
        try:
            result: Any = responder.revoke(target, handle)
        finally:
            responder.close()
        assert (result.outcome, result.after_s) == ("done", None), kind
