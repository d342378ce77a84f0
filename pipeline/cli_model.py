"""Anomaly model commands: `tokenwatch model train|evaluate`."""

from __future__ import annotations

import argparse
from typing import Any


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    return None
