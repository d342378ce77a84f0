"""The detector interface and the finding it emits.

A detector is one module: a settings model with its thresholds and defaults
(named once, as the class's type parameter: ``Detector[ReplayConfig]``),
``process(event, state) -> findings``, an event-time ``expire`` hook, and
``RuleMeta`` for each rule it raises. It reads canonical events and
the shared ``StateStore`` only; turning findings into alerts, and alerts into
revocations, happens in the pipeline.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, cast, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

from detectors.state import StateStore
from schemas.alerts import Category, EvidenceItem, ResponseAction, Severity
from schemas.events import CanonicalEvent

_WORD = re.compile(r"[a-z][a-z0-9_]*")


class DetectorConfig(BaseModel):
    """Base for detector settings: unknown keys are configuration mistakes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True


@dataclass(frozen=True, kw_only=True)
class RuleMeta:
    """One rule's metadata: the single source of the alert's ``rule``/``threat`` fields, the
    README rule table and the default configuration's comments.

    ``id`` is ``<category>.<rule>``: ``category`` left out is the id's prefix, so no list of
    categories is kept by hand (``detectors.register`` refuses a registered rule whose
    category is not its prefix)."""

    id: str
    name: str
    category: Category = ""
    severity: Severity
    risk_score: int
    techniques: tuple[tuple[str, str], ...]
    response: ResponseAction
    description: str
    # Whether the demo's sample and world stage an attack for it (their coverage tests ask);
    # a behaviour model has no scripted attack.
    in_demo: bool = True

    def __post_init__(self) -> None:
        prefix, dot, rest = self.id.partition(".")
        if not (dot and _WORD.fullmatch(prefix) and _WORD.fullmatch(rest)):
            raise ValueError(f"rule id {self.id!r} is not <category>.<rule> in lower_snake_case")
        if not self.category:
            object.__setattr__(self, "category", prefix)


@dataclass(frozen=True)
class Finding:
    """One rule match. ``key`` scopes folding: findings of a rule with the same
    key close in time become one alert (usually the token or session id)."""

    rule: RuleMeta
    event: CanonicalEvent
    key: str
    summary: str
    evidence: tuple[EvidenceItem, ...]
    family_id: str | None = None
    token_id: str | None = None  # the token the alert is about, when not the trigger's own token
    severity: Severity | None = None
    risk_score: int | None = None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)


# A detector's settings type. Covariant, so every detector is a ``Detector`` (of
# ``DetectorConfig``, the default) to the registry and the engine.
ConfigT = TypeVar("ConfigT", bound=DetectorConfig, default=DetectorConfig, covariant=True)


def config_class(detector: type[Detector[ConfigT]]) -> type[DetectorConfig]:
    """The settings model a detector class names as its parameter (``Detector[ReplayConfig]``),
    nearest first along its bases; ``DetectorConfig`` when it names none."""
    for klass in detector.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if get_origin(base) is Detector:
                (arg,) = get_args(base)
                if isinstance(arg, type) and issubclass(arg, DetectorConfig):
                    return arg
    return DetectorConfig


class _ConfigOf:
    """``Detector.Config``: the class's settings model, derived from its type parameter, so it is
    declared once. A descriptor because a ``ClassVar`` cannot name a type variable: this way
    ``ReplayDetector.Config`` is ``type[ReplayConfig]`` to mypy, not the base."""

    def __get__(self, instance: object, owner: type[Detector[ConfigT]]) -> type[ConfigT]:
        return cast("type[ConfigT]", config_class(owner))


class Detector(ABC, Generic[ConfigT]):
    """Subclass as ``class ReplayDetector(Detector[ReplayConfig])``: ``self.config`` is then a
    ``ReplayConfig`` and ``ReplayDetector.Config`` is ``ReplayConfig`` (the registry builds the
    detector's settings from it), with nothing declared twice."""

    name: ClassVar[str]
    rules: ClassVar[tuple[RuleMeta, ...]]
    Config: ClassVar[_ConfigOf] = _ConfigOf()

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config: ConfigT = config if config is not None else self.Config()

    @abstractmethod
    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        """Findings for ``event`` given the state *before* the event is applied."""

    def expire(self, watermark: float, state: StateStore) -> list[Finding] | None:
        """Forget detector-owned state that event time has moved past (epoch seconds).

        A detector that judges windows rather than single events (the anomaly model
        scores a token's behaviour once its window closes, in batches) returns the
        findings of the windows that closed; rule detectors return ``None``."""
        return None

    def finish(self, state: StateStore) -> list[Finding]:
        """End of a finite input (batch ``detect``): judge windows still open. Streaming
        never calls this; there, windows close through ``expire``."""
        return []

    @classmethod
    def rule(cls, rule_id: str) -> RuleMeta:
        for meta in cls.rules:
            if meta.id == rule_id:
                return meta
        raise KeyError(rule_id)
