"""The geo divergence detector's settings, apart from the detector so that they stay pure Python.

``make compile`` compiles ``detectors.geo_divergence`` with mypyc (``pipeline.compiled``); a pydantic
model compiled with it would lose its ``Field`` constraints and descriptions, so the model
lives here and ``detectors.geo_divergence`` imports it (``Detector[GeoDivergenceConfig]``).
"""

from __future__ import annotations

from pydantic import Field

from detectors.base import DetectorConfig
from detectors.geo_divergence_state import MAX_SESSION_POINTS


class GeoDivergenceConfig(DetectorConfig):
    max_speed_kmh: float = Field(
        default=1000.0, gt=0, description="Fastest plausible travel (airliner speed); faster is impossible travel"
    )
    min_distance_km: float = Field(
        default=500.0, ge=0, description="Ignore pairs closer than this (after the accuracy allowance)"
    )
    default_accuracy_km: float = Field(
        default=50.0, ge=0, description="Geolocation error radius assumed when an event carries none"
    )
    count_failed_uses: bool = Field(
        default=False, description="Also use rejected requests as locations for impossible travel"
    )
    session_history: int = Field(
        default=3, ge=1, le=MAX_SESSION_POINTS, description="Located events kept per session to compare across its tokens"
    )
    alert_on_country_change: bool = Field(
        default=True, description="Alert when a token is used from another country than it was issued in"
    )
    alert_on_asn_change_to_hosting: bool = Field(
        default=True, description="Alert when a token issued elsewhere is used from a hosting/VPN/Tor network"
    )
    ignore_same_country_isp_change: bool = Field(
        default=True, description="Treat a change of non-hosting network within one country as benign (mobile users)"
    )
