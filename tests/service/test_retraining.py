"""The service's retraining schedule: the one ``start_retraining``, asking for the detectors
of the moment at each run (partitions come and go)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from detectors.anomaly import AnomalyConfig
from detectors.base import Detector
from pipeline.service.retraining import Retraining


def test_nothing_is_scheduled_without_a_model_path_or_when_disabled(tmp_path: Path) -> None:
    asked: list[int] = []
    for settings in ({}, {"anomaly": {"enabled": False, "model_path": str(tmp_path / "m")}},
                     {"anomaly": {"model_path": str(tmp_path / "m"), "retrain_every_s": 0}}):
        retraining = Retraining.from_settings(settings, lambda: asked.append(1) or [])
        retraining.start()
        assert retraining.scheduler is None and not retraining.wanted
    assert asked == []


def test_the_job_asks_for_the_detectors_each_time_it_runs(tmp_path: Path) -> None:
    partitions: list[list[Detector]] = [[], []]
    asked: list[int] = []

    def detectors() -> list[Detector]:
        asked.append(len(partitions))
        return [d for ds in partitions for d in ds]

    retraining = Retraining(AnomalyConfig(model_path=tmp_path / "m", retrain_every_s=600), detectors)
    retraining.start()
    try:
        job = retraining.scheduler.get_job("anomaly-retrain")
        assert job.trigger.interval == timedelta(minutes=10)
        job.func()  # no partition holds an anomaly detector yet: nothing to retrain, no error
        partitions.append([])
        job.func()
        assert asked == [2, 3]
    finally:
        retraining.stop()
    assert retraining.scheduler is None
