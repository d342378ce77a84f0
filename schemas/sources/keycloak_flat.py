"""What third-party Keycloak event listeners change in the JSON record: the time and the details.

The admin API's ``EventRepresentation`` (and the JSON listeners that copy it) has ``time``
in epoch milliseconds and the details in a ``details`` object. Listeners of the common
"keycloak-event-listener-*" kind flatten it. One flat shape is read, documented in the
README's Keycloak paragraph:

- ``type``, ``realmId``, ``clientId``, ``userId``, ``sessionId``, ``ipAddress``, ``error``
  at the top level, as in the nested shape;
- the time in ``time`` as epoch milliseconds or seconds (a number, or digits in a string:
  below 10^11 it is seconds) or an ISO 8601 string with an offset; without ``time``, the
  first of ``timestamp`` / ``@timestamp`` (a wrapper's log time), read the same way;
- the details in ``details`` or, when a listener flattens them, the detail keys the
  mapping reads (``token_id``, ``refresh_token_id``, …) at the top level; a key in
  ``details`` wins over the same key at the top level.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import MAX_ID, MAX_RESOURCE, cut, epoch_to_utc, iso_to_utc

TIME_KEYS = ("time", "timestamp", "@timestamp")
_MILLIS_FROM = 10**11  # 1973 in milliseconds, year 5138 in seconds
_MAX_TIME_TEXT = 64
_DETAIL_CAPS = {"scope": MAX_RESOURCE, "audience": MAX_RESOURCE, "reason": 2048}


def event_time(raw: Mapping[str, Any]) -> datetime:
    """The event's time from the first time key present (see the module docstring)."""
    for key in TIME_KEYS:
        value = raw.get(key)
        if value is not None:
            try:
                return _time(value, key)
            except InvalidRecord as exc:
                raise InvalidRecord(f"keycloak: {key}: {exc.reason.removeprefix(f'{key}: ')}") from None
    raise InvalidRecord("keycloak: time: Field required (nor timestamp or @timestamp)")


def _time(value: Any, key: str) -> datetime:
    if isinstance(value, bool):
        raise InvalidRecord(f"expected epoch milliseconds or ISO 8601, got {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()[: _MAX_TIME_TEXT + 1]
        if text.isdigit():
            value = int(text[:_MAX_TIME_TEXT])
        else:
            return iso_to_utc(text, key)
    if isinstance(value, (int, float)):
        if isinstance(value, int) and abs(value) > 10**30:
            raise InvalidRecord(f"epoch time out of range: {str(value)[:40]}")
        return epoch_to_utc(value, millis=abs(value) >= _MILLIS_FROM)
    raise InvalidRecord(f"expected epoch milliseconds or ISO 8601, got {type(value).__name__}")


def flat_details(raw: Mapping[str, Any], keys: Iterable[str], ctx: AdapterContext) -> dict[str, str]:
    """The detail keys a listener put at the top level (string values only), bounded as the
    nested ``details`` object's are: a longer value is cut and counted, another type dropped."""
    found: dict[str, str] = {}
    for key in keys:
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            ctx.repairs[f"keycloak.{key}: malformed (dropped)"] += 1
            continue
        cap = _DETAIL_CAPS.get(key, MAX_ID)
        if len(value) > cap:
            ctx.repairs[f"keycloak.{key}: cut"] += 1
            value = cut(value, cap)
        found[key] = value
    return found
