"""Which alert ``details`` are numbers, so the index maps them as numbers (range, min/max, histograms).

``details`` holds whatever a rule found worth saying, and most of it is text; the measures
below are numbers in every alert that has them. They are mapped ``double`` (or ``long`` for
counts); the rest stay ``keyword``. A field mapped as a number rejects the whole document if
it meets a word, so ``typed_details`` checks every value first: a value that is not a finite
number moves to ``details_raw.<name>`` (keyword), kept and searchable, never refused.
``tests/es/test_details_mapping.py`` fails when a rule emits a number under a name not listed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

NumberType = Literal["double", "long"]

NUMERIC_DETAILS: dict[str, NumberType] = {
    # geo_divergence.impossible_travel, replay.concurrent_use
    "distance_km": "double",
    "effective_distance_km": "double",
    "elapsed_s": "double",
    "speed_kmh": "double",
    "max_speed_kmh": "double",
    # replay.*
    "gap_s": "double",
    "handovers_before": "long",
    # post_revocation_use.*
    "seconds_after_revocation": "double",
    "propagation_lag_s": "double",
    "seconds_after_expiry": "double",
    "clock_skew_s": "double",
    # anomaly.behaviour (its ``contribution.<group>`` are numbers too: CONTRIBUTION_PREFIX)
    "score": "double",
    "threshold": "double",
    "requests": "long",
    "agent_changes": "long",
    "device_changes": "long",
    "key_changes": "long",
    "network_switches": "long",
    "network_returns": "long",
    # response.breaker
    "limit_per_minute": "long",
    "limit_per_hour": "long",
}
"""Detail name → the number type it is mapped as."""

CONTRIBUTION_PREFIX = "contribution."
"""``anomaly.behaviour`` names each feature group's share of its score ``contribution.<group>``."""

RAW_FIELD = "details_raw"
"""Where a value that should have been a number, and was not, is kept (as text)."""


def number_type(name: str) -> NumberType | None:
    """The mapped number type of detail ``name``, or None for a keyword detail."""
    if name.startswith(CONTRIBUTION_PREFIX):
        return "double"
    return NUMERIC_DETAILS.get(name)


def _as_number(value: Any, kind: NumberType) -> int | float | None:
    """``value`` as the number the field holds, or None when it is not one (words, booleans,
    infinities, a fraction in a count)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if kind == "long":
        return int(value) if float(value).is_integer() else None
    return value


def typed_details(details: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(details with every numeric field a number, the non-numbers moved out as text)."""
    kept: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for name, value in details.items():
        kind = number_type(name)
        if kind is None or value is None:
            kept[name] = value
            continue
        number = _as_number(value, kind)
        if number is None:
            raw[name] = str(value)
        else:
            kept[name] = number
    return kept, raw


def details_mapping() -> dict[str, Any]:
    """The ``details`` object's explicit properties: each numeric detail, and the
    ``contribution`` object whose fields the dynamic template maps as ``double``."""
    properties: dict[str, Any] = {name: {"type": kind} for name, kind in NUMERIC_DETAILS.items()}
    properties[CONTRIBUTION_PREFIX.rstrip(".")] = {"type": "object", "dynamic": True}
    return {"type": "object", "dynamic": True, "properties": properties}
