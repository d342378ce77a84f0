"""The RFC 7009 responder against a real authorization server (Authlib) on loopback."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from pipeline.response.config import Rfc7009Config
from pipeline.response.responders.base import RevocationHandle
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from schemas.actions import RevocationTarget
from tests.integration.oauth_server import OAuthServer, oauth_server  # noqa: F401 -- a pytest fixture, used by name


def responder(server: OAuthServer, monkeypatch: pytest.MonkeyPatch, secret: str = "tokenwatch-secret",
              auth_method: str = "client_secret_basic") -> Rfc7009Responder:
    monkeypatch.setenv("TW_IDP_SECRET", secret)
    config = Rfc7009Config(revocation_endpoint=f"{server.url}/revoke", client_id="tokenwatch",
                           auth_method=auth_method, client_secret_env="TW_IDP_SECRET")  # type: ignore[arg-type]  # auth_method is a plain str; pydantic checks the Literal
    return Rfc7009Responder("idp", config)


def handle(token: str, kind: str) -> RevocationHandle:
    return RevocationHandle("hmac:x", SecretStr(token), kind, 2e9)  # type: ignore[arg-type]  # kind is a plain str; callers pass one of the two token types


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_revoking_an_access_token_makes_introspection_inactive(
    oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch, auth_method: str  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    pair = oauth_server.login()
    assert oauth_server.introspect(pair["access_token"])["active"] is True
    target = RevocationTarget(kind="token", id="hmac:x")
    result = responder(oauth_server, monkeypatch, auth_method=auth_method).revoke(
        target, handle(pair["access_token"], "access_token"))
    assert result.outcome == "done"
    assert oauth_server.introspect(pair["access_token"]) == {"active": False}
    assert oauth_server.introspect(pair["refresh_token"])["active"] is True  # only the access token went
    assert oauth_server.state.revocations[0]["basic"] is (auth_method == "client_secret_basic")


def test_unknown_token_is_done_and_bad_credentials_are_a_config_error(
    oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    target = RevocationTarget(kind="token", id="hmac:x")
    assert responder(oauth_server, monkeypatch).revoke(target, handle("never-issued", "access_token")).outcome == "done"
    result = responder(oauth_server, monkeypatch, secret="wrong").revoke(target, handle("never-issued", "access_token"))
    assert (result.outcome, result.status) == ("config_error", 401)


def test_injected_503_is_a_retry_with_the_servers_delay(
    oauth_server: OAuthServer, monkeypatch: pytest.MonkeyPatch  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    oauth_server.fail_next(503, retry_after="1")
    result = responder(oauth_server, monkeypatch).revoke(RevocationTarget(kind="token", id="x"), handle("t", "access_token"))
    assert (result.outcome, result.after_s, result.status) == ("retry", 1.0, 503)
