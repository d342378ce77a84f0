"""Placeholder: being written."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import Detector, Finding, RuleMeta
from detectors.state import StateStore
from schemas.events import CanonicalEvent


class ReplayDetector(Detector):
    name: ClassVar[str] = "replay"
    rules: ClassVar[tuple[RuleMeta, ...]] = ()

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []
