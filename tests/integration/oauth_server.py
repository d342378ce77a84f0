"""A real OAuth 2.0 authorization server on loopback: Authlib's Flask server with RFC 7009 + RFC 7662.

Grants: password (to mint tokens quickly) and refresh_token with rotation. Rotation is
lenient on purpose (the redeemed refresh token stays valid, as on servers without strict
rotation), so a stolen refresh token can be redeemed again: exactly what tokenwatch detects.
Each token string is one record; tokens minted from one login share a family (the grant).
Revoking a refresh token revokes its whole grant, as RFC 7009 2.1 recommends; revoking an
access token revokes only it. Client ``tokenwatch`` may introspect any token (a resource
server's privilege, RFC 7662). Revocation checks the client as RFC 7009 2.1 asks: Authlib's
``RevocationEndpoint`` answers 400 ``invalid_grant`` unless ``token.check_client`` accepts
the authenticated client. The ``strict_oauth_server`` fixture is that conformant server: a
token is revoked only by the client it was issued to (as Okta, Keycloak and oidc-provider
do); ``oauth_server`` also lets ``tokenwatch`` revoke every token (a privileged revoker,
as some servers allow). Tests inject faults (``fail_next``) and read ``revocations``
(every request that reached the revocation endpoint, with the client it authenticated as).
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask import Flask, Response, request
from werkzeug.serving import make_server

CLIENTS = {"portal": "portal-secret", "mobile": "mobile-secret", "cli": "cli-secret",
           "tokenwatch": "tokenwatch-secret"}
PRIVILEGED = "tokenwatch"
logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request lines in test output
USERS = {"alice": "alice-password", "bob": "bob-password"}


@dataclass
class Client(ClientMixin):
    client_id: str
    secret: str
    revokes_any: bool = False  # a privileged revoker (not RFC 7009-conformant; off on the strict server)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return "http://127.0.0.1/cb"

    def get_allowed_scope(self, scope: str) -> str:
        return scope or "openid"

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return True

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("password", "refresh_token")


@dataclass
class TokenRecord(TokenMixin):
    value: str
    kind: str  # access_token | refresh_token
    client_id: str
    user: str
    family: str
    scope: str
    expires_at: float
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        """RFC 7009 2.1: was this token issued to the client asking? (Authlib's revocation check.)"""
        return client.client_id == self.client_id or client.revokes_any

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> Client:
        return Client(self.client_id, CLIENTS[self.client_id])


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class ServerState:
    tokens: dict[str, TokenRecord] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    revocations: list[dict[str, Any]] = field(default_factory=list)  # every request to /revoke
    lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, value: str, hint: str | None) -> TokenRecord | None:
        record = self.tokens.get(value)
        return record  # hints are only hints (RFC 7009 2.1): search every type


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.state.lookup(token_string, token_type_hint)

    def revoke_token(self, token: TokenRecord, req: Any) -> None:
        with self.server.state.lock:
            token.revoked = True
            if token.kind == "refresh_token":  # the whole grant goes (RFC 7009 2.1)
                for other in self.server.state.tokens.values():
                    if other.family == token.family:
                        other.revoked = True


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        return self.server.state.lookup(token_string, token_type_hint)

    def check_permission(self, token: TokenRecord, client: Client, req: Any) -> bool:
        return client.client_id in (token.client_id, PRIVILEGED)

    def introspect_token(self, token: TokenRecord) -> dict[str, Any]:
        return {"active": True, "client_id": token.client_id, "token_type": token.kind, "username": token.user,
                "sub": token.user, "scope": token.scope, "exp": int(token.expires_at)}


class PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def authenticate_user(self, username: str, password: str) -> str | None:
        return username if USERS.get(username) == password else None


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        record = self.server.state.tokens.get(refresh_token)
        if record and record.kind == "refresh_token" and not record.revoked and not record.is_expired():
            return record
        return None

    def authenticate_user(self, credential: TokenRecord) -> str:
        return credential.user

    def revoke_old_credential(self, credential: TokenRecord) -> None:
        return None  # lenient rotation: see the module docstring


class OAuthServer:
    """The running server: ``url``, token helpers for tests, fault injection, request log."""

    def __init__(self, strict_revocation: bool = False) -> None:
        self.strict_revocation = strict_revocation
        self.state = ServerState()
        app = Flask("tokenwatch-test-idp")
        app.config.update(OAUTH2_REFRESH_TOKEN_GENERATOR=True, OAUTH2_TOKEN_EXPIRES_IN={"password": 3600})
        server = AuthorizationServer(app, query_client=self._client, save_token=self._save)
        server.state = self.state
        server.register_grant(PasswordGrant)
        server.register_grant(RefreshGrant)
        server.register_endpoint(Revocation)
        server.register_endpoint(Introspection)

        @app.post("/token")
        def token() -> Response:
            return server.create_token_response()

        @app.post("/revoke")
        def revoke() -> Response:
            with self.state.lock:
                basic = request.authorization
                self.state.revocations.append({
                    "form": dict(request.form), "basic": basic is not None, "time": time.time(),
                    "client": basic.username if basic is not None else request.form.get("client_id")})
                fault = self.state.faults.pop(0) if self.state.faults else None
            if fault is not None:
                return Response(fault.body, status=fault.status, headers=fault.headers,
                                content_type="application/json")
            return server.create_endpoint_response("revocation")

        @app.post("/introspect")
        def introspect() -> Response:
            return server.create_endpoint_response("introspection")

        self._http = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._http.server_port}"
        self._thread = threading.Thread(target=self._http.serve_forever, name="oauth-server", daemon=True)
        self._thread.start()

    def _client(self, client_id: str) -> Client | None:
        secret = CLIENTS.get(client_id)
        privileged = client_id == PRIVILEGED and not self.strict_revocation
        return Client(client_id, secret, privileged) if secret else None

    def _save(self, token: dict[str, Any], req: Any) -> None:
        parent = getattr(req, "refresh_token", None)
        family = parent.family if isinstance(parent, TokenRecord) else secrets.token_hex(8)
        now, client = time.time(), req.client.client_id
        user = req.user
        with self.state.lock:
            self.state.tokens[token["access_token"]] = TokenRecord(
                token["access_token"], "access_token", client, user, family, token.get("scope", ""),
                now + token["expires_in"])
            if "refresh_token" in token:
                self.state.tokens[token["refresh_token"]] = TokenRecord(
                    token["refresh_token"], "refresh_token", client, user, family, token.get("scope", ""),
                    now + 86_400)

    # -- helpers for tests -------------------------------------------------------------

    def login(self, user: str = "alice", client: str = "portal") -> dict[str, Any]:
        """Password grant: a fresh access + refresh token pair (a new family)."""
        return self._token({"grant_type": "password", "username": user, "password": USERS[user],
                            "scope": "openid read"}, client)

    def refresh(self, refresh_token: str, client: str = "portal") -> dict[str, Any]:
        return self._token({"grant_type": "refresh_token", "refresh_token": refresh_token}, client)

    def revoke_as(self, token: str, client: str) -> httpx.Response:
        """A revocation request authenticated as ``client`` (to show what the server enforces)."""
        return httpx.post(f"{self.url}/revoke", data={"token": token}, auth=(client, CLIENTS[client]), timeout=5)

    def introspect(self, token: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/introspect", data={"token": token},
                              auth=(PRIVILEGED, CLIENTS[PRIVILEGED]), timeout=5)
        response.raise_for_status()
        return response.json()

    def fail_next(self, status: int, count: int = 1, retry_after: str | None = None, body: str = "") -> None:
        """The next ``count`` revocation requests answer ``status`` (with ``Retry-After``)."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self.state.lock:
            self.state.faults.extend(Fault(status, headers, body) for _ in range(count))

    def _token(self, form: dict[str, str], client: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/token", data=form, auth=(client, CLIENTS[client]), timeout=5)
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self._http.shutdown()
        self._thread.join(timeout=5)


@pytest.fixture
def oauth_server() -> Iterator[OAuthServer]:
    server = OAuthServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def strict_oauth_server() -> Iterator[OAuthServer]:
    """The server with RFC 7009's client check and no privileged revoker."""
    server = OAuthServer(strict_revocation=True)
    try:
        yield server
    finally:
        server.close()
