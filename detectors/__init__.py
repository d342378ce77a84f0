"""Detector registry: name -> class. Adding a detector is one module + one line here;
``tests/detectors/test_registry.py`` fails when a module is left unregistered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectors.anomaly import AnomalyDetector
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.geo_divergence import GeoDivergenceDetector
from detectors.post_revocation import PostRevocationDetector
from detectors.replay import ReplayDetector
from detectors.scope_escalation import ScopeEscalationDetector

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls
    for cls in (
        ReplayDetector,
        GeoDivergenceDetector,
        ScopeEscalationDetector,
        PostRevocationDetector,
        AnomalyDetector,
    )
}



def build_detectors(settings: Mapping[str, Mapping[str, Any]] | None = None) -> list[Detector]:
    """Instantiate every enabled detector, validating its settings once.

    Unknown detector names and unknown keys are errors: a typo in a threshold
    must not silently fall back to the default.
    """
    settings = settings or {}
    unknown = sorted(set(settings) - set(DETECTORS))
    if unknown:
        raise ValueError(f"unknown detector(s) in configuration: {', '.join(unknown)}")
    built: list[Detector] = []
    for name, cls in DETECTORS.items():
        config = cls.Config.model_validate(dict(settings.get(name, {})))
        if config.enabled:
            built.append(cls(config))
    return built


__all__ = ["DETECTORS", "build_detectors", "Detector", "DetectorConfig", "Finding", "RuleMeta"]
