"""An admin access token from the client-credentials grant, cached until shortly before expiry.

Keycloak and Entra admin APIs take a bearer token that tokenwatch obtains as a
confidential client; a 401 from the admin API drops the cached token once.
"""

from __future__ import annotations

import threading
import time

from pydantic import SecretStr

from pipeline.response.responders.base import Responder, ResponderResult, classify
from pipeline.response.responders.http import Reply


class ClientCredentials:
    def __init__(self, responder: Responder, token_url: str, client_id: str, secret: SecretStr, scope: str | None) -> None:
        self._responder = responder
        self._url, self._client_id, self._secret, self._scope = token_url, client_id, secret, scope
        self._token: SecretStr | None = None
        self._expires = 0.0
        self._lock = threading.Lock()

    def bearer(self) -> str | ResponderResult:
        """``Bearer …`` header value, or the result that explains why there is none."""
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires:
                got = self._fetch()
                if isinstance(got, ResponderResult):
                    return got
            assert self._token is not None
            return "Bearer " + self._token.get_secret_value()

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _fetch(self) -> ResponderResult | None:
        form = {"grant_type": "client_credentials", "client_id": self._client_id,
                "client_secret": self._secret.get_secret_value()}
        if self._scope:
            form["scope"] = self._scope
        response = self._responder.send("POST", self._url, data=form)
        if isinstance(response, ResponderResult):
            return response
        if response.status_code != 200:
            result = classify(response, "admin token endpoint")
            if response.status_code in (400, 401):  # invalid_client / unauthorized_client: our settings
                return ResponderResult.config_error(f"admin token: {result.reason}", response.status_code)
            return result
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), float(body.get("expires_in", 60))
        except (ValueError, KeyError, TypeError):
            return ResponderResult.retry(None, "admin token endpoint returned no access_token")
        self._token = SecretStr(token)
        self._expires = time.monotonic() + max(0.0, expires_in - 30)
        return None


def with_admin_token(
    responder: Responder, cc: ClientCredentials, method: str, url: str, what: str, **kwargs: object
) -> Reply | ResponderResult:
    """Call an admin API with the cached token; on 401 fetch a fresh token and try once more."""
    for attempt in (1, 2):
        bearer = cc.bearer()
        if isinstance(bearer, ResponderResult):
            return bearer
        response = responder.send(method, url, headers={"Authorization": bearer, "Accept": "application/json"}, **kwargs)
        if isinstance(response, ResponderResult) or response.status_code != 401 or attempt == 2:
            return response
        cc.invalidate()
    raise AssertionError("unreachable")
