"""All formats interleaved in one `detect` run: each line read by its own adapter,
and the cross-source links (Entra sign-in ↔ Graph use, Keycloak issue ↔ gateway use) hold."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.detect_helpers import detect_lines

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "data" / "formats").glob("*.jsonl"))


def _interleaved() -> list[bytes]:
    per_file = [path.read_bytes().splitlines() for path in SAMPLES]
    return [line for group in itertools.zip_longest(*per_file) for line in group if line]


def test_every_format_is_read_in_one_interleaved_run() -> None:
    found = detect_lines(_interleaved())
    assert dict(found.summary.per_format) == {
        "keycloak": 8, "okta": 6, "cloudtrail": 3, "gateway": 3, "entra": 2, "graph": 2, "k8s": 2,
    }
    assert found.dead_letters == []
    assert sum(found.summary.skipped.values()) == 0


def test_interleaved_run_raises_per_format_alerts_plus_the_cross_source_ones() -> None:
    alone = set()
    for path in SAMPLES:
        alone |= set(detect_lines(path.read_bytes().splitlines()).hits)
    mixed = detect_lines(_interleaved()).hits
    cross_source = {
        # the Graph use of the Entra sign-in's token from a hosting network
        ("geo_divergence.issue_use_divergence", "UTI-aaaa0002"),
        # Keycloak issued at-0001 in Berlin; the gateway saw it used from Hetzner
        ("geo_divergence.issue_use_divergence", "at-0001"),
    }
    assert not cross_source & alone
    assert sorted(mixed) == sorted(alone | cross_source)
    assert ("replay.binding_mismatch", "ASIAEXAMPLETEMP0001") in mixed
    assert ("replay.refresh_reuse", "rt-0001") in mixed
