"""The replay detector's settings, apart from the detector so that they stay pure Python.

``make compile`` compiles ``detectors.replay`` with mypyc (``pipeline.compiled``); a pydantic
model compiled with it would lose its ``Field`` constraints and descriptions, so the model
lives here and ``detectors.replay`` imports it (``Detector[ReplayConfig]``).
"""

from __future__ import annotations

from pydantic import Field

from detectors.base import DetectorConfig


class ReplayConfig(DetectorConfig):
    refresh_grace_s: float = Field(
        default=30.0, ge=0,
        description="A rotated refresh token redeemed again within this many seconds, from the same "
        "client and network, is a client retry (lost response), not a replay",
    )
    concurrent_window_s: float = Field(
        default=60.0, ge=0,
        description="How close in time uses of one token from different networks are compared: A, B, A with "
        "each step closer than this is two holders, and so is a move closer than this to a hosting, anonymising "
        "or reputation-listed network, to another country or faster than concurrent_max_speed_kmh; a one-way "
        "move to another network of the same country is roaming",
    )
    concurrent_max_speed_kmh: float = Field(
        default=1000.0, gt=0,
        description="Fastest plausible travel between two uses of one token (airliner speed), after allowing "
        "for geolocation accuracy; a faster move inside the concurrent window is two holders",
    )
    max_tracked_timelines: int = Field(
        default=200_000, ge=1,
        description="Memory cap on tokens whose network changes are being followed (a few recent runs each, "
        "only for tokens that changed network within the concurrent window); the least recent go first",
    )
    duplicate_request_window_s: float = Field(
        default=300.0, ge=0,
        description="How long an accepted request id is remembered per token to catch a replayed request",
    )
    alert_on_missing_proof: bool = Field(
        default=True,
        description="Alert when a DPoP/mTLS-bound token is accepted with no proof; turn off for resource-server "
        "logs that do not record the proven key (a wrong key is still an alert)",
    )
    max_tracked_requests: int = Field(
        default=1_000_000, ge=1,
        description="Memory cap on remembered (token, request id) pairs; the oldest are forgotten first",
    )
    cloud_providers: tuple[str, ...] = Field(
        default=("aws", "gcp", "azure", "oracle", "alibaba", "ibm", "tencent", "huawei"),
        description="Network-binding values that name a cloud provider, compared with the provider of the "
        "caller's address (network.provider, as enrichment names it); any other network binding (a VPC id) "
        "is compared only with network proof recorded at the request",
    )
    pod_address_ttl_s: float = Field(
        default=86_400.0, gt=0,
        description="How long a pod's learned address is remembered after its last use; a pod keeps its "
        "address for life, its tokens are rotated hourly",
    )
    max_tracked_pods: int = Field(
        default=200_000, ge=1,
        description="Memory cap on learned pod addresses; the least recently used are forgotten first",
    )
