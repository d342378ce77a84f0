"""The anomaly model's retraining schedule inside `tokenwatch run`.

Each partition's engine has its own anomaly detector, and partitions come and go with
rebalances: the job asks for the detectors of the moment each time it runs. The schedule is
``pipeline.model.retrain.start_retraining``, the one the anomaly tests exercise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timezone
from typing import TYPE_CHECKING, Any

from detectors.base import Detector

if TYPE_CHECKING:  # the anomaly package imports numpy: only a service that retrains loads it
    from detectors.anomaly import AnomalyConfig

Detectors = Callable[[], Iterable[Detector]]


class Retraining:
    """Retrains on the baseline every partition's detector collected, every ``retrain_every_s``;
    does nothing unless the anomaly detector is enabled with a ``model_path`` to write."""

    def __init__(self, config: AnomalyConfig, detectors: Detectors) -> None:
        self.config = config
        self.detectors = detectors
        self.scheduler: Any = None  # APScheduler ships no types

    @classmethod
    def from_settings(cls, detector_settings: dict[str, Any], detectors: Detectors) -> Retraining:
        """From the ``[detectors.anomaly]`` table (``Settings.detectors``)."""
        from detectors.anomaly import AnomalyDetector

        return cls(AnomalyDetector.Config.model_validate(detector_settings.get("anomaly", {})), detectors)

    @property
    def wanted(self) -> bool:
        config = self.config
        return config.enabled and config.model_path is not None and config.retrain_every_s > 0

    def start(self) -> None:
        if not self.wanted or self.scheduler is not None:
            return
        from pipeline.model.retrain import start_retraining

        self.scheduler = start_retraining(self.detectors, self.config, timezone=timezone.utc)

    def stop(self) -> None:
        """Stop scheduling; a retraining under way finishes on its own thread (not waited for)."""
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
