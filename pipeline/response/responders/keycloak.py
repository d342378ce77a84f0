"""Keycloak admin API: log a user out of every session, or delete one session.

``POST /admin/realms/{realm}/users/{id}/logout`` and ``DELETE
/admin/realms/{realm}/sessions/{session}``, with an admin token from the client-credentials
grant of a service-account client that has the ``realm-management`` role ``manage-users``.
Single tokens and families go through RFC 7009 (Keycloak's revocation endpoint) when a
revocation handle arrived. Without one, a family falls back to its session: a Keycloak
family is ``<sessionId>/<clientId>`` (one client's part of an SSO session), and the admin
API has no call that ends one client's part, so the whole session is deleted, which
invalidates the refresh tokens of every client in it (wider than the family; audited).
"""

from __future__ import annotations

from urllib.parse import quote

import httpx

from pipeline.response.config import KeycloakConfig
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
class KeycloakResponder(Responder):
    type = "keycloak"
    kinds = frozenset({"family", "session", "subject"})

    def __init__(self, name: str, config: KeycloakConfig, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        base = config.base_url.rstrip("/")
        token_realm = quote(config.token_realm or config.realm, safe="")
        secret = read_secret(config.client_secret_env, config.client_secret_file, f"responder {name} client secret")
        self._admin = f"{base}/admin/realms/{quote(config.realm, safe='')}"
        self._cc = ClientCredentials(
            self, f"{base}/realms/{token_realm}/protocol/openid-connect/token", config.client_id, secret, None
        )

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        session: str | None = None
        if target.kind == "session":
            session, what = target.id, "session delete"
        elif target.kind == "family":
            session = family_session(target.id)
            if session is None:
                return ResponderResult.rejected(f"{target.label()} is not a Keycloak family (<sessionId>/<clientId>)")
            what = f"session {session} delete (the family's session, every client in it)"
        elif target.kind == "subject":
            url, method, what = f"{self._admin}/users/{quote(target.id, safe='')}/logout", "POST", "user logout"
        else:
            return ResponderResult.rejected(f"keycloak admin API cannot revoke a {target.kind}; route it to rfc7009")
        if session is not None:
            url, method = f"{self._admin}/sessions/{quote(session, safe='')}", "DELETE"
        response = with_admin_token(self, self._cc, method, url, what)
        if isinstance(response, ResponderResult):
            return response
        if response.status_code == 404 and session is not None:
            return ResponderResult.done(f"{what}: session already gone (HTTP 404)", 404)
        return classify(response, what)


def family_session(family_id: str) -> str | None:
    """The session of a Keycloak family ``<sessionId>/<clientId>``. A client id may hold
    slashes (SAML clients are URLs), a session id never does: split at the first."""
    session, slash, client = family_id.partition("/")
    return session if slash and session and client else None
