"""``Detector[ConfigT]`` (issue 15): a detector names its settings model once, as its type
parameter; ``Config`` (what the registry builds settings from) and ``self.config`` follow.
The shipped detectors and their models are read from ``BUILTIN`` and the source, not listed here."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import get_type_hints

import pytest
from pydantic import Field

import detectors.base
from detectors import BUILTIN, DETECTORS, build_detectors
from detectors.base import Detector, DetectorConfig, Finding
from detectors.state import StateStore
from schemas.events import CanonicalEvent


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


def class_def(cls: type) -> tuple[str, ast.ClassDef]:
    """The source of ``cls``'s module and its class statement, read from the ``.py`` file, which
    the compiled build (``make compile``) keeps beside an extension that ``inspect`` cannot read."""
    path = Path(str(sys.modules[cls.__module__].__file__)).parent / f"{cls.__module__.rpartition('.')[2]}.py"
    source = path.read_text(encoding="utf-8")
    [node] = [node for node in ast.parse(source).body if isinstance(node, ast.ClassDef) and node.name == cls.__name__]
    return source, node


def declared_config(cls: type[Detector]) -> type | None:
    """The settings model ``cls`` names as written, ``class X(Detector[<model>])``, looked up in
    its module; None when its statement names none."""
    _, node = class_def(cls)
    named = [base.slice.id for base in node.bases if isinstance(base, ast.Subscript)
             and isinstance(base.value, ast.Name) and base.value.id == "Detector" and isinstance(base.slice, ast.Name)]
    return getattr(sys.modules[cls.__module__], named[0]) if named else None


SHIPPED = [(cls, declared_config(cls)) for cls in BUILTIN]


def test_every_shipped_detector_names_a_settings_model_of_its_own() -> None:
    """Its ``[detectors.<name>]`` section holds its thresholds, not only ``enabled``."""
    assert [cls.name for cls, config in SHIPPED
            if not (isinstance(config, type) and issubclass(config, DetectorConfig) and config is not DetectorConfig)] == []
    assert (declared_config(Toy), declared_config(Plain)) == (ToyConfig, None)


def init_source(cls: type) -> str:
    """The ``__init__`` ``cls`` runs, as written."""
    owner = next(klass for klass in cls.__mro__ if "__init__" in vars(klass))
    source, statement = class_def(owner)
    [init] = [node for node in statement.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"]
    return ast.get_source_segment(source, init) or ""


@pytest.mark.parametrize(("cls", "config"), SHIPPED, ids=[cls.name for cls, _ in SHIPPED])
def test_config_is_the_type_parameter_and_declared_nowhere_else(cls: type[Detector], config: type) -> None:
    assert cls.Config is config
    assert type(cls().config) is config
    [built] = build_detectors({name: {"enabled": other is cls} for name, other in DETECTORS.items()})
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
