"""Scheduled retraining inside `tokenwatch run`.

An APScheduler ``BackgroundScheduler`` job gathers the rolling baseline the
running anomaly detector(s) collected (one per partition engine), fits a new
model, writes it to ``model_path`` (atomically: temp file + rename) and swaps
it into every detector (one reference assignment each). Detection never waits
for it: a batch being judged keeps the model it started with. A failed
retraining is logged and counted; the current model stays.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.model import AnomalyModel, ModelError, save, train
from detectors.base import Detector

log = logging.getLogger("tokenwatch.anomaly")


def anomaly_detectors(detectors: Iterable[Detector]) -> list[AnomalyDetector]:
    return [d for d in detectors if isinstance(d, AnomalyDetector) and d.active]


def retrain_once(detectors: Iterable[Detector], config: AnomalyConfig | None = None) -> AnomalyModel | None:
    """Train on the detectors' pooled baseline and install the model; None when there is
    too little baseline or training failed (the current model stays)."""
    found = anomaly_detectors(detectors)
    if not found:
        return None
    config = config or found[0].config
    parts = [d.baseline() for d in found]
    rows = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, 0))
    times = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
    token_days = sum(p[2] for p in parts)
    if len(rows) < config.min_training_windows:
        log.info("anomaly retraining skipped: %d baseline windows, need %d", len(rows), config.min_training_windows)
        for d in found:
            d.counters["retrain_skipped"] += 1
        return None
    order = np.argsort(times, kind="stable")
    try:
        model = train(rows[order], times[order], token_days, config.alerts_per_10k_tokens_per_day, config.seed,
                      config.n_estimators, config.max_samples, config.model_kind)
        if config.model_path is not None:
            save(model, config.model_path)
    except (ModelError, OSError, ValueError) as exc:
        log.error("anomaly retraining failed, keeping the current model: %s", exc)
        for d in found:
            d.counters["retrain_errors"] += 1
        return None
    for d in found:
        d.swap(model)
        d.counters["retrains"] += 1
    return model


def start_retraining(detectors: Iterable[Detector] | Callable[[], Iterable[Detector]],
                     config: AnomalyConfig | None = None, **scheduler_options: Any) -> Any:
    """Start a ``BackgroundScheduler`` retraining every ``retrain_every_s`` (wall clock);
    returns it (call ``shutdown()`` at exit), or None when nothing is to be retrained.

    ``detectors``: the detectors themselves, or a function naming those of the moment (the
    service's partitions, and with them their detectors, come and go; ``config`` is then
    required, since there may be none yet to take it from)."""
    from apscheduler.schedulers.background import BackgroundScheduler

    if isinstance(detectors, Iterable):
        found = anomaly_detectors(detectors)
        if not found:
            return None
        config = config or found[0].config

        def current() -> Iterable[Detector]:
            return found
    else:
        current = detectors
    if config is None or config.retrain_every_s <= 0:
        return None
    chosen = config

    def job() -> None:
        retrain_once(current(), chosen)

    scheduler = BackgroundScheduler(**scheduler_options)
    scheduler.add_job(job, "interval", seconds=config.retrain_every_s, id="anomaly-retrain",
                      max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
