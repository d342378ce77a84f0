"""Okta: clear a user's sessions (and their OAuth tokens), end one session, revoke a grant
or one refresh token by its id.

``DELETE /api/v1/users/{id}/sessions?oauthTokens=true`` (subject),
``DELETE /api/v1/sessions/{id}`` (session), ``DELETE
/api/v1/users/{uid}/clients/{cid}/tokens`` (a family: every refresh token the user granted
that client) and ``DELETE /api/v1/users/{uid}/clients/{cid}/tokens/{tokenId}`` (a token:
Okta's User OAuth 2.0 Token Management API, "revoke a token for a client"). That API knows
refresh tokens only, by the id the System Log names; access tokens need RFC 7009 with a
handle. No handle is needed on any of these paths, and the admin API is not bound to the
token's client. Authenticates with an API token (``Authorization: SSWS …``).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from pipeline.response.config import OktaConfig
from pipeline.response.responders.base import (
    Responder,
    ResponderResult,
    RevocationHandle,
    classify,
    read_secret,
    register,
)
from schemas.actions import RevocationTarget


@register
class OktaResponder(Responder):
    type = "okta"
    kinds = frozenset({"token", "family", "session", "subject"})

    def __init__(self, name: str, config: OktaConfig, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        self._base = config.base_url.rstrip("/") + "/api/v1"
        self._token = read_secret(config.api_token_env, config.api_token_file, f"responder {name} API token")

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        def q(segment: str) -> str:
            return quote(segment, safe="")

        if target.kind == "subject":
            url, what = f"{self._base}/users/{q(target.id)}/sessions?oauthTokens=true", "clear user sessions"
        elif target.kind == "session":
            url, what = f"{self._base}/sessions/{q(target.id)}", "end session"
        elif target.kind == "family" and target.user_id and target.client_id:
            url, what = f"{self._base}/users/{q(target.user_id)}/clients/{q(target.client_id)}/tokens", "revoke grant"
        elif target.kind == "token" and target.token_type_hint == "access_token":
            return ResponderResult.rejected(
                f"okta's admin API revokes refresh tokens only; route {target.label()} to rfc7009 with a handle")
        elif target.kind == "token" and target.user_id and target.client_id:
            url = f"{self._base}/users/{q(target.user_id)}/clients/{q(target.client_id)}/tokens/{q(target.id)}"
            what = "revoke refresh token"
        else:
            return ResponderResult.rejected(f"okta cannot revoke {target.label()} (it needs user and client ids)")
        headers = {"Authorization": "SSWS " + self._token.get_secret_value(), "Accept": "application/json"}
        response = self.send("DELETE", url, headers=headers)
        if isinstance(response, ResponderResult):
            return response
        if response.status_code == 404 and target.kind == "session":
            return ResponderResult.done("session already gone (HTTP 404)", 404)
        if response.status_code == 404 and target.kind == "token":  # gone, or an id that is no refresh token
            return ResponderResult.rejected(
                "revoke refresh token: HTTP 404 (no refresh token of this user and client has that id)", 404)
        return classify(response, what)
