"""The detector registry (issue 15): every detector module is registered, once, under the
word that also prefixes its rule ids and names its configuration section. Nothing here lists
the detectors or counts their rules: the package and ``BUILTIN`` are compared, so adding a
detector (README "Add a detector") changes no line of this file."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import ClassVar

import pytest
from pydantic import ValidationError

import detectors
from detectors import BUILTIN, DETECTORS, Detector, RuleMeta, build_detectors, register
from detectors.base import DetectorConfig, Finding
from detectors.state import StateStore
from pipeline.config import defaults_toml, rules_markdown
from schemas.alerts import RuleRef
from schemas.events import CanonicalEvent
from tests.factories import event, run

BUILTIN_NAMES = [cls.name for cls in BUILTIN]


def detector_modules() -> list[ModuleType]:
    """Every module under ``detectors/``."""
    return [importlib.import_module(info.name) for info in pkgutil.walk_packages(detectors.__path__, "detectors.")]


def registry_faults(builtin: Sequence[type[Detector]], registered: Mapping[str, type[Detector]],
                    modules: Iterable[ModuleType]) -> list[str]:
    """How the registry disagrees with the detector modules: a concrete ``Detector`` left out of
    ``BUILTIN``, a registered one that is not built in, another order (the table's and the
    defaults'), or a ``RuleMeta`` no registered detector lists (its rule would have no row in the
    table, no comment in the defaults and no saved search)."""
    faults: list[str] = []
    registered_rules = {rule.id for cls in registered.values() for rule in cls.rules}
    for module in modules:
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Detector) and obj.__module__ == module.__name__ and not inspect.isabstract(obj) \
                    and obj not in builtin:
                faults.append(f"{module.__name__}.{obj.__qualname__} is not in BUILTIN")
        for attr, value in vars(module).items():
            if isinstance(value, RuleMeta) and value.id not in registered_rules:
                faults.append(f"{module.__name__}.{attr} ({value.id}) is no registered detector's rule")
    faults += [f"{cls.__qualname__} is registered but not in BUILTIN" for cls in registered.values() if cls not in builtin]
    if list(registered) != [cls.name for cls in builtin]:
        faults.append(f"registry order {list(registered)} is not BUILTIN's")
    return faults


def test_every_detector_module_is_registered() -> None:
    assert registry_faults(BUILTIN, DETECTORS, detector_modules()) == []
    assert set(DETECTORS.values()) == set(BUILTIN)


def test_a_detector_or_rule_left_out_of_the_registry_is_a_fault() -> None:
    stray = ModuleType("detectors.stray")
    vars(stray).update(
        STRAY=RuleMeta(id="stray.rule", name="Stray", severity="low", risk_score=1, techniques=(), response="none",
                       description="d"),
        StrayDetector=type("StrayDetector", (_Probe,), {"__module__": "detectors.stray", "name": "stray"}),
    )
    assert registry_faults(BUILTIN, DETECTORS, [*detector_modules(), stray]) == [
        "detectors.stray.StrayDetector is not in BUILTIN",
        "detectors.stray.STRAY (stray.rule) is no registered detector's rule",
    ]
    assert registry_faults(BUILTIN[1:], DETECTORS, []) == [
        f"{BUILTIN[0].__qualname__} is registered but not in BUILTIN",
        f"registry order {list(DETECTORS)} is not BUILTIN's",
    ]


def test_rule_ids_are_unique_and_their_prefix_is_the_alert_category() -> None:
    ids = [rule.id for cls in DETECTORS.values() for rule in cls.rules]
    assert all(cls.rules for cls in DETECTORS.values()) and len(ids) == len(set(ids))
    assert all(rule.category == rule.id.split(".")[0] for cls in DETECTORS.values() for rule in cls.rules)


@pytest.mark.parametrize("name", list(DETECTORS))
def test_rule_prefix_is_the_detector_name_and_its_config_section(name: str) -> None:
    cls = DETECTORS[name]
    assert f"\n[detectors.{name}]\n" in defaults_toml()
    [built] = build_detectors({other: {"enabled": other == name} for other in DETECTORS})
    assert type(built) is cls
    assert {rule.id.split(".")[0] for rule in cls.rules} == {name}


def test_every_registered_rule_is_in_the_generated_table_and_defaults() -> None:
    table, toml = rules_markdown(), defaults_toml()
    for cls in DETECTORS.values():
        for rule in cls.rules:
            assert f"| `{rule.id}` | {rule.severity} ({rule.risk_score}) |" in table
            assert f"# {rule.id}: {rule.description}" in toml


# -- register refuses what would make alerts or configuration ambiguous --------------
_RULE = RuleMeta(id="probe.rule", name="Probe", severity="low", risk_score=10,
                 techniques=(("T1550.001", "x"),), response="none", description="d")


class _Probe(Detector):
    name: ClassVar[str] = "probe"
    rules: ClassVar[tuple[RuleMeta, ...]] = (_RULE,)

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        return []


def _variant(name: str, rules: tuple[RuleMeta, ...]) -> type[Detector]:
    return type("Variant", (_Probe,), {"name": name, "rules": rules})


@pytest.mark.parametrize(
    ("cls", "error"),
    [
        (_variant("replay", (_RULE,)), "detector name 'replay' is already registered"),
        (_variant("probe", (DETECTORS["replay"].rules[0],)), "clashing: ['replay.refresh_reuse']"),
        (_variant("probe", (_RULE, _RULE)), "clashing: ['probe.rule']"),
        (_variant("probe", ()), "none given"),
        (_variant("Probe-1", (_RULE,)), "must be a lower_snake_case word"),
        (type("NoConfig", (_Probe,), {"Config": dict}), "Config must subclass DetectorConfig"),
        (Detector, "not a concrete Detector subclass"),
        (DetectorConfig, "not a concrete Detector subclass"),
    ],
)
def test_register_refuses_an_ambiguous_detector(cls: type[Detector], error: str) -> None:
    before = dict(DETECTORS)
    with pytest.raises((ValueError, TypeError), match=error.replace("[", r"\[").replace("]", r"\]")):
        register(cls)
    assert DETECTORS == before


def test_register_adds_a_detector_that_the_pipeline_then_builds() -> None:
    try:
        assert register(_Probe) is _Probe
        assert [type(d) for d in build_detectors({n: {"enabled": False} for n in BUILTIN_NAMES})] == [_Probe]
        assert run([event("used", 0, token="at-1")], {n: {"enabled": False} for n in BUILTIN_NAMES}) == []
    finally:
        DETECTORS.pop("probe", None)
    with pytest.raises(ValueError, match="unknown detector"):
        build_detectors({"probe": {}})


# -- the category is the rule id's prefix, not a hand-kept list ---------------------
def test_a_rule_category_is_derived_from_its_id_and_a_registered_one_must_agree_with_it() -> None:
    assert _RULE.category == "probe"
    other = RuleMeta(id="probe.rule", name="P", category="replay", severity="low", risk_score=1,
                     techniques=(), response="none", description="d")
    with pytest.raises(ValueError, match="category 'replay' is not its id's prefix"):
        register(_variant("probe", (other,)))
    assert "probe" not in DETECTORS
    with pytest.raises(ValueError, match="is not <category>.<rule>"):
        RuleMeta(id="Probe rule", name="P", severity="low", risk_score=1, techniques=(), response="none",
                 description="d")


@pytest.mark.parametrize("category", ["", "Replay", "replay.x", "rm -rf", "a" * 65, "é"])
def test_a_stored_alert_category_stays_a_bounded_word(category: str) -> None:
    """Alerts are read back from the store through ``RuleRef``: any category word passes, no other text."""
    assert RuleRef(id="first_use.from_hosting", name="n", category="first_use").category == "first_use"
    with pytest.raises(ValidationError):
        RuleRef(id="x.y", name="n", category=category)
