"""Seal revocation handles at an Envoy gateway: an ``ext_authz`` HTTP service.

Envoy's ``ext_authz`` HTTP filter asks an HTTP service about every request, sending the
request's method, path and headers (``Authorization`` is always included); a 200 answer
lets the request through. This service never refuses: it seals the verified bearer token to
tokenwatch's public key (HPKE, RFC 9180: X25519 / HKDF-SHA256 / ChaCha20-Poly1305, info
``tokenwatch revocation handle v1``) and returns it in ``x-tokenwatch-handle``. The filter's
``dynamic_metadata_from_headers`` turns that header into dynamic metadata of the namespace
``envoy.filters.http.ext_authz`` (it is not sent upstream nor to the client), and the
access log writes it as ``tokenwatch_handle`` beside the line in tokenwatch's gateway
layout. tokenwatch takes the field out before parsing the line and holds the token in
memory only.

Only a token Envoy verified is sealed (a handle must never carry a token nobody checked):
``jwt_authn`` runs first, requires a valid JWT on every route (no ``allow_missing``, so the
payload header below always comes from Envoy), reads it only from ``Authorization: Bearer``
(its default besides ``?access_token``), and forwards the verified payload (base64url JSON)
in ``x-jwt-payload``. The sealer reads only ``Bearer`` (not ``DPoP``, which jwt_authn does not
read by default) and seals the token only when its ``jti`` equals the verified payload's;
without that header, or for a token without a ``jti`` (opaque), it seals nothing. The
payload is also logged as ``jwt``::

    http_filters:
    - name: envoy.filters.http.jwt_authn
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
        providers:
          idp:
            issuer: https://sso.example.org/realms/main
            remote_jwks: {http_uri: {uri: https://sso.example.org/realms/main/protocol/openid-connect/certs,
                                     cluster: idp, timeout: 2s}}
            forward: true
            forward_payload_header: x-jwt-payload   # the verified payload, for the sealer
            payload_in_metadata: jwt_payload
        rules: [{match: {prefix: /}, requires: {provider_name: idp}}]
    - name: envoy.filters.http.ext_authz
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
        failure_mode_allow: true            # the sealer being down never blocks traffic
        allowed_headers: {patterns: [{exact: authorization}, {exact: x-jwt-payload}]}
        http_service:
          server_uri: {uri: http://127.0.0.1:9191, cluster: tokenwatch_sealer, timeout: 0.25s}
          authorization_response:
            dynamic_metadata_from_headers: {patterns: [{exact: x-tokenwatch-handle}]}
    - name: envoy.filters.http.router
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}

    access_log:
    - name: envoy.access_loggers.file
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
        path: /var/log/envoy/tokenwatch.jsonl
        log_format:
          json_format:
            timestamp: "%START_TIME%"
            request_id: "%REQ(X-REQUEST-ID)%"
            client_ip: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
            method: "%REQ(:METHOD)%"
            path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
            status: "%RESPONSE_CODE%"
            user_agent: "%REQ(USER-AGENT)%"
            jwt: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload)%"
            tokenwatch_handle: "%DYNAMIC_METADATA(envoy.filters.http.ext_authz:x-tokenwatch-handle)%"

Run it beside Envoy (``tokenwatch handles keygen`` made the public key)::

    python -m pipeline.response.reference.envoy_ext_authz_seal --public-key handle-key.pub.pem --port 9191

or serve ``make_app(TokenSealer(...))`` with any WSGI server (``--payload-header`` if the
payload is forwarded under another name). A handle names the token's ``jti`` (the id the
log's ``jwt`` carries) and its ``exp``. The token is never logged here.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.simple_server import make_server

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

HEADER = "x-tokenwatch-handle"
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INFO = b"tokenwatch revocation handle v1"
SCHEMES = ("bearer",)  # RFC 6750, case-insensitive; only what jwt_authn verifies by default
PAYLOAD_HEADER = "x-jwt-payload"  # jwt_authn ``forward_payload_header``: the verified payload
MAX_TOKEN_CHARS = 16_384  # tokenwatch refuses larger ones: do not spend a seal on them


class TokenSealer:
    """Seals one access token into a handle tokenwatch can open and file under the log's id."""

    def __init__(self, public_key_pem: bytes, default_ttl_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, X25519PublicKey):
            raise ValueError("the tokenwatch handle key must be an X25519 public key")
        self._key = key
        self._ttl = default_ttl_s
        self._clock = clock

    def seal(self, token: str) -> str:
        """The base64url handle for ``token`` (an access token)."""
        claims = _jwt_payload(token)
        body: dict[str, Any] = {"token": token, "token_type": "access_token"}
        exp = claims.get("exp")
        finite = isinstance(exp, (int, float)) and not isinstance(exp, bool) and math.isfinite(exp)
        body["exp"] = exp if finite else self._clock() + self._ttl
        if isinstance(claims.get("jti"), str) and claims["jti"]:
            body["token_id"] = claims["jti"]
        if isinstance(claims.get("iss"), str):
            body["issuer"] = claims["iss"]
        sealed = SUITE.encrypt(json.dumps(body).encode(), self._key, info=INFO)
        return base64.urlsafe_b64encode(sealed).decode()


def bearer_token(authorization: str | None) -> str | None:
    """The token of a ``Bearer`` Authorization header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in SCHEMES or not token or len(token) > MAX_TOKEN_CHARS:
        return None
    return token


def verified(token: str, payload_header: str | None) -> bool:
    """Whether ``token`` is the one jwt_authn verified: its ``jti`` equals the ``jti`` of the
    payload jwt_authn forwarded. No header, no ``jti`` or a different one: not verified."""
    if not payload_header:
        return False
    try:
        payload = json.loads(base64.urlsafe_b64decode(payload_header + "=" * (-len(payload_header) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return False
    jti = payload.get("jti") if isinstance(payload, dict) else None
    return isinstance(jti, str) and bool(jti) and _jwt_payload(token).get("jti") == jti


def make_app(sealer: TokenSealer, payload_header: str = PAYLOAD_HEADER
             ) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """The WSGI application Envoy's ``http_service`` calls: always 200, with the handle when
    the request carried the bearer token jwt_authn verified (a failure to seal never blocks
    the request)."""
    environ_key = "HTTP_" + payload_header.upper().replace("-", "_")

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        headers = [("content-length", "0")]
        token = bearer_token(environ.get("HTTP_AUTHORIZATION"))
        if token is not None and verified(token, environ.get(environ_key)):
            try:
                headers.append((HEADER, sealer.seal(token)))
            except Exception:  # noqa: BLE001 -- nothing here may refuse traffic; the message could echo the token
                pass
        start_response("200 OK", headers)
        return [b""]

    return app


def _jwt_payload(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--public-key", required=True, help="tokenwatch's handle public key (PEM)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9191)
    parser.add_argument("--default-ttl", type=float, default=3600.0, help="hold time of a JWT without exp (s)")
    parser.add_argument("--payload-header", default=PAYLOAD_HEADER,
                        help="header jwt_authn forwards the verified payload in (forward_payload_header)")
    args = parser.parse_args(argv)
    with open(args.public_key, "rb") as file:
        sealer = TokenSealer(file.read(), args.default_ttl)
    with make_server(args.host, args.port, make_app(sealer, args.payload_header)) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
