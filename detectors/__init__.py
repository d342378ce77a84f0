"""Detector registry: name -> class.

Adding a detector is its module, its entry in ``BUILTIN`` and its test (README "Add a
detector"); ``tests/detectors/test_registry.py`` fails when a module is left unregistered.
A detector kept outside this package calls ``register`` instead: the same checks, one path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from detectors.anomaly import AnomalyDetector
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.geo_divergence import GeoDivergenceDetector
from detectors.post_revocation_use import PostRevocationUseDetector
from detectors.replay import ReplayDetector
from detectors.scope_escalation import ScopeEscalationDetector

_NAME = re.compile(r"[a-z][a-z0-9_]*")

# The shipped detectors, in the order of the README rule table and the default configuration.
BUILTIN: tuple[type[Detector], ...] = (
    ReplayDetector,
    GeoDivergenceDetector,
    ScopeEscalationDetector,
    PostRevocationUseDetector,
    AnomalyDetector,
)
DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Add ``cls`` under ``cls.name``; refuse what would make alerts or configuration ambiguous.

    Its name is its configuration section (``[detectors.<name>]``), so it must be a new
    lower_snake_case word; its rule ids are alert ids' input, so none may be taken already."""
    if not (isinstance(cls, type) and issubclass(cls, Detector)) or getattr(cls, "__abstractmethods__", None):
        raise TypeError(f"{cls!r} is not a concrete Detector subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{cls.__qualname__}.name must be a lower_snake_case word, not {name!r}")
    if name in DETECTORS:
        raise ValueError(f"detector name {name!r} is already registered ({DETECTORS[name].__qualname__})")
    if not issubclass(cls.Config, DetectorConfig):
        raise TypeError(f"{cls.__qualname__}.Config must subclass DetectorConfig")
    taken = {rule.id for other in DETECTORS.values() for rule in other.rules}
    ids = [rule.id for rule in cls.rules]
    clashes = sorted({i for i in ids if i in taken or ids.count(i) > 1})
    if not ids or clashes:
        raise ValueError(f"detector {name!r}: rule ids must be new and unique, clashing: {clashes or 'none given'}")
    for rule in cls.rules:
        if rule.category != rule.id.partition(".")[0]:
            raise ValueError(f"rule {rule.id!r}: category {rule.category!r} is not its id's prefix")
    DETECTORS[name] = cls
    return cls


for _builtin in BUILTIN:
    register(_builtin)


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


__all__ = ["BUILTIN", "DETECTORS", "build_detectors", "register", "Detector", "DetectorConfig", "Finding", "RuleMeta"]
