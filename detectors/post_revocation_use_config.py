"""The post-revocation use detector's settings, apart from the detector so that they stay pure Python.

``make compile`` compiles ``detectors.post_revocation_use`` with mypyc (``pipeline.compiled``); a pydantic
model compiled with it would lose its ``Field`` constraints and descriptions, so the model
lives here and ``detectors.post_revocation_use`` imports it (``Detector[PostRevocationUseConfig]``).
"""

from __future__ import annotations

from pydantic import Field

from detectors.base import DetectorConfig


class PostRevocationUseConfig(DetectorConfig):
    propagation_lag_s: float = Field(
        default=60.0, ge=0, description="Uses this soon after a revocation are propagation lag (a metric), not alerts"
    )
    clock_skew_s: float = Field(
        default=30.0, ge=0, description="Tolerance between issuer and resource-server clocks for exp"
    )
