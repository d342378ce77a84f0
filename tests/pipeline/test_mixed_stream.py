"""All formats interleaved in one `detect` run: each line read by its own adapter,
and the cross-source links (Entra sign-in ↔ Graph use, Keycloak issue ↔ gateway use) hold."""

from __future__ import annotations

import itertools
from pathlib import Path

from tests.detect_helpers import detect_lines

SAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "data" / "formats").iterdir() if p.suffix in (".jsonl", ".log"))


def _interleaved() -> list[bytes]:
    per_file = [path.read_bytes().splitlines() for path in SAMPLES]
    return [line for group in itertools.zip_longest(*per_file) for line in group if line]


def test_every_format_is_read_in_one_interleaved_run() -> None:
    found = detect_lines(_interleaved())
    assert dict(found.summary.per_format) == {
        "aks": 4, "cloudtrail": 7, "entra": 11, "gateway": 3, "gke": 1, "graph": 5, "k8s": 2, "keycloak": 36,
        "okta": 6,
    }
    assert found.dead_letters == []
    assert dict(found.summary.skipped) == {  # each named, none dead-lettered
        "keycloak:admin client-secret regenerated": 2, "keycloak:log record": 2, "keycloak:admin CREATE GROUP": 1,
        "keycloak:LOGOUT without sessionId": 1, "entra:AuditLogs": 1,
    }


def test_interleaved_run_raises_per_format_alerts_plus_the_cross_source_ones() -> None:
    """Every shape of every export path in one stream gives the alerts of the shapes one at a
    time, plus those only a join across sources can raise."""
    alone = set()
    for path in SAMPLES:
        alone |= set(detect_lines(path.read_bytes().splitlines()).hits)
    mixed = set(detect_lines(_interleaved()).hits)
    cross_source = {
        # the Graph use (Log Analytics row) of the Entra sign-in's token (diagnostic record) from a hosting network
        ("geo_divergence.issue_use_divergence", "UTI-aaaa0002"),
        # the same join with the shapes the other way round: a sign-in row, a Graph diagnostic record
        ("geo_divergence.issue_use_divergence", "UTI-row-0004"),
        # Keycloak issued at-0001 in Berlin; the gateway saw it used from Hetzner (the issue is logged
        # a year before the uses and arrives after them: the late issue re-checks them)
        ("geo_divergence.issue_use_divergence", "at-0001"),
        # ... after Keycloak logged its session's LOGOUT: a Keycloak logout kills the session's access
        # tokens (REVOCATION_POLICY); the late Keycloak file still finds the gateway's uses in state
        ("post_revocation_use.after_revocation", "at-0001"),
    }
    assert not cross_source & alone
    assert mixed == alone | cross_source
    assert ("replay.binding_mismatch", "ASIAEXAMPLETEMP0001") in mixed  # issuance + use
    assert ("replay.binding_mismatch", "ASIAIMDSEXAMPLE00001") in mixed  # use records alone (ec2RoleDelivery)
    for reuse in ("rt-0001", "rt-0101", "rt-0201", "rt-0301"):  # Keycloak: JSON, JSON log, flat, jboss-logging text
        assert ("replay.refresh_reuse", reuse) in mixed
