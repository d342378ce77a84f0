"""Keycloak's ``jboss-logging`` event listener: its text, as a plain log line or inside a JSON log record.

The listener (Keycloak's default) writes one log message per event on the category
``org.keycloak.events``, as ``key=value`` pairs (Keycloak source
``services/.../events/log/JBossLoggingEventListenerProvider.java``; options in the server
configuration guide, "all provider config: jboss-logging": ``quotes`` and ``sanitize``):

- a user event: ``type``, ``realmId``, ``realmName``, ``clientId``, ``userId``,
  ``sessionId`` (only when the event has one), ``ipAddress``, ``error`` (only on failure),
  then each detail as its own pair (``token_id="…"``), then ``authSessionParentId`` /
  ``authSessionTabId``;
- an admin event: ``operationType``, ``realmId``/``realmName``/``clientId``/``userId``/
  ``ipAddress`` of the *admin* (its auth details), ``resourceType``, ``resourcePath``,
  ``error``, details, and ``representation`` when ``include-representation`` is on;
- values are quoted with ``"`` (option ``quotes``: ``"``, ``'`` or ``none``); ``sanitize``
  turns line breaks into spaces and escapes the quote character as ``\\"``. A missing value
  is written ``"null"``. Before Keycloak 23 values were bare, and details with a space in
  ``'…'``, with no ``sessionId``.
- At TRACE level Keycloak appends ``requestUri``, ``cookies=[…]`` and ``stackTrace``: the
  parse stops there (cookies hold session tokens and are never read).

The message carries no time: it comes from the log record. Two containers are read:

- a plain line in Keycloak's default console/file pattern ``%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p
  [%c] (%t) %s%e%n`` (server guide, "Console logging"); the pattern has no zone, so the time
  is read as UTC;
- a JSON log record (``--log-console-output=json``: ``timestamp``, ``loggerName``,
  ``message``; ``--log-console-json-format=ecs``: ``@timestamp``, ``log.logger``,
  ``message``; server guide, "Configuring JSON or plain console logging" and "Use
  different JSON format for log handlers").

A plain line is turned into the JSON record Quarkus would have written for it
(``log_line_record``), so both containers take one path: the message is parsed into the
record the JSON listeners write (``event_record``) and mapped by ``KeycloakFormat``.

Bounds: at most ``MAX_PAIRS`` pairs, keys of ``MAX_KEY`` characters, values cut with
``common.cut``. The first occurrence of a key wins. A quote is only ever a value's end
when not escaped, so a value cannot inject a pair; a value that *ends* in a backslash
(Keycloak does not escape backslashes) swallows the pairs after it in that message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import MAX_ID, MAX_RESOURCE, cut, iso_to_utc

LOGGER_KEYS = ("loggerName", "log.logger")  # Quarkus JSON, ECS
TIME_KEYS = ("timestamp", "@timestamp")
MAX_PAIRS = 256
MAX_KEY = 64
MAX_REPRESENTATION = 65_536  # an admin event's JSON object, read only for "enabled"
_TRACE_KEYS = frozenset({"requestUri", "cookies", "stackTrace"})
_USER_KEYS = ("type", "realmId", "realmName", "clientId", "userId", "sessionId", "ipAddress", "error")
_ADMIN_AUTH_KEYS = ("realmId", "realmName", "clientId", "userId", "ipAddress")
_ADMIN_KEYS = ("operationType", "resourceType", "resourcePath", "error")
_NOT_DETAILS = frozenset({*_USER_KEYS, *_ADMIN_KEYS, "representation", "authSessionParentId", "authSessionTabId"})
_DETAIL_CAPS = {"scope": MAX_RESOURCE, "audience": MAX_RESOURCE, "reason": 2048, "redirect_uri": MAX_RESOURCE}

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,%d}=" % (MAX_KEY - 1))
_BARE_END = re.compile(r", (?=[A-Za-z_][A-Za-z0-9_.\-]{0,%d}=)" % (MAX_KEY - 1))
# %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c] (%t) %s
_LINE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:[,.](?P<frac>\d{1,9}))?"
    r" +(?P<level>[A-Z]{3,5}) +\[(?P<logger>(?:org|o)\.(?:keycloak|k)(?:\.[A-Za-z0-9_$]{1,64}){0,12})\]"
    r" +\((?P<thread>[^\n]{0,256}?)\) (?P<message>.*)",
    re.DOTALL,
)


# -- containers ---------------------------------------------------------------------
def log_line_record(line: bytes) -> dict[str, Any] | None:
    """The JSON log record Keycloak would have written for a plain log line of one of its
    ``org.keycloak`` loggers in the default pattern; None for any other line."""
    if not line[:4].isdigit():
        return None
    text = line.decode("utf-8", "replace").rstrip("\r")
    found = _LINE.fullmatch(text)
    if found is None:
        return None
    frac = (found["frac"] or "0")[:6].ljust(6, "0")
    stamp = f"{found['date'].replace(' ', 'T')}.{frac}+00:00"  # the default pattern has no zone: UTC
    return {"timestamp": stamp, "level": found["level"], "loggerName": found["logger"],
            "threadName": found["thread"], "message": found["message"]}


def logger_of(raw: Mapping[str, Any]) -> str | None:
    """The logger of a Keycloak JSON log record (Quarkus or ECS keys), if ``raw`` is one."""
    if not isinstance(raw.get("message"), str):
        return None
    for key in LOGGER_KEYS:
        value = raw.get(key)
        if isinstance(value, str) and value.startswith(("org.keycloak", "o.k.")):
            return value
    return None


def is_event_message(logger: str, message: str) -> bool:
    """The events logger (``org.keycloak.events``; ``o.k.events`` when a pattern abbreviates it)."""
    return logger.rsplit(".", 1)[-1] in ("events", "e") and message.startswith(("type=", "operationType="))


def record_time(raw: Mapping[str, Any]) -> datetime:
    """The log record's time (ISO 8601 with an offset), the only time the message has."""
    for key in TIME_KEYS:
        if key in raw:
            return iso_to_utc(raw[key], f"keycloak: {key}")
    raise InvalidRecord("keycloak: timestamp: Field required (the log record's time, timestamp or @timestamp)")


# -- the message ------------------------------------------------------------------------
def parse_pairs(text: str) -> dict[str, str | None]:
    """``key="value", …`` in any of the listener's quoting styles, bounded; ``"null"`` is None."""
    pairs: dict[str, str | None] = {}
    pos, end = 0, len(text)
    while pos < end and len(pairs) < MAX_PAIRS:
        key_match = _KEY.match(text, pos)
        if key_match is None:
            break
        key = key_match.group()[:-1]
        if key in _TRACE_KEYS:
            break
        pos = key_match.end()
        if pos < end and text[pos] in "\"'":
            value, pos = _quoted(text, pos + 1, text[pos])
        else:
            bare_end = _BARE_END.search(text, pos)
            stop = bare_end.start() if bare_end else end
            value, pos = text[pos:stop], stop
        if key not in pairs:
            pairs[key] = None if value == "null" else cut(value, MAX_RESOURCE if key != "representation"
                                                          else MAX_REPRESENTATION)
        if not text.startswith(", ", pos):
            break
        pos += 2
    return pairs


def _quoted(text: str, pos: int, quote: str) -> tuple[str, int]:
    """A quoted value from ``pos`` (after the opening quote) and the index after its closing
    quote; only a backslash right before the quote escapes it (Keycloak's ``sanitize``)."""
    parts: list[str] = []
    start = pos
    while True:
        close = text.find(quote, pos)
        if close == -1:  # unterminated (a cut line): the rest is the value
            parts.append(text[start:])
            return "".join(parts), len(text)
        if close > start and text[close - 1] == "\\":
            parts.append(text[start:close - 1] + quote)
            start = pos = close + 1
            continue
        parts.append(text[start:close])
        return "".join(parts), close + 1


def event_record(message: str, time: datetime, ctx: AdapterContext) -> dict[str, Any]:
    """The record a JSON listener writes for the same event: a user event in the shape of
    the admin API's ``EventRepresentation``, an admin event in that of
    ``AdminEventRepresentation``; values bounded to what the vendor models accept."""
    pairs = parse_pairs(message)
    millis = round(time.timestamp() * 1000)
    details = {key: _bound(value, _DETAIL_CAPS.get(key, MAX_ID), "details", ctx)
               for key, value in pairs.items() if key not in _NOT_DETAILS and value is not None}
    if message.startswith("operationType="):
        auth = {key: _bound(pairs.get(key), MAX_ID, key, ctx) for key in _ADMIN_AUTH_KEYS}
        record = {key: _bound(pairs.get(key), MAX_RESOURCE, key, ctx) for key in _ADMIN_KEYS}
        # The message names only the admin's realm; the resource's realm is not logged.
        return {"time": millis, "realmId": auth["realmId"], "authDetails": auth, **record,
                "representation": pairs.get("representation"), "details": details}
    record = {key: _bound(pairs.get(key), 512 if key == "error" else MAX_ID, key, ctx) for key in _USER_KEYS}
    record["ipAddress"] = pairs.get("ipAddress")  # a forwarded-for chain: common.client_address bounds it
    return {"time": millis, **record, "details": details}


def _bound(value: str | None, cap: int, key: str, ctx: AdapterContext) -> str | None:
    if value is not None and len(value) > cap:
        ctx.repairs[f"keycloak.{key}: cut"] += 1  # a field name of ours, never the message's
        return cut(value, cap)
    return value

