"""Microsoft Entra ID: revoke every refresh token and session cookie of a user.

``POST https://graph.microsoft.com/v1.0/users/{id}/revokeSignInSessions`` with an app-only
token (client credentials, scope ``https://graph.microsoft.com/.default``, application
permission ``User.RevokeSessions.All``). Entra has no per-session or per-token admin
revocation, so sessions and families fall back to their user (``target.user_id``).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from pipeline.response.config import EntraConfig
from pipeline.response.responders.base import (
    Responder,
    ResponderResult,
    RevocationHandle,
    classify,
    read_secret,
    register,
)
from pipeline.response.responders.client_credentials import ClientCredentials, with_admin_token
from schemas.actions import RevocationTarget


@register
class EntraResponder(Responder):
    type = "entra"
    kinds = frozenset({"family", "session", "subject"})

    def __init__(self, name: str, config: EntraConfig, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        secret = read_secret(config.client_secret_env, config.client_secret_file, f"responder {name} client secret")
        token_url = f"{config.login_url.rstrip('/')}/{quote(config.tenant_id, safe='')}/oauth2/v2.0/token"
        self._cc = ClientCredentials(self, token_url, config.client_id, secret, "https://graph.microsoft.com/.default")

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        user = target.id if target.kind == "subject" else target.user_id
        if not user:
            return ResponderResult.rejected(f"entra revokes per user; {target.label()} has no user id")
        url = f"{self.config.graph_url.rstrip('/')}/users/{quote(user, safe='')}/revokeSignInSessions"
        response = with_admin_token(self, self._cc, "POST", url, "revokeSignInSessions")
        if isinstance(response, ResponderResult):
            return response
        return classify(response, "revokeSignInSessions")
