"""A small trained model shared by the anomaly tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.anomaly.model import AnomalyModel, save
from pipeline.config import Settings
from pipeline.model.train import anomaly_config, train_from_events
from pipeline.synthetic import anomaly_stream as synth
from schemas.events import CanonicalEvent

SCALE, DAYS, ATTACK_DAYS = 0.12, 5, 2


@pytest.fixture(scope="session")
def small_set() -> tuple[list[CanonicalEvent], list[dict]]:
    lines, labels = synth.generate(3, scale=SCALE, days=DAYS, attack_days=ATTACK_DAYS, attacks_per_kind=3,
                                   low_and_slow=1)
    return [CanonicalEvent.model_validate(line) for line in lines], labels


@pytest.fixture(scope="session")
def trained(small_set, tmp_path_factory) -> tuple[AnomalyModel, Path]:
    events, _ = small_set
    split = synth.split_time(DAYS, ATTACK_DAYS).timestamp()
    settings = Settings()
    config = anomaly_config(settings, min_training_windows=100)
    model = train_from_events([e for e in events if e.epoch < split], config, settings)
    path = tmp_path_factory.mktemp("model") / "anomaly.skops"
    save(model, path)
    return model, path
