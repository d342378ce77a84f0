"""Training from a file: the same runtime as `detect` (``pipeline.runtime``: normaliser,
trust rules, enrichment, engine), with the anomaly detector alone collecting its
baseline, then a model fitted on it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.model import AnomalyModel, ModelError, train
from detectors.base import Detector
from pipeline.config import Settings
from pipeline.ingest.reading import read_lines
from pipeline.runtime.build import build_engine, build_enricher, build_reader, token_hasher
from schemas.alerts import Alert
from schemas.events import CanonicalEvent

log = logging.getLogger("tokenwatch.anomaly")


def anomaly_config(settings: Settings, **override: Any) -> AnomalyConfig:
    """The [detectors.anomaly] section of ``settings`` with ``override`` applied."""
    section = dict(settings.detectors.get("anomaly", {}))
    section.update({k: v for k, v in override.items() if v is not None})
    return AnomalyConfig.model_validate(section)


def read_events(path: Path, settings: Settings, enrich: bool = True) -> Iterator[CanonicalEvent]:
    """Events of a JSON-lines file in any supported format that `detect` would hand its engine
    (dead letters, skipped types and events the trust rules refuse left out), enriched."""
    reader = build_reader(settings, token_hasher())
    enricher = build_enricher(settings, warm=False) if enrich else None
    with open(path, "rb") as stream:
        for event in reader.events(read_lines(stream, settings.input.max_line_bytes), str(path)):
            yield enricher(event) if enricher is not None else event


def run_engine(detectors: list[Detector], events: Iterable[CanonicalEvent], settings: Settings) -> list[Alert]:
    engine = build_engine(settings, detectors=detectors)
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
