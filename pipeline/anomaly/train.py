"""Training from a file: the same normalizer, enrichment and engine as `detect`, with
the anomaly detector alone collecting its baseline, then a model fitted on it."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.model import AnomalyModel, ModelError, train
from detectors.base import Detector
from detectors.state import StateStore
from pipeline.alerting import Alerter
from pipeline.config import Settings
from pipeline.engine import Engine
from pipeline.enrich import Enricher
from pipeline.normalize import Normalizer
from pipeline.secrets import token_hash_key
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher

log = logging.getLogger("tokenwatch.anomaly")


def anomaly_config(settings: Settings, **override: Any) -> AnomalyConfig:
    """The [detectors.anomaly] section of ``settings`` with ``override`` applied."""
    section = dict(settings.detectors.get("anomaly", {}))
    section.update({k: v for k, v in override.items() if v is not None})
    return AnomalyConfig.model_validate(section)


def read_events(path: Path, settings: Settings, enrich: bool = True, skipped: Counter[str] | None = None) -> Iterator[CanonicalEvent]:
    """Events of a JSON-lines file in any supported format, enriched like `detect` does."""
    normalizer = Normalizer(make_token_hasher(token_hash_key()), settings.input)
    enricher = Enricher(settings.enrich) if enrich else None
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            result = normalizer.normalize(line.rstrip(b"\r\n"), f"{path}:{number}")
            if result.dead_letter is not None and skipped is not None:
                skipped["dead_letters"] += 1
            for event in result.events:
                yield enricher(event) if enricher is not None else event


def run_engine(detectors: list[Detector], events: Iterable[CanonicalEvent], settings: Settings) -> list[Alert]:
    engine = Engine(detectors, StateStore(settings.state.limits()), Alerter(settings.alerting), settings.engine)
    alerts: list[Alert] = []
    for event in events:
        alerts.extend(engine.submit(event))
    alerts.extend(engine.flush())
    return alerts


def collect(events: Iterable[CanonicalEvent], config: AnomalyConfig, settings: Settings) -> AnomalyDetector:
    """Run the anomaly detector alone over ``events`` (no model): profiles and baseline."""
    detector = AnomalyDetector(config.model_copy(update={"model_path": None}), collect=True)
    run_engine([detector], events, settings)
    return detector


def train_on(detector: AnomalyDetector, config: AnomalyConfig, seed: int | None = None) -> AnomalyModel:
    rows, times, token_days = detector.baseline()
    if len(rows) < config.min_training_windows:
        raise ModelError(
            f"only {len(rows)} baseline windows of subjects with a profile; "
            f"min_training_windows is {config.min_training_windows}"
        )
    return train(rows, times, token_days, config.alerts_per_10k_tokens_per_day,
                 config.seed if seed is None else seed, config.n_estimators, config.max_samples,
                 config.model_kind)


def train_from_events(events: Iterable[CanonicalEvent], config: AnomalyConfig, settings: Settings,
                      seed: int | None = None) -> AnomalyModel:
    return train_on(collect(events, config, settings), config, seed)
