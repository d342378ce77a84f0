"""RFC 7009 token revocation: the one path every OAuth 2.0 server offers.

It needs the token string (a revocation handle a source supplied). Form-encoded
``token`` + ``token_type_hint``, client authentication ``client_secret_basic`` (id and
secret form-encoded first, RFC 6749 2.3.1) or ``client_secret_post``. 200 means done, also
for a token the server does not know (RFC 7009 2.2); 400 ``unsupported_token_type`` is
rejected; 400 ``invalid_client`` and 401 are configuration errors (never retried);
429/503/5xx and timeouts are retried, honouring ``Retry-After``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote

import httpx
from pydantic import Field

from pipeline.response.responders.base import (
    ResponderConfig,
    Responder,
    ResponderResult,
    RevocationHandle,
    classify,
    read_secret,
    register,
)
from schemas.actions import RevocationTarget


class Rfc7009Config(ResponderConfig):
    type: Literal["rfc7009"] = "rfc7009"
    revocation_endpoint: str = Field(description="The server's revocation_endpoint (from its metadata)")
    client_id: str = Field(description="Client tokenwatch authenticates as (must be allowed to revoke)")
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="File holding the client secret")


@register
class Rfc7009Responder(Responder):
    type = "rfc7009"
    kinds = frozenset({"token", "family"})  # a family is revoked through its refresh token(s)
    needs_handle = True

    def __init__(self, name: str, config: Rfc7009Config, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        self._secret = read_secret(config.client_secret_env, config.client_secret_file, f"responder {name} client secret")

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        if handle is None:
            return ResponderResult.rejected(f"no revocation handle for {target.label()}: RFC 7009 needs the token")
        cfg: Rfc7009Config = self.config
        form = {"token": handle.token.get_secret_value()}
        hint = handle.token_type or target.token_type_hint
        if hint:
            form["token_type_hint"] = hint
        auth: tuple[str, str] | None = None
        secret = self._secret.get_secret_value()
        if cfg.auth_method == "client_secret_basic":
            auth = (quote(cfg.client_id, safe=""), quote(secret, safe=""))
        else:
            form |= {"client_id": cfg.client_id, "client_secret": secret}
        response = self.send("POST", cfg.revocation_endpoint, data=form, auth=auth, headers={"Accept": "application/json"})
        if isinstance(response, ResponderResult):
            return response
        return self._outcome(response)

    @staticmethod
    def _outcome(response: httpx.Response) -> ResponderResult:
        status = response.status_code
        if status == 200:
            return ResponderResult.done("revoked (HTTP 200)", status)
        if status == 400:
            error = _oauth_error(response)
            if error == "invalid_client":
                return ResponderResult.config_error("HTTP 400 invalid_client (check client id and secret)", status)
            if error == "unauthorized_client":
                return ResponderResult.config_error("HTTP 400 unauthorized_client (client may not revoke)", status)
            return ResponderResult.rejected(f"HTTP 400 {error or 'bad request'}", status)
        if status == 401:
            return ResponderResult.config_error("HTTP 401 client authentication failed (check client id and secret)", status)
        return classify(response, "revocation endpoint")


def _oauth_error(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None
