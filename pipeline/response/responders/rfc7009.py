"""RFC 7009 token revocation: the one path every OAuth 2.0 server offers.

It needs the token string (a revocation handle a source supplied). Form-encoded
``token`` + ``token_type_hint``, client authentication ``client_secret_basic`` (id and
secret form-encoded first, RFC 6749 2.3.1) or ``client_secret_post``. 200 means done, also
for a token the server does not know (RFC 7009 2.2); 400 ``unsupported_token_type`` is
rejected; 400 ``invalid_client`` / ``invalid_grant`` and 401 are configuration errors (never
retried); 429/503/5xx and timeouts are retried, honouring ``Retry-After``.

The server "verifies whether the token was issued to the client making the revocation
request" (RFC 7009 2.1) and refuses otherwise: Okta ("a client may only revoke its own
tokens"), Keycloak and oidc-provider all do. So each token is revoked as the client it was
issued to, with that client's credentials from ``clients``; a token of a client without
credentials there is never sent under another client's name. A single ``client_id`` is
only for servers that let one privileged client revoke every token.
"""

from __future__ import annotations

from urllib.parse import quote

import httpx
from pydantic import SecretStr

from pipeline.response.config import AuthMethod, Rfc7009Config
from pipeline.response.responders.base import (
    Responder,
    ResponderResult,
    RevocationHandle,
    classify,
    read_secret,
    register,
)
from pipeline.response.responders.http import Reply
from schemas.actions import RevocationTarget


class _Credentials:
    """One client's id, secret and authentication method, ready to send."""

    def __init__(self, client_id: str, secret: SecretStr, method: AuthMethod) -> None:
        self.client_id, self._secret, self.method = client_id, secret, method

    def __repr__(self) -> str:
        return f"_Credentials({self.client_id!r}, {self.method})"

    def apply(self, form: dict[str, str]) -> tuple[str, str] | None:
        """Basic auth (form-encoded parts, RFC 6749 2.3.1) or the form fields for post."""
        secret = self._secret.get_secret_value()
        if self.method == "client_secret_basic":
            return quote(self.client_id, safe=""), quote(secret, safe="")
        form |= {"client_id": self.client_id, "client_secret": secret}
        return None


@register
class Rfc7009Responder(Responder):
    type = "rfc7009"
    kinds = frozenset({"token", "family"})  # a family is revoked through its refresh token(s)
    needs_handle = True

    def __init__(self, name: str, config: Rfc7009Config, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        self._privileged: _Credentials | None = None
        self._clients: dict[str, _Credentials] = {}
        if config.client_id is not None:
            secret = read_secret(config.client_secret_env, config.client_secret_file, f"responder {name} client secret")
            self._privileged = _Credentials(config.client_id, secret, config.auth_method)
        for client_id, ref in config.clients.items():
            secret = read_secret(ref.client_secret_env, ref.client_secret_file,
                                 f"responder {name} client secret of {client_id!r}")
            self._clients[client_id] = _Credentials(client_id, secret, ref.auth_method)

    def fallback(self) -> str | None:
        name: str | None = self.config.fallback
        return name

    def credentials_for(self, target: RevocationTarget, handle: RevocationHandle) -> _Credentials | ResponderResult:
        """The credentials of the client the token was issued to (the handle's word, else the
        alert's), or why there are none. Never another client's."""
        if self._privileged is not None:
            return self._privileged
        if handle.client_id and target.client_id and handle.client_id != target.client_id:
            return ResponderResult.rejected(
                f"the handle names client {handle.client_id!r} but the alert client {target.client_id!r}: not sent")
        client = handle.client_id or target.client_id
        if not client:
            return ResponderResult.rejected(
                f"the client of {target.label()} is unknown: RFC 7009 revokes a token only as its own client")
        credentials = self._clients.get(client)
        if credentials is None:
            return ResponderResult.config_error(
                f"no credentials for client {client!r} (add [response.responders.{self.name}.clients.{client}])")
        return credentials

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        if handle is None:
            return ResponderResult.rejected(f"no revocation handle for {target.label()}: RFC 7009 needs the token")
        credentials = self.credentials_for(target, handle)
        if isinstance(credentials, ResponderResult):
            return credentials
        form = {"token": handle.token.get_secret_value()}
        hint = handle.token_type or target.token_type_hint
        if hint:
            form["token_type_hint"] = hint
        auth = credentials.apply(form)
        response = self.send("POST", self.config.revocation_endpoint, data=form, auth=auth,
                             headers={"Accept": "application/json"})
        if isinstance(response, ResponderResult):
            return response
        return _outcome(response, credentials.client_id)


def _outcome(response: Reply, client_id: str) -> ResponderResult:
    status = response.status_code
    if status == 200:
        return ResponderResult.done(f"revoked as client {client_id!r} (HTTP 200)", status)
    if status == 400:
        error = _oauth_error(response)
        if error == "invalid_client":
            return ResponderResult.config_error(f"HTTP 400 invalid_client (check the secret of {client_id!r})", status)
        if error == "unauthorized_client":
            return ResponderResult.config_error(f"HTTP 400 unauthorized_client ({client_id!r} may not revoke)", status)
        if error == "invalid_grant":  # Authlib's answer when the token is another client's
            return ResponderResult.config_error(
                f"HTTP 400 invalid_grant (the token was not issued to {client_id!r})", status)
        return ResponderResult.rejected(f"HTTP 400 {error or 'bad request'}", status)
    if status == 401:
        return ResponderResult.config_error(
            f"HTTP 401 client authentication failed (check the id and secret of {client_id!r})", status)
    return classify(response, "revocation endpoint")


def _oauth_error(response: Reply) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
