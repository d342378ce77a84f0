"""Placeholder: being written."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import Detector, Finding, RuleMeta
from detectors.state import StateStore
from schemas.events import CanonicalEvent


class ScopeEscalationDetector(Detector):
    name: ClassVar[str] = "scope_escalation"
    rules: ClassVar[tuple[RuleMeta, ...]] = ()

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []
