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
``common.cut``. The first occurrence of a key wins. With quoting on, a quote inside a value
is escaped, so a value cannot inject a pair; one that *ends* in a backslash (Keycloak does
not escape backslashes) is told apart by reading the message to its end (``parse_pairs``).
With ``quotes=none`` (and before Keycloak 23) the text is ambiguous by design: a value
holding ``, error=x`` adds that pair when no earlier one of the name was written.
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
MAX_CHOICES = 16  # escaped quotes per value taken as its possible end (a value ending in "\\")
MAX_STARTS = 4 * MAX_PAIRS  # pair starts weighed when a value may end in "\\" (then: contested pairs dropped)
MAX_REPRESENTATION = 1_048_576  # an admin event's JSON object, read only for "enabled" (see keycloak_admin)
_TRACE_KEYS = frozenset({"requestUri", "cookies", "stackTrace"})
_USER_KEYS = ("type", "realmId", "realmName", "clientId", "userId", "sessionId", "ipAddress", "error")
_ADMIN_AUTH_KEYS = ("realmId", "realmName", "clientId", "userId", "ipAddress")
_ADMIN_KEYS = ("operationType", "resourceType", "resourcePath", "error")
_NOT_DETAILS = frozenset({*_USER_KEYS, *_ADMIN_KEYS, "representation", "authSessionParentId", "authSessionTabId"})
_DETAIL_CAPS = {"scope": MAX_RESOURCE, "audience": MAX_RESOURCE, "reason": 2048, "redirect_uri": MAX_RESOURCE}

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,%d}=" % (MAX_KEY - 1))
_BARE_END = re.compile(r", (?=[A-Za-z_][A-Za-z0-9_.\-]{0,%d}=)" % (MAX_KEY - 1))
_UNESCAPED = {q: re.compile(r"(?<!\\)%s" % q) for q in "\"'"}
_ESCAPED_END = {  # an escaped quote that only the next pair, the TRACE context or the end can follow
    q: re.compile(r"(?<=\\)%s(?=\Z|, (?:[A-Za-z_][A-Za-z0-9_.\-]{0,%d}=%s|cookies=\[|stackTrace=))" % (q, MAX_KEY - 1, q))
    for q in "\"'"
}
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
    """``key="value", …`` in any of the listener's quoting styles, bounded; ``"null"`` is None.

    ``sanitize`` escapes the quote but not the backslash, so ``\\"`` is either a quote inside
    a value or the closing quote of a value that ends in a backslash (a username, a
    ``redirect_uri`` or a ``client_id`` the user typed). The reading kept is the one that
    takes the message furthest (to its end or Keycloak's TRACE context; a false reading
    breaks off, or stops at a ``requestUri=`` a value holds); the pairs on which equally
    long readings disagree are dropped. So a value can neither hide the pairs after it nor
    add one of its own (``error``, ``sessionId``, a token id)."""
    if "\\" not in text:
        return _reading(text, prefer_close=False, reach=None)  # the common case: one reading
    reach = _reaches(text)
    escaped = _reading(text, prefer_close=False, reach=reach)
    closing = _reading(text, prefer_close=True, reach=reach)
    return {key: value for key, value in escaped.items() if key in closing and closing[key] == value}


def _reading(text: str, prefer_close: bool, reach: dict[int, int] | None) -> dict[str, str | None]:
    """The pairs of one reading: at a value that may end at more than one quote, the end
    whose rest reads furthest (``reach``), among those the first (``prefer_close``) or the
    last."""
    pairs: dict[str, str | None] = {}
    pos, end, style = 0, len(text), _style(text)
    while pos < end and len(pairs) < MAX_PAIRS:
        step = _step(text, pos, style)
        if step is None:
            break
        key, options = step
        if not options:  # the TRACE context: never read
            break
        ordered = options if prefer_close else options[::-1]
        if reach is not None:
            ordered = sorted(ordered, key=lambda option: -_reach_after(text, option[1], reach))
        value, pos = ordered[0]
        if key not in pairs:
            pairs[key] = None if value == "null" else cut(value, MAX_RESOURCE if key != "representation"
                                                          else MAX_REPRESENTATION)
        if not text.startswith(", ", pos):
            break
        pos += 2
    return pairs


def _reaches(text: str) -> dict[int, int]:
    """For every pair start a reading can come to: how far the furthest reading from there
    goes (the end, a TRACE key's position, or where it breaks off). Iterative: positions
    only grow, so the starts are settled from the last back."""
    style = _style(text)
    steps: dict[int, list[int]] = {}
    stack, seen = [0], {0}
    while stack and len(steps) < MAX_STARTS:
        pos = stack.pop()
        step = _step(text, pos, style)
        steps[pos] = [] if step is None else [after for _, after in step[1]] or [-pos - 1]  # -pos-1: TRACE
        for after in steps[pos]:
            if after >= 0 and text.startswith(", ", after) and after + 2 not in seen:
                seen.add(after + 2)
                stack.append(after + 2)
    reach: dict[int, int] = {}
    for pos in sorted(steps, reverse=True):  # a start not explored (past MAX_STARTS) reaches itself
        reach[pos] = max((-after - 1 if after < 0 else _reach_after(text, after, reach)
                          for after in steps[pos]), default=pos)
    return reach


def _reach_after(text: str, after: int, reach: dict[int, int]) -> int:
    """How far a reading goes once a value ends at ``after``."""
    if after >= len(text):  # a value closed at the end reaches past it; an unterminated one (cut) not
        return len(text) + 1 if after == len(text) else len(text)
    return reach.get(after + 2, after) if text.startswith(", ", after) else after


def _style(text: str) -> str:
    """The quote of the first value (the option ``quotes`` applies to every value), "" if bare."""
    first = _KEY.match(text)
    return text[first.end()] if first and first.end() < len(text) and text[first.end()] in "\"'" else ""


def _step(text: str, pos: int, style: str) -> tuple[str, list[tuple[str, int]]] | None:
    """The pair at ``pos``: its key and each (value, index after it) it may end with, ascending;
    no options for a TRACE key; None when no pair starts there. With quoting on, an unquoted
    value is text some value injected."""
    key_match = _KEY.match(text, pos)
    if key_match is None:
        return None
    key, pos = key_match.group()[:-1], key_match.end()
    if key in _TRACE_KEYS:
        return key, []
    opening = text[pos] if pos < len(text) and text[pos] in "\"'" else ""
    if opening != style and not (style == "" and opening == "'"):  # before 23: bare, '…' with a space
        return None
    if not opening:
        bare_end = _BARE_END.search(text, pos)
        stop = bare_end.start() if bare_end else len(text)
        return key, [(text[pos:stop], stop)]
    return key, _quoted_ends(text, pos + 1, opening)


def _quoted_ends(text: str, start: int, quote: str) -> list[tuple[str, int]]:
    """The values a quoted value from ``start`` may be: it ends at its first unescaped quote,
    or at an escaped one that only the next pair, the TRACE context or the end can follow
    (the value then ends in a backslash); at most ``MAX_CHOICES``. Unterminated (a cut line):
    the rest, "ending" one past the text's end."""
    final = _UNESCAPED[quote].search(text, start)
    limit = final.start() if final else len(text)
    ends: list[int] = []
    for escaped in _ESCAPED_END[quote].finditer(text, start):
        if escaped.start() >= limit or len(ends) == MAX_CHOICES:
            break
        ends.append(escaped.start())
    ends.append(limit)  # past the end when unterminated: "after" is then len(text) + 1
    return [(text[start:close].replace("\\" + quote, quote), close + 1) for close in ends]


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

