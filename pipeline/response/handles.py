"""Revocation handles: the token string RFC 7009 needs, held only in memory.

tokenwatch never stores raw tokens: events carry keyed hashes. To revoke through RFC 7009 a
source (an API gateway plugin, an IdP event hook) may send, beside its event, the token
sealed to tokenwatch's public key with HPKE (RFC 9180 base mode, X25519 / HKDF-SHA256 /
ChaCha20-Poly1305, ``info`` = ``tokenwatch revocation handle v1``), base64url-encoded. The
plaintext is JSON ``{"token", "token_type": "access_token"|"refresh_token", "exp": epoch
seconds, "family_id"?, "token_id"?, "issuer"?}``; ``token_id`` defaults to the keyed hash
of the token (the id the event carries). Handles are decrypted into this process's memory
only, indexed by token id and family, dropped at the token's expiry, and never written to
alerts, logs, Elasticsearch, Kafka or dead letters. After a restart they are gone until the
source sends them again (a replay from the committed Kafka offset does).

Revocation path per source (configure ``[response] routes`` accordingly):

- Keycloak: single tokens and families through its RFC 7009 endpoint
  (``/realms/{realm}/protocol/openid-connect/revoke``) when a handle arrived; sessions and
  subjects through the admin API (``keycloak`` responder). Without a handle, a family falls
  back to the session's logout.
- Okta: families through the admin API (revoke the user's grant to the client), sessions
  and subjects through ``/users/{id}/sessions?oauthTokens=true`` (``okta``); single tokens
  through Okta's RFC 7009 ``/oauth2/{server}/v1/revoke`` with a handle.
- Entra ID (sign-in logs, Graph): no per-token revocation exists; every target goes to the
  user's ``revokeSignInSessions`` (``entra``). Access tokens stay valid until they expire
  (about an hour) unless the resource supports CAE.
- API gateways and resource servers (gateway logs): RFC 7009 at the issuing IdP with a
  handle the gateway plugin sealed; sessions and subjects through the IdP's adapter.
- Kubernetes service-account tokens and AWS CloudTrail temporary credentials: no RFC 7009
  revocation; alerts stay ``approve``/``notify`` (rotate the key or delete the bound pod).
- Any SSF/CAEP receiver (SaaS apps that accept Shared Signals): ``caep`` pushes
  ``session-revoked`` for sessions and subjects, alongside the IdP adapter.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import SecretStr

from pipeline.response.responders.base import RevocationHandle
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INFO = b"tokenwatch revocation handle v1"
ENV_KEY = "TOKENWATCH_HANDLE_KEY"  # PEM X25519 private key
ENV_KEY_FILE = "TOKENWATCH_HANDLE_KEY_FILE"
_TYPES = {"access_token", "refresh_token"}


class HandleError(ValueError):
    """A sealed handle that cannot be opened or is malformed (the message never holds the token)."""


def load_private_key(pem: str | None = None, path: Path | None = None) -> X25519PrivateKey:
    """The handle key from ``pem``, ``path``, ``$TOKENWATCH_HANDLE_KEY`` or ``$TOKENWATCH_HANDLE_KEY_FILE``."""
    data: bytes | None = pem.encode() if pem else None
    where = "argument"
    if data is None:
        file = path or (Path(os.environ[ENV_KEY_FILE]) if os.environ.get(ENV_KEY_FILE) else None)
        if os.environ.get(ENV_KEY) and path is None:
            data, where = os.environ[ENV_KEY].encode(), f"${ENV_KEY}"
        elif file is not None:
            try:
                data, where = file.read_bytes(), str(file)
            except OSError as exc:
                raise SecretError(f"cannot read the handle key from {file}: {exc.strerror}") from None
    if data is None:
        raise SecretError(f"no revocation-handle key: set {ENV_KEY} or {ENV_KEY_FILE} (PEM X25519 private key)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError:
        raise SecretError(f"the handle key from {where} is not a PEM private key") from None
    if not isinstance(key, X25519PrivateKey):
        raise SecretError(f"the handle key from {where} is not an X25519 key")
    return key


def generate_key_pem() -> tuple[str, str]:
    """A new (private PEM, public PEM) pair: the private part for tokenwatch, the public for sources."""
    key = X25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return private, public_pem(key.public_key())


def public_pem(key: X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def seal(public_key: X25519PublicKey, token: str, token_type: str, exp: float, **extra: Any) -> str:
    """What a source does: seal a token to tokenwatch's public key (used by tests and the benchmark)."""
    body = {"token": token, "token_type": token_type, "exp": exp, **extra}
    return base64.urlsafe_b64encode(SUITE.encrypt(json.dumps(body).encode(), public_key, info=INFO)).decode()


class HandleStore:
    """Decrypted handles by token id (and by family), in memory, purged at expiry; thread-safe."""

    def __init__(self, private_key: X25519PrivateKey, hash_token: Callable[[str], str],
                 clock: Callable[[], float] = time.time) -> None:
        self._key = private_key
        self._hash = hash_token
        self._clock = clock
        self._by_id: dict[str, RevocationHandle] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HandleStore({len(self)} handles)"

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def accept(self, sealed: str | bytes) -> str:
        """Open a sealed handle and keep it; returns the token id it is filed under."""
        try:
            raw = base64.urlsafe_b64decode(sealed + ("=" * (-len(sealed) % 4) if isinstance(sealed, str) else b""))
            body = json.loads(SUITE.decrypt(raw, self._key, info=INFO))
        except Exception:  # wrong key, tampered, truncated, not JSON: all the same to the caller
            raise HandleError("revocation handle cannot be opened (wrong key or corrupted)") from None
        token, kind, exp = body.get("token"), body.get("token_type"), body.get("exp")
        if not isinstance(token, str) or not token or kind not in _TYPES or not isinstance(exp, (int, float)):
            raise HandleError("revocation handle lacks token, token_type (access_token|refresh_token) or exp")
        token_id = body.get("token_id") or self._hash(token)
        handle = RevocationHandle(str(token_id), SecretStr(token), kind, float(exp),
                                  _opt(body.get("family_id")), _opt(body.get("issuer")))
        if handle.expires_at <= self._clock():
            return handle.token_id  # already useless: not kept
        with self._lock:
            self._by_id[handle.token_id] = handle
        return handle.token_id

    def get(self, token_id: str) -> RevocationHandle | None:
        with self._lock:
            handle = self._by_id.get(token_id)
        return handle if handle is not None and handle.expires_at > self._clock() else None

    def for_target(self, target: RevocationTarget) -> list[RevocationHandle]:
        """Handles that revoke ``target``: the token itself, or every live token of the family
        (refresh tokens first: revoking one revokes its grant on most servers)."""
        now = self._clock()
        with self._lock:
            if target.kind == "token":
                found = [h for h in (self._by_id.get(target.id),) if h is not None]
            elif target.kind == "family":
                found = [h for h in self._by_id.values() if h.family_id == target.id]
            else:
                found = []
        live = [h for h in found if h.expires_at > now]
        return sorted(live, key=lambda h: (h.token_type != "refresh_token", h.token_id))

    def purge(self, now: float | None = None) -> int:
        """Forget expired handles; returns how many went."""
        now = self._clock() if now is None else now
        with self._lock:
            dead = [k for k, h in self._by_id.items() if h.expires_at <= now]
            for k in dead:
                del self._by_id[k]
        return len(dead)


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None
