"""The device context a session (or token) was last used with, and its changelog codec.

Device drift compares each use with the previous use of the same session, across
the session's tokens, so the anomaly detector remembers the latest context per
session in ``anomaly/device_contexts`` (least recently used first, bounded by
``max_device_contexts`` and forgotten after ``device_memory_s``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detectors.anomaly.plain import items, maybe_text, number
from detectors.device import DeviceContext
from detectors.tables import register_codec


@dataclass(frozen=True, slots=True)
class LastDevice:
    context: DeviceContext
    used: float  # event time of the latest use


def encode_last_device(last: LastDevice) -> list[Any]:
    """[browser family/OS, device id, proof key, used]."""
    return [last.context.agent, last.context.device, last.context.key, last.used]


def decode_last_device(value: Any) -> LastDevice:
    v = items(value, 4)
    return LastDevice(DeviceContext(maybe_text(v[0]), maybe_text(v[1]), maybe_text(v[2])), number(v[3]))


LAST_DEVICE = register_codec("anomaly.last_device", encode_last_device, decode_last_device)
