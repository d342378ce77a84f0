"""What the geo-divergence detector remembers per session, and its changelog codec.

A session spans several tokens whose own state may be forgotten first, so each
remembered location carries enough to be cited as evidence on its own.
"""

from __future__ import annotations

import math
import sys
from typing import Any, ClassVar, Final

from detectors.tables import register_codec

MAX_SESSION_POINTS = 32
"""Most locations kept per session (the ``session_history`` option's upper bound)."""


class SessionPoint:
    """One located event of a session: compact, yet enough to describe it once
    the token's own state has forgotten the event.

    This and ``SessionTrail`` are plain classes, not frozen dataclasses: compiled, those are
    built by their Python-generated ``__init__`` (about ten times the cost), and every
    located event of a session builds one of each."""

    __slots__: ClassVar[tuple[str, ...]] = (
        "time", "lat", "lon", "accuracy_km", "token_id", "event_id", "kind", "source", "country", "city", "asn",
        "as_org", "ip",
    )

    def __init__(
        self, time: float, lat: float, lon: float, accuracy_km: float | None, token_id: str, event_id: str,
        kind: str, source: str, country: str | None, city: str | None, asn: int | None, as_org: str | None,
        ip: str | None,
    ) -> None:
        self.time: Final = time
        self.lat: Final = lat
        self.lon: Final = lon
        self.accuracy_km: Final = accuracy_km
        self.token_id: Final = token_id
        self.event_id: Final = event_id
        self.kind: Final = kind
        self.source: Final = source
        self.country: Final = country
        self.city: Final = city
        self.asn: Final = asn
        self.as_org: Final = as_org
        self.ip: Final = ip  # the address, or the cloud service that called

    def __eq__(self, other: object) -> bool:
        """Same facts: a point restored from a changelog equals its original."""
        if not isinstance(other, SessionPoint):
            return NotImplemented
        return _fields(self) == _fields(other)

    def __repr__(self) -> str:
        return f"SessionPoint{_fields(self)!r}"


class SessionTrail:
    """A session's latest located events, oldest first (never empty)."""

    __slots__: ClassVar[tuple[str, ...]] = ("points",)

    def __init__(self, points: tuple[SessionPoint, ...]) -> None:
        self.points: Final = points

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionTrail):
            return NotImplemented
        return self.points == other.points

    def __repr__(self) -> str:
        return f"SessionTrail({self.points!r})"


def _fields(point: SessionPoint) -> tuple[Any, ...]:
    return (
        point.time, point.lat, point.lon, point.accuracy_km, point.token_id, point.event_id, point.kind, point.source,
        point.country, point.city, point.asn, point.as_org, point.ip,
    )


def _encode_point(point: SessionPoint) -> list[Any]:
    return [
        point.time, _number_out(point.lat), _number_out(point.lon),
        None if point.accuracy_km is None else _number_out(point.accuracy_km),
        point.token_id, point.event_id, point.kind, point.source, point.country, point.city, point.asn,
        point.as_org, point.ip,
    ]


def _decode_point(values: Any) -> SessionPoint:
    if type(values) is not list:
        raise TypeError("session point must be a list")
    time, lat, lon, accuracy, token_id, event_id, kind, source, country, city, asn, as_org, ip = values
    if type(time) not in (int, float):
        raise TypeError("session point: time must be a number")
    if asn is not None and type(asn) is not int:
        raise TypeError("session point: asn must be an integer")
    return SessionPoint(
        float(time), _number_in(lat), _number_in(lon), None if accuracy is None else _number_in(accuracy),
        _text(token_id), _text(event_id), sys.intern(_text(kind)), sys.intern(_text(source)),
        _interned(country), _interned(city), asn, _interned(as_org), _optional(ip),
    )


def encode_trail(trail: SessionTrail) -> list[Any]:
    return [_encode_point(point) for point in trail.points]


def decode_trail(values: Any) -> SessionTrail:
    if type(values) is not list or not 0 < len(values) <= MAX_SESSION_POINTS:
        raise ValueError(f"session trail must be a list of 1 to {MAX_SESSION_POINTS} points")
    return SessionTrail(tuple(_decode_point(point) for point in values))


def _number_out(value: float) -> float | str:
    """A float as JSON: orjson writes inf and nan as null, so those travel as their repr."""
    return value if math.isfinite(value) else repr(value)


def _number_in(value: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    if value in ("inf", "-inf", "nan"):
        return float(value)
    raise TypeError("session point: coordinate must be a number")


def _text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError("session point: expected a string")
    return value


def _optional(value: Any) -> str | None:
    return None if value is None else _text(value)


def _interned(value: Any) -> str | None:
    return None if value is None else sys.intern(_text(value))


SESSION_TRAIL = register_codec("geo_divergence.session_trail", encode_trail, decode_trail)
