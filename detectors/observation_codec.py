"""An ``Observation`` as a plain list of its slots, and back: the one encoding every
changelog record uses for observations (token records, scope records, detector rows).

Slots are written in ``Observation.__slots__`` order; slots appended since an earlier
layout are read as not recorded when a record ends before them.
"""

from __future__ import annotations

from typing import Any

from detectors.state import Observation, intern

_SLOTS = Observation.__slots__
_SCOPES = _SLOTS.index("scopes")  # a tuple: written as a list
# Fields interned like ``Observation.__init__`` and the enricher share them.
_INTERNED = frozenset({
    "kind", "source", "net", "egress", "country", "city", "as_org", "binding", "service", "net_class", "agent",
    "device",
})
_CONVERTED = frozenset({"scopes", "time"})  # a list and a number in records
_MIN_SLOTS = _SLOTS.index("service")  # records of the first layout end before this slot


def encode_observation(obs: Observation) -> list[Any]:
    values = [getattr(obs, name) for name in _SLOTS]
    values[_SCOPES] = list(obs.scopes)
    return values


def decode_observation(values: Any) -> Observation:
    """Rebuild an observation; ``ValueError``/``TypeError`` when ``values`` is not one."""
    if type(values) is not list or not _MIN_SLOTS <= len(values) <= len(_SLOTS):
        raise ValueError("bad observation")
    values = values + [None] * (len(_SLOTS) - len(values))
    obs = Observation()
    for name, value in zip(_SLOTS, values, strict=True):
        if name in _INTERNED and type(value) is str:
            value = intern(value)
        if name not in _CONVERTED:  # set below, once checked (a compiled class checks types)
            setattr(obs, name, value)
    scopes, time = values[_SCOPES], values[_SLOTS.index("time")]
    if scopes and (type(scopes) is not list or not all(type(s) is str for s in scopes)):
        raise TypeError("observation scopes must be a list of strings")
    obs.scopes = intern(tuple(scopes)) if scopes else ()
    if type(time) not in (int, float):
        raise TypeError("observation without a time")
    obs.time = float(time)
    return obs


def encode_optional(obs: Observation | None) -> list[Any] | None:
    return None if obs is None else encode_observation(obs)


def decode_optional(values: Any) -> Observation | None:
    return None if values is None else decode_observation(values)
