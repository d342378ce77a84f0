"""Keep credentials out of everything we store or print: keyed hashes only.

A credential that reaches us (an Authorization header, a ``refreshToken`` field,
a JWT pasted into a user agent, ``?access_token=`` in a request path, an AWS
secret key in a CloudTrail record) is replaced by ``hmac:<hex>`` computed with
a secret key, so the same token still correlates across events but cannot be
recovered or replayed from alerts, state, logs or dead letters.

Two independent nets, because an attacker chooses both the names and the places:

* **by key** (``is_secret_key``): a field whose name, in any case or separator
  style (``refreshToken``, ``x-refresh-token``, ``X-Api-Key``, ``SessionToken``),
  contains one of ``SECRET_NAME_PARTS`` holds a credential, whatever its value
  (string, number, every element of a list, every leaf of an object). Names that
  end in one of ``KEEP_NAME_SUFFIXES`` (``tokenId``, ``uniqueTokenIdentifier``,
  ``incomingTokenType``, ``credential-id``, ``TokenIssuedAt``) are identifiers or
  metadata that tokenwatch and its analysts need, and are kept readable.
* **by value** (``redact_text``): JWT/JWE-shaped strings, ``Bearer``/``DPoP``/
  ``Basic`` credentials, AWS session tokens and secret keys, credential query
  parameters, ``Cookie:``/``Authorization:`` headers and ``"name": value`` pairs
  in JSON-ish or ``key=value`` text, wherever they sit.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote

HASH_PREFIX = "hmac:"

MAX_DEPTH = 64
"""Deeper subtrees of a redacted value are replaced by ``DEPTH_MARKER``: bounded work
and stack for a hostile record, far beyond any real vendor record."""
DEPTH_MARKER = f"[redacted: nested deeper than {MAX_DEPTH} levels]"
FAILED_MARKER = "[redacted: value could not be redacted]"

SECRET_NAME_PARTS = (
    "token", "secret", "password", "passwd", "passphrase", "pwd", "apikey", "authorization",
    "cookie", "credential", "signature", "bearer", "assertion", "privatekey",
)
"""Substrings of a lower-cased, separator-free field name that mark a credential.
``signature`` covers presigned-URL and SAS signatures; ``assertion`` the JWT/SAML
client assertions; ``credential`` AWS ``credentials`` blocks and SigV4 scopes."""

KEEP_NAME_SUFFIXES = (
    "id", "ids", "identifier", "type", "types", "kind", "method", "issuer", "name", "status",
    "decision", "reason", "expiration", "expiry", "expires", "expiresat", "expiresin", "issuedat",
    "createdat", "lifetime", "seconds", "ttl", "count", "length", "endpoint", "url", "uri",
)
"""Endings of a separator-free field name that make it an identifier or metadata about
a credential, not the credential itself; their values still get the by-value checks."""

STRING_SECRET_NAMES = frozenset({"code"})
"""Names that hold a credential when their value is a string: an OAuth authorization
``code`` in a token request body (a numeric ``code`` is an HTTP or error status)."""

URL_SECRET_PARAMS = frozenset({"code", "sig", "key", "jsessionid", "phpsessid"})
"""Query parameters that are credentials although their names are not secret-looking
(OAuth authorization code, Azure SAS ``sig``, API ``key``, URL-rewritten sessions);
any parameter ``is_secret_key`` accepts (``access_token``, ``client_secret``,
``X-Amz-Signature``, ``id_token``, …) is one as well."""

TokenHasher = Callable[[str], str]
NameKind = Literal["keep", "secret", "plain"]

_DENY = re.compile("|".join(SECRET_NAME_PARTS))
_KEEP = re.compile("(?:" + "|".join(KEEP_NAME_SUFFIXES) + ")$")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")

# The name of a "name": value, name=value or Name: value pair inside text; whether it
# is a secret's is decided by is_secret_key in the callback.
_TEXT_FIELD = re.compile(
    r"(?<![\w.\-/\\])(?P<q>\\?[\"']?)(?P<key>[\w.\-/]{1,128})(?P=q)"
    r"(?P<sep>\s*[:=]\s*)"
    r"(?P<value>\"(?:[^\"\\]|\\.)*(?:\"|\\?$)"  # JSON string, possibly cut at the end of the text
    r"|\\\"(?:[^\\]|\\[^\"])*\\\""  # string inside an escaped JSON string
    r"|'[^'\n]*'?"  # Python repr
    r"|\[[^\[\]]*\]?"  # flat list
    r"|(?:(?:bearer|dpop|basic|digest|negotiate|ssws|token|aws4-hmac-sha256)\s+)?[^\s,;&\"'<>{}\[\]()\\]+)",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"\\\"((?:[^\\]|\\[^\"])*)\\\"|\"((?:[^\"\\]|\\.)*)\"|'([^']*)'|(-?[\w.+/=:-]+)")
_COOKIE_HEADER = re.compile(r"(?<![\w-])((?:set-)?cookie[ \t]*:[ \t]*)([^\r\n\"\\]+)", re.IGNORECASE)
_QUERY = re.compile(r"([?&;#])([\w.\-%\[\]]{1,64})=([^&#;\s\"'<>\\]*)")
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^\s/@:\"']*:)([^\s/@\"']+)(@)", re.IGNORECASE)
_SCHEME = re.compile(r"\b(bearer|dpop|ssws)(\s+)([A-Za-z0-9._~+/=-]{8,})", re.IGNORECASE)
_BASIC = re.compile(r"\b(basic\s+)([A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])", re.IGNORECASE)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,4}")
# STS session tokens are base64 of a protobuf-like header: a tag byte, "\n", a length, then
# "er/aws…" (FwoGZXIvYXdz, FQoGZXIvYXdz), "origin_ec…" (IQoJb3JpZ2lu) or "aws…" (AQoDYXdz).
_AWS_SESSION = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{2}o(?:GZXIvYXdz|Jb3JpZ2lu|DYXdz)[A-Za-z0-9+/=%]{16,}")
# A 40-character secret access key printed next to its access key id (CSV, env dumps).
_AWS_KEY_PAIR = re.compile(r"\b((?:AKIA|ASIA)[A-Z0-9]{16})([^A-Za-z0-9/+]{1,24})([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])")
# Cheap lower-case substrings without which redact_text has nothing to find.
_HINTS = (
    "token", "secret", "pass", "pwd", "key", "auth", "cookie", "credential", "signature", "bearer",
    "assertion", "dpop", "ssws", "basic", "eyj", "code", "sig=", "sessid", "://", "akia", "asia",
    "ogzxivyxdz", "ojb3jpz2lu", "odyxdz",
)
_INERT = frozenset({"", "null", "none", "true", "false", "<redacted>"})


def make_token_hasher(key: bytes) -> TokenHasher:
    """Return a function mapping a raw token to its stable keyed hash id."""
    if len(key) < 16:
        raise ValueError("token hash key must be at least 16 bytes")

    def hash_token(raw: str) -> str:
        if raw.startswith(HASH_PREFIX):
            return raw
        return HASH_PREFIX + hmac.digest(key, raw.encode("utf-8", "surrogatepass"), "sha256").hex()[:32]

    return hash_token


def is_secret_key(name: str) -> bool:
    """Whether a field named ``name`` holds a credential (module docstring: by key)."""
    return _kind(name) == "secret"


def _kind(name: str) -> NameKind:
    """``keep`` (an identifier-like name), ``secret`` or ``plain``."""
    return _classify(name) if len(name) <= 256 else _classify.__wrapped__(name)


@functools.lru_cache(maxsize=4096)
def _classify(name: str) -> NameKind:
    flat = _NOT_ALNUM.sub("", name.lower())
    if _KEEP.search(flat):
        return "keep"
    return "secret" if _DENY.search(flat) else "plain"


def redact_value(value: Any, hash_token: TokenHasher) -> Any:
    """A JSON-ready copy of a parsed value with every credential replaced by its hash.

    Never raises: subtrees deeper than ``MAX_DEPTH`` become ``DEPTH_MARKER``, non-string
    keys become strings, and anything unexpected yields ``FAILED_MARKER`` (fail closed).
    """
    try:
        return _redact(value, hash_token, 0, False)
    except Exception:  # noqa: BLE001 -- a record that cannot be redacted must not leave in clear
        return FAILED_MARKER


def _redact(value: Any, hash_token: TokenHasher, depth: int, secret: bool) -> Any:
    if isinstance(value, str):
        return _hash_secret(value, hash_token) if secret else redact_text(value, hash_token)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _hash_number(value, hash_token) if secret else value
    if depth >= MAX_DEPTH:
        return DEPTH_MARKER
    if isinstance(value, (dict, Mapping)):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if isinstance(key, str) else _as_text(key)
            kind = _kind(name)
            # An identifier-like name (``accessKeyId`` inside ``credentials``) stays readable.
            child = kind == "secret" or kind == "plain" and (secret or _is_string_secret(name, item))
            out[name] = _redact(item, hash_token, depth + 1, child)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_redact(item, hash_token, depth + 1, secret) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return _redact(bytes(value).decode("utf-8", "replace"), hash_token, depth, secret)
    if not secret:
        return value
    text = _as_text(value)
    return FAILED_MARKER if text is FAILED_MARKER else _hash_secret(text, hash_token)


def _is_string_secret(name: str, value: object) -> bool:
    return isinstance(value, str) and name.lower() in STRING_SECRET_NAMES


def _hash_secret(value: str, hash_token: TokenHasher) -> str:
    if value.strip().lower() in _INERT:
        return value
    return hash_token(_strip_scheme(value))


def _hash_number(value: int | float, hash_token: TokenHasher) -> str:
    try:
        return hash_token(str(value))
    except ValueError:  # an int too long for str(): still a secret, never printed
        return FAILED_MARKER


def _as_text(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 -- a hostile __str__
        return FAILED_MARKER


def _strip_scheme(value: str) -> str:
    """``Bearer x`` / ``DPoP x`` -> ``x``, so the hash equals the adapters' token id."""
    parts = value.strip().split(None, 1)
    if len(parts) == 2 and parts[0].lower() in ("bearer", "dpop"):
        return parts[1].strip()
    return value


def redact_text(text: str, hash_token: TokenHasher) -> str:
    """Free text (a line that is not valid JSON, a log message, a string field) with
    every credential the module docstring lists replaced by its hash."""
    lowered = text.lower()
    if not _has_hint(lowered):
        return text
    if "cookie" in lowered:
        text = _COOKIE_HEADER.sub(lambda m: m.group(1) + _hash_secret(m.group(2).strip(), hash_token), text)
    if ":" in text or "=" in text:
        text = _TEXT_FIELD.sub(lambda m: _redact_field(m, hash_token), text)
    text = redact_url(text, hash_token)
    if "bearer" in lowered or "dpop" in lowered or "ssws" in lowered:
        text = _SCHEME.sub(lambda m: m.group(1) + m.group(2) + hash_token(m.group(3)), text)
    if "basic" in lowered:
        text = _BASIC.sub(lambda m: m.group(1) + hash_token(m.group(2)) if _is_basic(m.group(2)) else m.group(0), text)
    if "oGZXIvYXdz" in text or "oJb3JpZ2lu" in text or "oDYXdz" in text:
        text = _AWS_SESSION.sub(lambda m: hash_token(m.group(0)), text)
    if "AKIA" in text or "ASIA" in text:
        text = _AWS_KEY_PAIR.sub(lambda m: m.group(1) + m.group(2) + hash_token(m.group(3)), text)
    return text


def _has_hint(lowered: str) -> bool:
    for hint in _HINTS:
        if hint in lowered:
            return True
    return False


def _redact_field(match: re.Match[str], hash_token: TokenHasher) -> str:
    key, value = match.group("key"), match.group("value")
    head = match.group(0)[: match.start("value") - match.start(0)]
    if not (is_secret_key(key) or _is_string_secret(key, value) and value[:1] in ("'", '"')):
        if value[:1] in ("'", '"', "\\"):  # a quoted value may itself hold "Name: secret" text
            return head + _TEXT_FIELD.sub(lambda m: _redact_field(m, hash_token), value)
        return match.group(0)
    if value.startswith("["):
        return head + _LIST_ITEM.sub(lambda m: _redact_item(m, hash_token), value)
    if value.startswith('\\"'):
        return head + '\\"' + _hash_secret(value[2:-2], hash_token) + '\\"'
    if value[:1] in ('"', "'"):
        quote = value[0]
        closed = len(value) > 1 and value.endswith(quote) and not value.endswith("\\" + quote)
        inner = value[1:-1] if closed else value[1:]  # a string cut at the end of the text
        return head + quote + _hash_secret(_unescape(inner), hash_token) + quote
    scheme, _, rest = value.partition(" ")
    if rest.strip():
        return head + scheme + " " + _hash_secret(rest.strip(), hash_token)
    return head + _hash_secret(value, hash_token)


def _redact_item(match: re.Match[str], hash_token: TokenHasher) -> str:
    escaped, double, single, bare = match.groups()
    if escaped is not None:
        return '\\"' + _hash_secret(escaped, hash_token) + '\\"'
    if double is not None:
        return '"' + _hash_secret(_unescape(double), hash_token) + '"'
    if single is not None:
        return "'" + _hash_secret(single, hash_token) + "'"
    return _hash_secret(bare, hash_token)


def _unescape(inner: str) -> str:
    """The JSON string's value, so text and parsed records hash a token alike."""
    if "\\" not in inner:
        return inner
    try:
        value = json.loads('"' + inner + '"')
    except ValueError:
        return inner
    return value if isinstance(value, str) else inner


def _is_basic(candidate: str) -> bool:
    """``Basic`` followed by base64 of ``user:password`` (not the word in a sentence)."""
    try:
        return b":" in base64.b64decode(candidate, validate=True)
    except (binascii.Error, ValueError):
        return False


def redact_url(text: str, hash_token: TokenHasher) -> str:
    """A URL or path with credential query parameters (RFC 6750 §2.3 ``?access_token=``,
    OAuth ``code``, ``client_secret``, SAS ``sig``, … see ``URL_SECRET_PARAMS``), a password
    in its userinfo and any JWT in it replaced by keyed hashes; the rest stays readable."""
    if "=" in text:
        text = _QUERY.sub(lambda m: _redact_param(m, hash_token), text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(lambda m: m.group(1) + hash_token(unquote(m.group(2))) + m.group(3), text)
    if "eyJ" in text:
        text = _JWT.sub(lambda m: hash_token(m.group(0)), text)
    return text


def _redact_param(match: re.Match[str], hash_token: TokenHasher) -> str:
    sep, name, value = match.groups()
    plain = unquote(name)
    if not value or not (plain.lower() in URL_SECRET_PARAMS or is_secret_key(plain)):
        return match.group(0)
    rest = ""
    if sep == ";" and "?" in value:  # a path parameter (;jsessionid=…) ends where the query starts
        value, rest = value.split("?", 1)
        rest = redact_url("?" + rest, hash_token)
    return f"{sep}{name}={hash_token(_strip_scheme(unquote(value)))}{rest}"
