"""Keep raw bearer tokens out of everything we store: keyed hashes only.

A token string that reaches us (an Authorization header, a ``token`` field, a
JWT pasted into a log line) is replaced by ``hmac:<hex>`` computed with a
secret key, so the same token still correlates across events but cannot be
recovered or replayed from alerts, state, logs or dead letters.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any

HASH_PREFIX = "hmac:"

# Keys whose values are credentials wherever they appear in a vendor record.
SECRET_KEYS = frozenset(
    {
        "authorization",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "bearer",
        "sessiontoken",
        "session_token",
        "client_secret",
        "password",
        "secretaccesskey",
        "x-amz-security-token",
        "cookie",
    }
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}")
_SECRET_FIELD = re.compile(
    r'(?i)"(' + "|".join(re.escape(k) for k in sorted(SECRET_KEYS)) + r')"(\s*:\s*)"((?:[^"\\]|\\.)*)(?:"|\\?$)'
)
_BEARER = re.compile(r"(?i)\b(bearer|dpop)\s+([A-Za-z0-9._~+/=-]{8,})")

TokenHasher = Callable[[str], str]


def make_token_hasher(key: bytes) -> TokenHasher:
    """Return a function mapping a raw token to its stable keyed hash id."""
    if len(key) < 16:
        raise ValueError("token hash key must be at least 16 bytes")

    def hash_token(raw: str) -> str:
        if raw.startswith(HASH_PREFIX):
            return raw
        digest = hmac.new(key, raw.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return HASH_PREFIX + digest.hexdigest()[:32]

    return hash_token


def redact_text(text: str, hash_token: TokenHasher) -> str:
    """Replace JWTs, ``Bearer <token>`` and ``"token": "…"`` fields inside free text
    (used for lines that are not, or not entirely, valid JSON)."""
    text = _SECRET_FIELD.sub(
        lambda m: f'"{m.group(1)}"{m.group(2)}"{hash_token(_strip_scheme(m.group(3)))}"', text
    )
    text = _BEARER.sub(lambda m: f"{m.group(1)} {hash_token(m.group(2))}", text)
    return _JWT.sub(lambda m: hash_token(m.group(0)), text)


def redact_value(value: Any, hash_token: TokenHasher) -> Any:
    """Deep-copy a parsed JSON value with every credential replaced by its hash."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.lower() in SECRET_KEYS and isinstance(item, str):
                out[key] = hash_token(_strip_scheme(item))
            else:
                out[key] = redact_value(item, hash_token)
        return out
    if isinstance(value, list):
        return [redact_value(item, hash_token) for item in value]
    if isinstance(value, str):
        return redact_text(value, hash_token) if _looks_secret(value) else value
    return value


def _looks_secret(text: str) -> bool:
    return "eyJ" in text or "earer " in text or "DPoP " in text or "dpop " in text


def _strip_scheme(value: str) -> str:
    match = _BEARER.fullmatch(value.strip())
    return match.group(2) if match else value
