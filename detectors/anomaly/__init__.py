"""Anomaly detection: behaviour features per token window (``features``), an
IsolationForest calibrated to an alert budget (``model``), worded reasons
(``explain``) and the detector that ties them to the stream (``detector``)."""

from detectors.anomaly.detector import BEHAVIOUR, AnomalyConfig, AnomalyDetector

__all__ = ["BEHAVIOUR", "AnomalyConfig", "AnomalyDetector"]
