"""A URL in the configuration never carries a secret.

``https://elastic:hunter2@es:9200`` in a config file ends up in backups, repositories,
`config check` output and logs. Every configured URL is therefore refused when it holds
a user or password (RFC 3986 userinfo), with advice on where the secret goes instead.
Messages show the URL with its userinfo masked, never the secret itself.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

MASK = "***"


def has_userinfo(text: str) -> bool:
    """Whether ``text`` is a ``scheme://user[:password]@host`` URL."""
    text = text.strip()
    if "://" not in text or "@" not in text:
        return False
    try:
        return "@" in urlsplit(text).netloc
    except ValueError:  # e.g. an unbalanced IPv6 bracket: not a URL we would use
        return False


def masked_url(text: str) -> str:
    """``text`` with the userinfo of its authority replaced by ``***``."""
    if not has_userinfo(text):
        return text
    scheme, rest = text.strip().split("://", 1)
    authority, sep, tail = rest.partition("/")
    for end in ("?", "#"):
        if end in authority:  # "/" absent: the authority stops at a query or fragment
            authority, _, more = authority.partition(end)
            tail, sep = f"{end}{more}{sep}{tail}", ""
    host = authority.rpartition("@")[2]
    return f"{scheme}://{MASK}@{host}{sep}{tail}"


def refuse_userinfo(text: str, advice: str) -> str:
    """``text`` unchanged, or ``ValueError`` (naming the masked URL and ``advice``) when it holds userinfo."""
    if has_userinfo(text):
        raise ValueError(f"URL {masked_url(text)} carries a user name or password: {advice}")
    return text


def urls_with_userinfo(value: Any, where: str = "") -> Iterator[str]:
    """Dotted keys of every string under ``value`` (dicts and lists, as ``model_dump`` gives)
    that is a URL with userinfo."""
    if isinstance(value, str):
        if has_userinfo(value):
            yield where
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from urls_with_userinfo(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from urls_with_userinfo(item, f"{where}.{index}")
