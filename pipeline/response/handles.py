"""Revocation handles: the token string RFC 7009 needs, held only in memory.

tokenwatch never stores raw tokens: events carry keyed hashes. To revoke through RFC 7009 a
source (an API gateway plugin, an IdP event hook) may send, beside its event, the token
sealed to tokenwatch's public key with HPKE (RFC 9180 base mode, X25519 / HKDF-SHA256 /
ChaCha20-Poly1305, ``info`` = ``tokenwatch revocation handle v1``), base64url-encoded. The
plaintext is JSON ``{"token", "token_type": "access_token"|"refresh_token", "exp": epoch
seconds, "family_id"?, "token_id"?, "issuer"?, "client_id"?}`` (``client_id``: the client the
token was issued to, whose credentials RFC 7009 revocation must use). Handles are decrypted into this process's
memory only, indexed by token id and family, dropped at expiry, and never written to
alerts, logs, Elasticsearch, Kafka or dead letters. After a restart they are gone until the
source sends them again (a replay from the committed Kafka offset does).

The public key is not a secret, so a handle proves nothing about its sender. What keeps a
forged handle from steering a revocation (RFC 7009 answers 200 for any string, so a wrong
token would look revoked):

- **Bound to its id.** A token answers to its keyed hash (``hmac:…``, the id events carry
  for opaque tokens) and, for a JWT (three base64url parts with a JSON payload, read
  without checking the signature), to its ``jti`` (the id IdP and gateway logs carry). A
  claimed ``token_id`` must be one of those; without one, the ``jti`` is used, else the
  hash. Only the holder of an opaque token can produce its hash; a JWT's ``jti`` can be
  claimed by anyone who saw it, so for JWTs the next rule is what holds.
- **First one wins.** A different token for an id already filed is refused and counted
  (``conflict``); the same token again is a no-op. A forger must therefore arrive before the
  genuine source, and a race lost by the source shows as a conflict count.
- **Capped.** Expiry is the earliest of the sealed ``exp``, a JWT's own ``exp`` and now +
  ``handle_max_ttl_s``. At most ``handle_max_count`` handles and ``handle_max_bytes`` of
  them are held; when full, expired handles are purged and, if that is not enough, the new
  handle is refused (``full``). Nothing held is evicted: a flood of junk must not free the
  id of a genuine handle for a forger's token.
- **Believed only when named.** A handle's ``family_id`` is the sender's word; the executor
  uses a handle for a family only when the alert itself names its token id (see
  ``pipeline.response.executor``).

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
import binascii
import heapq
import hmac
import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import SecretStr
from typing_extensions import TypeIs  # typing has it from Python 3.13

from pipeline.response.responders.base import RevocationHandle
from pipeline.secrets import SecretError
from schemas.actions import RevocationTarget
from schemas.redaction import HASH_PREFIX

if TYPE_CHECKING:
    from pipeline.response.config import ResponseConfig

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
INFO = b"tokenwatch revocation handle v1"
ENV_KEY = "TOKENWATCH_HANDLE_KEY"  # PEM X25519 private key
ENV_KEY_FILE = "TOKENWATCH_HANDLE_KEY_FILE"
TOKEN_TYPES = ("access_token", "refresh_token")
MAX_TOKEN_CHARS = 16_384
"""Longest token a handle may carry: far above real JWTs (a few KB) and what servers accept in
a header (8-16 KB); a larger one is refused before it costs memory."""
MAX_SEALED_CHARS = 4 * (MAX_TOKEN_CHARS + 2_048) // 3 + 64
"""Longest sealed handle opened: base64 of the largest plaintext plus the HPKE overhead."""
HANDLE_OVERHEAD_BYTES = 320
"""What one held handle costs beside its strings (objects, dict and heap slots), for the byte cap."""


class HandleError(ValueError):
    """A sealed handle that cannot be opened or is malformed (the message never holds the token)."""

    counted_as: ClassVar[str] = "refused"


class HandleUnbound(HandleError):
    """The token in the handle does not answer to the token id the handle claims."""

    counted_as = "unbound"


class HandleConflict(HandleError):
    """A different token is already filed under this token id: the first one stays."""

    counted_as = "conflict"


class HandleFull(HandleError):
    """The store is at its caps even after purging expired handles: the new handle is refused,
    the held ones stay (evicting them would let a flood free a genuine handle's id)."""

    counted_as = "full"


@dataclass(frozen=True)
class HandleLimits:
    """How many handles, how many bytes of them and how long each may be held."""

    max_count: int = 100_000
    max_bytes: int = 64 * 1024 * 1024
    max_ttl_s: float = 86_400.0


def limits_from(config: ResponseConfig) -> HandleLimits:
    """The ``[response]`` handle limits."""
    return HandleLimits(config.handle_max_count, config.handle_max_bytes, config.handle_max_ttl_s)


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


def load_public_key(data: bytes, where: str) -> X25519PublicKey:
    """The public key sources seal to (PEM), or a ``SecretError`` naming ``where``."""
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise SecretError(f"{where} is not a PEM public key") from None
    if not isinstance(key, X25519PublicKey):
        raise SecretError(f"{where} is not an X25519 public key")
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
    """What a source does: seal a token to tokenwatch's public key (tests, benchmark, ``handles seal``)."""
    body = {"token": token, "token_type": token_type, "exp": exp, **extra}
    return base64.urlsafe_b64encode(SUITE.encrypt(json.dumps(body).encode(), public_key, info=INFO)).decode()


def jwt_claims(token: str) -> Mapping[str, Any] | None:
    """The payload of a JWS compact token, or None for anything else (opaque, JWE, garbage).
    Unverified on purpose: it names the id the token answers to, it does not vouch for it."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[1]:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, RecursionError):  # a payload of 10,000 "[" is the sender's choice
        return None
    return claims if isinstance(claims, dict) else None


def _finite(value: Any) -> TypeIs[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class HandleStore:
    """Decrypted handles by token id (and by family), in memory, bounded, purged at expiry;
    thread-safe. ``counts`` says what happened to every handle offered (never its content)."""

    def __init__(self, private_key: X25519PrivateKey, hash_token: Callable[[str], str],
                 clock: Callable[[], float] = time.time, limits: HandleLimits | None = None) -> None:
        self._key = private_key
        self._hash = hash_token
        self._clock = clock
        self.limits = limits or HandleLimits()
        self._by_id: dict[str, RevocationHandle] = {}
        self._by_family: dict[str, set[str]] = {}
        self._expiry: list[tuple[float, int, str]] = []  # min-heap: (expires_at, sequence, token_id)
        self._seq = 0
        self._bytes = 0
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"HandleStore({len(self)} handles)"

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def accept(self, sealed: str | bytes) -> str:
        """Open, bind and file a sealed handle; returns the token id it answers to.
        Raises ``HandleError`` (``HandleUnbound``, ``HandleConflict``) when it is refused."""
        try:
            handle = self._bind(self._open(sealed))
        except HandleError as exc:
            with self._lock:
                self.counts[exc.counted_as] += 1
            raise
        with self._lock:
            return self._file(handle)

    def _open(self, sealed: str | bytes) -> Mapping[str, Any]:
        if len(sealed) > MAX_SEALED_CHARS:
            raise HandleError(f"revocation handle longer than {MAX_SEALED_CHARS} characters")
        try:
            raw = base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4) if isinstance(sealed, str) else sealed)
            body = json.loads(SUITE.decrypt(raw, self._key, info=INFO))
        except Exception:  # noqa: BLE001 -- wrong key, tampered, truncated, not JSON: all the same to the caller
            raise HandleError("revocation handle cannot be opened (wrong key or corrupted)") from None
        if not isinstance(body, dict):
            raise HandleError("revocation handle is not a JSON object")
        return body

    def _bind(self, body: Mapping[str, Any]) -> RevocationHandle:
        """The handle, filed under an id its token answers to, with its expiry capped."""
        token, kind, exp = body.get("token"), body.get("token_type"), body.get("exp")
        if not isinstance(token, str) or not token or kind not in TOKEN_TYPES or not _finite(exp):
            raise HandleError("revocation handle lacks token, token_type (access_token|refresh_token) or a finite exp")
        if len(token) > MAX_TOKEN_CHARS:
            raise HandleError(f"revocation handle token longer than {MAX_TOKEN_CHARS} characters")
        if token.startswith(HASH_PREFIX):  # the hasher passes ids through: an id is not a token
            raise HandleUnbound("revocation handle carries a token id, not a token")
        claims = jwt_claims(token) or {}
        jti = claims.get("jti") if isinstance(claims.get("jti"), str) and claims.get("jti") else None
        claimed = body.get("token_id")
        if claimed is None:
            token_id = jti or self._hash(token)
        elif isinstance(claimed, str) and claimed and claimed in (jti, self._hash(token)):
            token_id = claimed
        else:
            raise HandleUnbound("revocation handle token does not hash to the token id it claims")
        caps = [self._clock() + self.limits.max_ttl_s]
        if _finite(claims.get("exp")):
            caps.append(float(claims["exp"]))
        expires_at = min(float(exp), *caps)
        return RevocationHandle(token_id, SecretStr(token), kind, expires_at, _opt(body.get("family_id")),
                                _opt(body.get("issuer")), _opt(body.get("client_id")))

    def _file(self, handle: RevocationHandle) -> str:
        """Keep ``handle`` unless it is dead, a repeat or a rival; then hold the caps (lock held)."""
        token_id = handle.token_id
        held = self._by_id.get(token_id)
        if held is not None and held.expires_at > self._clock():
            if hmac.compare_digest(held.token.get_secret_value(), handle.token.get_secret_value()):
                self.counts["duplicate"] += 1
                return token_id
            self.counts[HandleConflict.counted_as] += 1
            raise HandleConflict("a different revocation handle is already held for this token id")
        if handle.expires_at <= self._clock():
            self.counts["expired"] += 1
            return token_id  # already useless: not kept
        if held is not None:  # expired but not purged yet: its successor may take the id
            self._drop(token_id)
        cost = _cost(handle)
        if not self._room_for(cost):
            self.counts[HandleFull.counted_as] += 1
            raise HandleFull("revocation handle store is full (handle_max_count / handle_max_bytes)")
        self._by_id[token_id] = handle
        if handle.family_id is not None:
            self._by_family.setdefault(handle.family_id, set()).add(token_id)
        self._seq += 1
        heapq.heappush(self._expiry, (handle.expires_at, self._seq, token_id))
        self._bytes += cost
        self.counts["accepted"] += 1
        return token_id

    def _room_for(self, cost: int) -> bool:
        """Whether one more handle of ``cost`` bytes fits, after purging expired ones (lock held)."""
        def fits() -> bool:
            return len(self._by_id) < self.limits.max_count and self._bytes + cost <= self.limits.max_bytes
        if fits():
            return True
        self._purge_expired(self._clock())
        return fits()

    def _purge_expired(self, now: float) -> int:
        """Forget handles expired at ``now`` (lock held); returns how many went."""
        gone = 0
        while self._expiry and self._expiry[0][0] <= now:
            if self._pop_soonest() is not None:
                gone += 1
        return gone

    def _pop_soonest(self) -> str | None:
        """Forget the handle that expires first (lock held); stale heap entries are skipped."""
        while self._expiry:
            expires_at, _, token_id = heapq.heappop(self._expiry)
            held = self._by_id.get(token_id)
            if held is not None and held.expires_at == expires_at:
                self._drop(token_id)
                return token_id
        return None

    def _drop(self, token_id: str) -> None:
        handle = self._by_id.pop(token_id)
        self._bytes -= _cost(handle)
        if handle.family_id is not None:
            members = self._by_family.get(handle.family_id, set())
            members.discard(token_id)
            if not members:
                self._by_family.pop(handle.family_id, None)

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
                ids: set[str] = {target.id}
            elif target.kind == "family":
                ids = set(self._by_family.get(target.id, ()))
            else:
                ids = set()
            found = [h for h in (self._by_id.get(i) for i in ids) if h is not None]
        live = [h for h in found if h.expires_at > now]
        return sorted(live, key=lambda h: (h.token_type != "refresh_token", h.token_id))

    def purge(self, now: float | None = None) -> int:
        """Forget expired handles; returns how many went."""
        now = self._clock() if now is None else now
        with self._lock:
            return self._purge_expired(now)


def _cost(handle: RevocationHandle) -> int:
    extra = len(handle.family_id or "") + len(handle.issuer or "") + len(handle.client_id or "")
    return HANDLE_OVERHEAD_BYTES + len(handle.token.get_secret_value()) + 2 * len(handle.token_id) + extra


def _opt(value: Any) -> str | None:
    return str(value) if value is not None else None
