"""``Detector[ConfigT]`` (issue 15): a detector names its settings model once, as its type
parameter; ``Config`` (what the registry builds settings from) and ``self.config`` follow."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import get_type_hints

import pytest
from pydantic import Field

import detectors.base
from detectors import BUILTIN, build_detectors
from detectors.anomaly.detector import AnomalyConfig, AnomalyDetector
from detectors.base import Detector, DetectorConfig, Finding
from detectors.geo_divergence import GeoDivergenceConfig, GeoDivergenceDetector
from detectors.post_revocation_use import PostRevocationUseConfig, PostRevocationUseDetector
from detectors.replay import ReplayConfig, ReplayDetector
from detectors.scope_escalation import ScopeEscalationConfig, ScopeEscalationDetector
from detectors.state import StateStore
from schemas.events import CanonicalEvent

SHIPPED = [
    (ReplayDetector, ReplayConfig),
    (PostRevocationUseDetector, PostRevocationUseConfig),
    (ScopeEscalationDetector, ScopeEscalationConfig),
    (GeoDivergenceDetector, GeoDivergenceConfig),
    (AnomalyDetector, AnomalyConfig),
]


class ToyConfig(DetectorConfig):
    limit: int = Field(default=3, description="a threshold")


class Toy(Detector[ToyConfig]):
    name = "toy"
    rules = ()

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []


class Plain(Detector):
    name = "plain"
    rules = ()

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []


def test_every_shipped_detector_is_listed_here() -> None:
    assert {cls for cls, _ in SHIPPED} == set(BUILTIN)


def init_source(cls: type) -> str:
    """The ``__init__`` ``cls`` runs, as written: read from the ``.py`` file, which the compiled
    build (``make compile``) keeps beside an extension that ``inspect`` cannot read."""
    owner = next(klass for klass in cls.__mro__ if "__init__" in vars(klass))
    path = Path(str(sys.modules[owner.__module__].__file__)).parent / f"{owner.__module__.rpartition('.')[2]}.py"
    source = path.read_text(encoding="utf-8")
    [body] = [node.body for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == owner.__name__]
    [init] = [node for node in body if isinstance(node, ast.FunctionDef) and node.name == "__init__"]
    return ast.get_source_segment(source, init) or ""


@pytest.mark.parametrize(("cls", "config"), SHIPPED, ids=[cls.name for cls, _ in SHIPPED])
def test_config_is_the_type_parameter_and_declared_nowhere_else(cls: type[Detector], config: type) -> None:
    assert cls.Config is config
    assert type(cls().config) is config
    [built] = build_detectors({other.name: {"enabled": other is cls} for other in BUILTIN})
    assert type(built) is cls and type(built.config) is config
    # one idiom: no class-level Config, no re-annotated config, no conversion in __init__
    assert "Config" not in vars(cls) and "config" not in get_type_hints(cls)
    assert "model_validate" not in init_source(cls)


def test_a_detector_naming_no_model_gets_the_base_and_a_subclass_keeps_its_parents() -> None:
    class Stricter(Toy):
        name = "stricter"

    assert (Toy.Config, Plain.Config, Stricter.Config) == (ToyConfig, DetectorConfig, ToyConfig)
    assert Toy(ToyConfig(limit=5)).config.limit == 5 and Stricter().config == ToyConfig()
    assert Toy.Config.model_validate({"limit": 7}) == ToyConfig(limit=7)
    assert detectors.base.config_class(Stricter) is ToyConfig
