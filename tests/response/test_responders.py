"""Responder adapters: status mapping, request shape, secrets kept out of reprs.

RFC 7009 runs against the real Authlib server in tests/integration; the IdP admin APIs
(Keycloak, Okta, Entra) and a CAEP receiver cannot run here, so they meet a fake at the
HTTP boundary (httpx.MockTransport) that checks the request each vendor documents.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwk, jwt
from pydantic import SecretStr

from pipeline.config import ConfigError
from pipeline.response.config import (
    CaepConfig,
    ClientCredentialsRef,
    EntraConfig,
    KeycloakConfig,
    OktaConfig,
    Rfc7009Config,
)
from pipeline.response.responders import RESPONDERS, build_responders
from pipeline.response.responders.base import MAX_RETRY_AFTER_S, ResponderResult, RevocationHandle, retry_after
from pipeline.response.responders.caep import SESSION_REVOKED, CaepResponder
from pipeline.response.responders.entra import EntraResponder
from pipeline.response.responders.http import DeadlineExceeded, bounded_request
from pipeline.response.responders.keycloak import KeycloakResponder
from pipeline.response.responders.okta import OktaResponder
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget

HANDLE = RevocationHandle("hmac:abc", SecretStr("raw-refresh-token"), "refresh_token", 2e9, "fam-1")
SUBJECT = RevocationTarget(kind="subject", id="00u1", source="okta")
SESSION = RevocationTarget(kind="session", id="sess-1", user_id="u-1")
FAMILY = RevocationTarget(kind="family", id="fam-1", user_id="00u1", client_id="0oa9")



def _basic(user: str, password: str) -> str:
    """RFC 7617 Basic credentials of (already form-encoded) user and password, as a header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

def test_every_adapter_is_registered() -> None:
    assert set(RESPONDERS) == {"rfc7009", "keycloak", "okta", "entra", "caep"}


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TW_TEST_SECRET", "s3cr3t/with:chars")
    return "TW_TEST_SECRET"


def _rfc7009(secret_env: str, handler, auth_method: str = "client_secret_basic") -> Rfc7009Responder:
    config = Rfc7009Config(revocation_endpoint="https://idp.test/revoke", client_id="tw client",
                           auth_method=auth_method, client_secret_env=secret_env)  # type: ignore[arg-type]  # auth_method is a plain str; pydantic checks the Literal
    return Rfc7009Responder("idp", config, httpx.MockTransport(handler))


def test_rfc7009_basic_auth_form_encodes_credentials(secret_env: str) -> None:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200)

    result = _rfc7009(secret_env, handler).revoke(FAMILY, HANDLE)
    assert result == ResponderResult.done("revoked as client 'tw client' (HTTP 200)", 200)
    req = seen[0]
    assert req.headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(req.content.decode())) == {"token": "raw-refresh-token", "token_type_hint": "refresh_token"}
    expected = _basic("tw%20client", "s3cr3t%2Fwith%3Achars")
    assert req.headers["authorization"] == expected


def test_rfc7009_post_auth_puts_credentials_in_the_form(secret_env: str) -> None:
    seen: list[dict[str, str]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(dict(httpx.QueryParams(req.content.decode())))
        assert "authorization" not in req.headers
        return httpx.Response(200)

    _rfc7009(secret_env, handler, "client_secret_post").revoke(FAMILY, HANDLE)
    assert seen[0]["client_id"] == "tw client" and seen[0]["client_secret"] == "s3cr3t/with:chars"


@pytest.mark.parametrize(
    ("status", "body", "headers", "outcome", "after"),
    [
        (400, {"error": "unsupported_token_type"}, {}, "rejected", None),
        (400, {"error": "invalid_client"}, {}, "config_error", None),
        (401, {"error": "invalid_client"}, {}, "config_error", None),
        (429, {}, {"Retry-After": "7"}, "retry", 7.0),
        (503, {}, {"Retry-After": "2"}, "retry", 2.0),
        (500, {}, {}, "retry", None),
        (404, {}, {}, "rejected", None),
    ],
)
def test_rfc7009_status_mapping(secret_env: str, status: int, body: dict, headers: dict, outcome: str,
                                after: float | None) -> None:
    responder = _rfc7009(secret_env, lambda req: httpx.Response(status, json=body, headers=headers))
    result = responder.revoke(FAMILY, HANDLE)
    assert (result.outcome, result.after_s, result.status) == (outcome, after, status)
    if body.get("error") == "unsupported_token_type":
        assert "unsupported_token_type" in result.reason


def test_rfc7009_timeout_and_missing_handle(secret_env: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    assert _rfc7009(secret_env, handler).revoke(FAMILY, HANDLE).outcome == "retry"
    assert _rfc7009(secret_env, handler).revoke(FAMILY, None).outcome == "rejected"


def test_retry_after_as_seconds_or_http_date() -> None:
    now = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    assert retry_after("120", now) == 120.0
    assert retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert retry_after("soon", now) is None and retry_after(None, now) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("99999999999999", MAX_RETRY_AFTER_S),  # the finding: OverflowError further down
    ("9" * 400, MAX_RETRY_AFTER_S),  # float() of this is inf
    ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
    ("Fri, 31 Dec 99999 23:59:59 GMT", None),  # not a date Python can hold
    ("\u00b2", None), ("-5", None), ("1e400", None), ("NaN", None), ("", None),
])
def test_retry_after_never_parks_an_action(value: str, expected: float | None) -> None:
    assert retry_after(value, datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)) == expected


def test_secrets_never_in_reprs_and_missing_secret_is_named(secret_env: str, tmp_path: Path) -> None:
    responder = _rfc7009(secret_env, lambda req: httpx.Response(200))
    assert "s3cr3t" not in repr(responder) and "s3cr3t" not in repr(vars(responder))
    assert "raw-refresh-token" not in repr(HANDLE)
    with pytest.raises(SecretError, match=r"\$TW_NOT_SET"):
        Rfc7009Responder("idp", Rfc7009Config(revocation_endpoint="https://x/r", client_id="c",
                                              client_secret_env="TW_NOT_SET"))
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    config = Rfc7009Config(revocation_endpoint="https://x/r", client_id="c", client_secret_file=secret_file)
    form: dict[str, str] = {}
    assert Rfc7009Responder("idp", config.model_copy(update={"auth_method": "client_secret_post"})) \
        .credentials_for(FAMILY, HANDLE).apply(form) is None  # type: ignore[union-attr]  # credentials, not a refusal: a ResponderResult fails the test just the same
    assert form["client_secret"] == "from-file"


def _token_endpoint(req: httpx.Request, calls: list[str]) -> httpx.Response:
    form = dict(httpx.QueryParams(req.content.decode()))
    assert form["grant_type"] == "client_credentials" and form["client_secret"] == "s3cr3t/with:chars"
    calls.append(f"token {form.get('scope', '')}".strip())
    return httpx.Response(200, json={"access_token": f"adm-{len(calls)}", "expires_in": 300})


def test_keycloak_logout_and_session_delete_with_cached_admin_token(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/protocol/openid-connect/token"):
            assert req.url.path == "/realms/acme/protocol/openid-connect/token"
            return _token_endpoint(req, calls)
        calls.append(f"{req.method} {req.url.raw_path.decode()} {req.headers['authorization']}")
        return httpx.Response(404 if "sessions" in req.url.path else 204)

    config = KeycloakConfig(base_url="https://sso.test/", realm="acme", client_id="tw", client_secret_env=secret_env)
    kc = KeycloakResponder("kc", config, httpx.MockTransport(handler))
    assert kc.revoke(RevocationTarget(kind="subject", id="u 1"), None).outcome == "done"
    assert kc.revoke(SESSION, None).reason == "session delete: session already gone (HTTP 404)"
    assert kc.revoke(FAMILY, None).outcome == "rejected"
    assert calls == ["token", "POST /admin/realms/acme/users/u%201/logout Bearer adm-1",
                     "DELETE /admin/realms/acme/sessions/sess-1 Bearer adm-1"]


def test_keycloak_refetches_admin_token_once_on_401_then_reports_config_error(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/token"):
            return _token_endpoint(req, calls)
        calls.append("logout")
        return httpx.Response(401)

    config = KeycloakConfig(base_url="https://sso.test", realm="acme", client_id="tw", client_secret_env=secret_env)
    result = KeycloakResponder("kc", config, httpx.MockTransport(handler)).revoke(SUBJECT, None)
    assert result.outcome == "config_error" and calls == ["token", "logout", "token", "logout"]


def test_okta_paths_and_ssws_token(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.method} {req.url.raw_path.decode()} {req.headers['authorization']}")
        return httpx.Response(204)

    okta = OktaResponder("okta", OktaConfig(base_url="https://acme.okta.test", api_token_env=secret_env),
                         httpx.MockTransport(handler))
    for target in (SUBJECT, SESSION, FAMILY):
        assert okta.revoke(target, None).outcome == "done"
    assert okta.revoke(RevocationTarget(kind="family", id="fam-2"), None).outcome == "rejected"
    auth = "SSWS s3cr3t/with:chars"
    assert calls == [
        f"DELETE /api/v1/users/00u1/sessions?oauthTokens=true {auth}",
        f"DELETE /api/v1/sessions/sess-1 {auth}",
        f"DELETE /api/v1/users/00u1/clients/0oa9/tokens {auth}",
    ]


def test_okta_rate_limit_is_retried_after_its_reset(secret_env: str) -> None:
    okta = OktaResponder("okta", OktaConfig(base_url="https://acme.okta.test", api_token_env=secret_env),
                         httpx.MockTransport(lambda req: httpx.Response(429, headers={"Retry-After": "3"})))
    assert okta.revoke(SUBJECT, None) == ResponderResult.retry(3.0, "clear user sessions: HTTP 429", 429)


def test_entra_revoke_sign_in_sessions_for_the_user(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.host == "login.test":
            assert req.url.path == "/tenant-1/oauth2/v2.0/token"
            return _token_endpoint(req, calls)
        calls.append(f"{req.method} {req.url.path} {req.headers['authorization']}")
        return httpx.Response(200, json={"value": True})

    config = EntraConfig(tenant_id="tenant-1", client_id="app", client_secret_env=secret_env,
                         login_url="https://login.test", graph_url="https://graph.test/v1.0")
    entra = EntraResponder("entra", config, httpx.MockTransport(handler))
    assert entra.revoke(SESSION, None).outcome == "done"  # per user: the session's user
    assert entra.revoke(RevocationTarget(kind="session", id="s"), None).outcome == "rejected"
    assert calls == ["token https://graph.microsoft.com/.default", "POST /v1.0/users/u-1/revokeSignInSessions Bearer adm-1"]


@pytest.fixture
def caep_key(monkeypatch: pytest.MonkeyPatch) -> ec.EllipticCurvePrivateKey:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    monkeypatch.setenv("TW_CAEP_KEY", pem.decode())
    return key


def _caep(handler) -> CaepResponder:
    config = CaepConfig(endpoint="https://rx.test/events", issuer="https://tokenwatch.test", audience="https://rx.test",
                        subject_issuer="https://idp.test", key_id="k1", signing_key_env="TW_CAEP_KEY")
    return CaepResponder("caep", config, httpx.MockTransport(handler))


def test_caep_pushes_a_signed_session_revoked_set(caep_key: ec.EllipticCurvePrivateKey) -> None:
    received: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        received.append(req)
        return httpx.Response(202)

    assert _caep(handler).revoke(SESSION, None).outcome == "done"
    req = received[0]
    assert req.headers["content-type"] == "application/secevent+jwt"
    public = jwk.import_key(caep_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), "EC")
    token = jwt.decode(req.content.decode(), public, algorithms=["ES256"])
    assert token.header == {"alg": "ES256", "typ": "secevent+jwt", "kid": "k1"}
    claims = token.claims
    assert (claims["iss"], claims["aud"]) == ("https://tokenwatch.test", "https://rx.test")
    assert claims["sub_id"] == {"format": "complex", "session": {"format": "opaque", "id": "sess-1"},
                                "user": {"format": "iss_sub", "iss": "https://idp.test", "sub": "u-1"}}
    assert set(claims["events"]) == {SESSION_REVOKED}


@pytest.mark.parametrize(("err", "outcome"), [("invalid_key", "config_error"), ("invalid_request", "rejected")])
def test_caep_reports_rfc8935_errors(caep_key: object, err: str, outcome: str) -> None:
    responder = _caep(lambda req: httpx.Response(400, content=json.dumps({"err": err, "description": "nope"})))
    result = responder.revoke(SUBJECT, None)
    assert result.outcome == outcome and f"receiver rejected the SET: {err} (nope)" == result.reason


# -- RFC 7009 as the token's own client ----------------------------------------------------

def _per_client(monkeypatch: pytest.MonkeyPatch, handler) -> Rfc7009Responder:
    monkeypatch.setenv("TW_PORTAL_SECRET", "portal-secret")
    monkeypatch.setenv("TW_MOBILE_SECRET", "mobile secret")
    config = Rfc7009Config(revocation_endpoint="https://idp.test/revoke", clients={
        "portal": ClientCredentialsRef(client_secret_env="TW_PORTAL_SECRET"),
        "mobile": ClientCredentialsRef(client_secret_env="TW_MOBILE_SECRET", auth_method="client_secret_post"),
    })
    return Rfc7009Responder("idp", config, httpx.MockTransport(handler))


def _family_of(client: str | None) -> RevocationTarget:
    return RevocationTarget(kind="family", id="fam-1", user_id="alice", client_id=client)


def test_rfc7009_revokes_each_token_with_its_own_clients_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str | None, dict[str, str]]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.headers.get("authorization"), dict(httpx.QueryParams(req.content.decode()))))
        return httpx.Response(200)

    responder = _per_client(monkeypatch, handler)
    assert responder.revoke(_family_of("portal"), HANDLE).reason == "revoked as client 'portal' (HTTP 200)"
    assert responder.revoke(_family_of("mobile"), HANDLE).outcome == "done"
    assert seen == [
        (_basic("portal", "portal-secret"),
         {"token": "raw-refresh-token", "token_type_hint": "refresh_token"}),
        (None, {"token": "raw-refresh-token", "token_type_hint": "refresh_token", "client_id": "mobile",
                "client_secret": "mobile secret"}),
    ]


def test_rfc7009_never_sends_a_token_under_another_clients_name(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []
    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200)

    responder = _per_client(monkeypatch, handler)
    unknown = responder.revoke(_family_of("cli"), HANDLE)
    assert unknown == ResponderResult.config_error(
        "no credentials for client 'cli' (add [response.responders.idp.clients.cli])")
    assert responder.revoke(_family_of(None), HANDLE).outcome == "rejected"  # whose token? not guessed
    sealed_for_mobile = RevocationHandle("hmac:abc", SecretStr("raw-refresh-token"), "refresh_token", 2e9,
                                         "fam-1", client_id="mobile")
    clash = responder.revoke(_family_of("portal"), sealed_for_mobile)
    assert clash.outcome == "rejected" and "'mobile'" in clash.reason and "'portal'" in clash.reason
    assert seen == []
    # The handle's word names the client when the alert does not.
    assert responder.revoke(_family_of(None), sealed_for_mobile).reason == "revoked as client 'mobile' (HTTP 200)"
    assert len(seen) == 1


def test_rfc7009_another_clients_token_is_a_config_error_naming_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    responder = _per_client(monkeypatch, lambda req: httpx.Response(400, json={"error": "invalid_grant"}))
    result = responder.revoke(_family_of("portal"), HANDLE)
    assert result == ResponderResult.config_error("HTTP 400 invalid_grant (the token was not issued to 'portal')", 400)


def test_rfc7009_config_names_secrets_and_one_way_to_authenticate(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="either clients"):
        Rfc7009Config(revocation_endpoint="https://x/r")
    with pytest.raises(ValueError, match="either clients"):
        Rfc7009Config(revocation_endpoint="https://x/r", client_id="c",
                      clients={"p": ClientCredentialsRef(client_secret_env="X")})
    with pytest.raises(ValueError, match="client_secret_env or client_secret_file"):
        ClientCredentialsRef()
    with pytest.raises(ValueError):
        ClientCredentialsRef(client_secret="inline")  # type: ignore[call-arg]  # values are never accepted
    with pytest.raises(SecretError, match=r"client secret of 'portal'.*\$TW_UNSET_PORTAL"):
        Rfc7009Responder("idp", Rfc7009Config(revocation_endpoint="https://x/r", clients={
            "portal": ClientCredentialsRef(client_secret_env="TW_UNSET_PORTAL")}))


def test_a_fallback_must_name_a_responder_that_needs_no_handle(secret_env: str) -> None:
    def configs(fallback: str) -> dict:
        return {
            "kc-revoke": Rfc7009Config(revocation_endpoint="https://sso.test/revoke", client_id="tw",
                                       client_secret_env=secret_env, fallback=fallback),
            "kc-admin": KeycloakConfig(base_url="https://sso.test", realm="acme", client_id="tw",
                                       client_secret_env=secret_env),
        }

    built = build_responders(configs("kc-admin"))
    assert built["kc-revoke"].fallback() == "kc-admin"
    for wrong in ("kc-missing", "kc-revoke"):
        with pytest.raises(ConfigError, match=f"fallback = '{wrong}'"):
            build_responders(configs(wrong))


# -- Keycloak: a family's session; Okta: a refresh token by id -------------------------------

def test_keycloak_family_without_handle_logs_its_session_out(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.endswith("/token"):
            return _token_endpoint(req, calls)
        calls.append(f"{req.method} {req.url.raw_path.decode()}")
        return httpx.Response(204)

    config = KeycloakConfig(base_url="https://sso.test", realm="acme", client_id="tw", client_secret_env=secret_env)
    kc = KeycloakResponder("kc", config, httpx.MockTransport(handler))
    done = kc.revoke(RevocationTarget(kind="family", id="5f0c-sess/portal", client_id="portal"), None)
    assert done.outcome == "done" and "the family's session, every client in it" in done.reason
    saml = kc.revoke(RevocationTarget(kind="family", id="77ab/https://sp.test/saml"), None)  # a URL client id
    assert saml.outcome == "done"
    for not_keycloak in ("fam-1", "/portal", "sess/"):
        assert kc.revoke(RevocationTarget(kind="family", id=not_keycloak), None).outcome == "rejected"
    assert calls == ["token", "DELETE /admin/realms/acme/sessions/5f0c-sess", "DELETE /admin/realms/acme/sessions/77ab"]


def test_okta_revokes_one_refresh_token_by_id(secret_env: str) -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(f"{req.method} {req.url.raw_path.decode()}")
        return httpx.Response(404 if req.url.path.endswith("/gone") else 204)

    okta = OktaResponder("okta", OktaConfig(base_url="https://acme.okta.test", api_token_env=secret_env),
                         httpx.MockTransport(handler))

    def token(token_id: str, hint: str | None = "refresh_token", user: str | None = "00u1") -> RevocationTarget:
        return RevocationTarget(kind="token", id=token_id, user_id=user, client_id="0oa9",
                                token_type_hint=hint)  # type: ignore[arg-type]  # hint is a plain str; pydantic checks the Literal

    assert okta.revoke(token("oar5a"), None).reason == "revoke refresh token: HTTP 204"
    assert okta.revoke(token("oar5b", hint=None), None).outcome == "done"
    assert okta.revoke(token("gone"), None).outcome == "rejected"  # no such refresh token: not "done"
    assert okta.revoke(token("AT.jti", hint="access_token"), None).outcome == "rejected"
    assert okta.revoke(token("oar5c", user=None), None).outcome == "rejected"
    assert calls == ["DELETE /api/v1/users/00u1/clients/0oa9/tokens/oar5a",
                     "DELETE /api/v1/users/00u1/clients/0oa9/tokens/oar5b",
                     "DELETE /api/v1/users/00u1/clients/0oa9/tokens/gone"]


# -- what a body can do ----------------------------------------------------------------------

def test_an_error_body_over_the_cap_or_nested_too_deep_is_not_parsed(secret_env: str) -> None:
    padded = json.dumps({"error": "invalid_client", "pad": "x" * 70_000})
    responder = _rfc7009(secret_env, lambda req: httpx.Response(400, content=padded))
    assert responder.revoke(FAMILY, HANDLE) == ResponderResult.rejected("HTTP 400 bad request", 400)
    deep = "[" * 60_000  # within the cap, past the JSON parser's recursion limit
    nested = _rfc7009(secret_env, lambda req: httpx.Response(400, content=deep))
    assert nested.revoke(FAMILY, HANDLE) == ResponderResult.rejected("HTTP 400 bad request", 400)
    valid = _rfc7009(secret_env, lambda req: httpx.Response(400, json={"error": "invalid_client"}))
    assert valid.revoke(FAMILY, HANDLE).outcome == "config_error"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_the_deadline_cuts_a_dripping_tls_server_mid_headers(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))

    def drip() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"x" * 100:  # 25 s in all, 0.25 s per read
                    tls.sendall(bytes([byte]))
                    time.sleep(0.25)
        except OSError:
            pass

    threading.Thread(target=drip, daemon=True).start()
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(cert)),
                          limits=httpx.Limits(max_keepalive_connections=0))
    started = time.monotonic()
    try:
        with pytest.raises(DeadlineExceeded):
            bounded_request(client, "POST", f"https://127.0.0.1:{listener.getsockname()[1]}/revoke", 1.0, 65_536,
                            data={"token": "t"})
    finally:
        client.close()
        listener.close()
    assert time.monotonic() - started < 1.5
