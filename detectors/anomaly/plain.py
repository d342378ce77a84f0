"""Type checks for decoding the anomaly detector's changelog rows.

Rows come back from a Kafka topic: each field is checked for the type its dataclass
declares, and a wrong one raises ``TypeError`` (the restore names the record)."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def maybe_text(value: Any) -> str | None:
    return None if value is None else text(value)


def number(value: Any) -> float:
    if type(value) is not float and type(value) is not int:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def maybe_number(value: Any) -> float | None:
    return None if value is None else number(value)


def whole(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def maybe_whole(value: Any) -> int | None:
    return None if value is None else whole(value)


def maybe_flag(value: Any) -> bool | None:
    if value is not None and type(value) is not bool:
        raise TypeError(f"expected true/false, got {type(value).__name__}")
    return value


def items(value: Any, length: int | None = None) -> list[Any]:
    """A JSON array (of exactly ``length`` items when given)."""
    if type(value) is not list or (length is not None and len(value) != length):
        raise ValueError(f"expected an array of {length if length is not None else 'any number of'} items")
    return value


def texts(value: Any) -> list[str]:
    return [text(item) for item in items(value)]


def last_seen(value: Any) -> dict[str, float]:
    """What a profile used, value -> when last seen, in least-recently-used order."""
    if type(value) is not dict:
        raise TypeError("expected an object of last-seen times")
    return {text(key): number(when) for key, when in value.items()}
