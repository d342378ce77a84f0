"""The demo world delivered the ways a deployment delivers it (issue 18), for `detect` and `run`.

Each delivery is an arrival order of the world's raw vendor lines:

- ``in_order``: event-time order (what ``tokenwatch produce`` of a directory sends);
- ``source_delays``: each source delivered late by its connector's usual delay (gateway 1 s,
  Keycloak and Kubernetes 5 s, Okta 60 s, Entra sign-ins 4 min, Graph activity 5 min,
  CloudTrail 10 min);
- ``okta_two_hours_late``: the same, with Okta's feed two hours late (a connector outage
  caught up);
- ``files_one_after_another``: the per-format files concatenated (``cat events/*.jsonl``).
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import orjson

from pipeline.cli.demo import DEMO_CONFIG
from pipeline.config import Settings, load_settings
from pipeline.ingest.enrich import Enricher
from pipeline.runtime.detect import DetectRun, Summary
from pipeline.synthetic.world import World, WorldSpec, generate
from schemas.redaction import TokenHasher

# Twelve hours: the first six of the small world hold no Entra or Graph line.
WORLD = WorldSpec(users=20, seed=7, hours=12)
DELAYS_S = {"gateway": 1.0, "keycloak": 5.0, "k8s": 5.0, "okta": 60.0, "entra": 240.0, "graph": 300.0,
            "cloudtrail": 600.0}
OUTAGE_S = 7_200.0
DELIVERIES = ("in_order", "source_delays", "okta_two_hours_late", "files_one_after_another")


@cache
def world() -> World:
    return generate(WORLD)


def deliver(how: str) -> list[bytes]:
    """The world's lines in the arrival order ``how`` names (one of ``DELIVERIES``)."""
    records = world().records  # (event time, sequence, format, line), in event-time order
    if how == "in_order":
        return [line for _, _, _, line in records]
    if how in ("source_delays", "okta_two_hours_late"):
        delays = {**DELAYS_S, "okta": OUTAGE_S} if how == "okta_two_hours_late" else DELAYS_S
        arrivals = sorted(records, key=lambda r: (r[0] + delays[r[2]], r[1]))
        return [line for _, _, _, line in arrivals]
    if how == "files_one_after_another":
        return [line for fmt in sorted(DELAYS_S) for _, _, f, line in records if f == fmt]
    raise ValueError(how)


@cache
def settings() -> Settings:
    return load_settings(DEMO_CONFIG)


@cache
def enricher() -> Enricher:
    found = Enricher(settings().enrich)
    found.warm()
    return found


def detect(lines: list[bytes], hash_token: TokenHasher) -> tuple[list[dict[str, Any]], Summary]:
    """`tokenwatch detect` over ``lines`` with the demo configuration: alerts and summary."""
    alerts_out, dead_out = io.BytesIO(), io.BytesIO()
    horizon = world().spec.start.replace(year=world().spec.start.year + 1)  # never "in the future"
    run = DetectRun(settings(), hash_token, alerts_out, dead_out, None, enricher(), clock=lambda: horizon)
    run.feed(iter(lines), "world")
    summary = run.finish()
    assert dead_out.getvalue() == b""
    return [orjson.loads(line) for line in alerts_out.getvalue().splitlines()], summary
