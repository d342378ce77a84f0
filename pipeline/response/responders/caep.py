"""CAEP ``session-revoked``: a signed Security Event Token pushed to a receiver (RFC 8935).

For receivers that enforce sessions themselves (SSF / Shared Signals): tokenwatch is the
transmitter. The SET (RFC 8417) is a JWT signed with our key (``typ: secevent+jwt``)
carrying the CAEP event ``https://schemas.openid.net/secevent/caep/event-type/session-revoked``
for the subject (``sub_id``: the user, plus the session when the target is one), POSTed as
``application/secevent+jwt``. 202 means accepted; a 400 carries ``{"err", "description"}``
(RFC 8935 2.3): ``authentication_failed`` / ``invalid_key`` / ``access_denied`` are our
configuration, the others reject this event.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

import httpx
from joserfc import jwk, jwt

from pipeline.response.config import CaepConfig
from pipeline.response.responders.base import (
    Responder,
    ResponderResult,
    RevocationHandle,
    classify,
    read_secret,
    register,
)
from pipeline.response.responders.http import Reply
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget

SESSION_REVOKED = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
_KEY_TYPES: dict[str, Literal["EC", "RSA", "OKP"]] = {"ES256": "EC", "RS256": "RSA", "PS256": "RSA", "EdDSA": "OKP"}
_CONFIG_ERRORS = {"authentication_failed", "invalid_key", "access_denied", "invalid_issuer", "invalid_audience"}


@register
class CaepResponder(Responder):
    type = "caep"
    kinds = frozenset({"session", "subject"})

    def __init__(self, name: str, config: CaepConfig, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(name, config, transport)
        pem = read_secret(config.signing_key_env, config.signing_key_file, f"responder {name} signing key")
        kty = _KEY_TYPES[config.algorithm]
        try:
            self._key = jwk.import_key(pem.get_secret_value().encode(), kty)
        except Exception as exc:  # noqa: BLE001 -- joserfc raises various errors for a bad PEM; never echo the key
            raise SecretError(f"responder {name} signing key is not a {kty} private key: {type(exc).__name__}") from None
        self._auth = None
        if config.auth_token_env or config.auth_token_file:
            self._auth = read_secret(config.auth_token_env, config.auth_token_file, f"responder {name} push token")

    def build_set(self, target: RevocationTarget, now: float | None = None) -> str:
        """The signed SET for ``target`` (public so tests and receivers' docs can show one)."""
        cfg: CaepConfig = self.config
        issued = int(now if now is not None else time.time())
        user = target.id if target.kind == "subject" else target.user_id
        user_ref: dict[str, Any] = {"format": "iss_sub", "iss": cfg.subject_issuer or cfg.issuer, "sub": user or target.id}
        sub_id: dict[str, Any] = user_ref
        if target.kind == "session":
            sub_id = {"format": "complex", "session": {"format": "opaque", "id": target.id}}
            if user:
                sub_id["user"] = user_ref
        claims = {
            "iss": cfg.issuer,
            "aud": cfg.audience,
            "iat": issued,
            "jti": uuid.uuid4().hex,
            "sub_id": sub_id,
            "events": {SESSION_REVOKED: {"event_timestamp": issued, "initiating_entity": "policy",
                                         "reason_admin": {"en": "tokenwatch detected token misuse"}}},
        }
        header = {"alg": cfg.algorithm, "typ": "secevent+jwt"}
        if cfg.key_id:
            header["kid"] = cfg.key_id
        return jwt.encode(header, claims, self._key, algorithms=[cfg.algorithm])

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        headers = {"Content-Type": "application/secevent+jwt", "Accept": "application/json"}
        if self._auth is not None:
            headers["Authorization"] = "Bearer " + self._auth.get_secret_value()
        response = self.send("POST", self.config.endpoint, content=self.build_set(target), headers=headers)
        if isinstance(response, ResponderResult):
            return response
        if response.status_code == 202:
            return ResponderResult.done("SET accepted (HTTP 202)", 202)
        if response.status_code == 400:
            err, description = _set_error(response)
            reason = f"receiver rejected the SET: {err}" + (f" ({description})" if description else "")
            if err in _CONFIG_ERRORS:
                return ResponderResult.config_error(reason, 400)
            return ResponderResult.rejected(reason, 400)
        return classify(response, "SET push")


def _set_error(response: Reply) -> tuple[str, str | None]:
    try:
        body = response.json()
    except ValueError:
        return "unknown", None
    if not isinstance(body, dict):
        return "unknown", None
    description = body.get("description")
    return str(body.get("err", "unknown")), (str(description)[:200] if description else None)
