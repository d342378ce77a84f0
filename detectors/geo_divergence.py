"""Placeholder: being written."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import Detector, Finding, RuleMeta
from detectors.state import StateStore
from schemas.events import CanonicalEvent


class GeoDivergenceDetector(Detector):
    name: ClassVar[str] = "geo_divergence"
    rules: ClassVar[tuple[RuleMeta, ...]] = ()

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []
