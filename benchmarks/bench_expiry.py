"""Cost of one expiry pass when much is held and little is due (issue 17: expiry should cost
what expires, not what is held).

For each size it fills the lineage wheel, scope escalation's subject rows and the alerter's
open alerts with ``--held`` rows that stay fresh, then times expiry passes that each find a
handful due. Prints µs per pass (median of ``--passes``); asserts nothing. Run beside an
older checkout with ``python benchmarks/bench_expiry.py`` in each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from detectors.base import Finding, RuleMeta
from detectors.scope_escalation import HELD_SCOPES, HeldScopes, ScopeEscalationDetector
from detectors.state import StateStore
from pipeline.runtime.alerting import Alerter
from schemas.events import CanonicalEvent, EventKind, TokenRef

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
START = T0.timestamp()
RULE = RuleMeta(id="bench.rule", name="bench", category="replay", severity="low", risk_score=1,
                techniques=(), response="none", description="bench")


def _issued(token: str, t: float, ttl: float) -> CanonicalEvent:
    when = T0 + timedelta(seconds=t)
    return CanonicalEvent(event_id=f"e-{token}", kind=EventKind.ISSUED, time=when, source="bench",
                          token=TokenRef(id=token, expires_at=when + timedelta(seconds=ttl)))


def lineage_pass(held: int, passes: int) -> float:
    """``StateStore.expire`` with ``held`` tokens spread over a day of buckets, one due per pass."""
    store = StateStore()
    for i in range(held):
        store.apply(_issued(f"t{i}", float(i % 86_400), 86_400.0 * 30))
    for p in range(passes):
        store.apply(_issued(f"due{p}", 0.0, 1.0))
    times = []
    watermark = START + store.limits.expired_retention_s + 120
    for _ in range(passes):
        started = time.perf_counter()
        store.expire(watermark)
        times.append(time.perf_counter() - started)
        watermark += 60
    return statistics.median(times)


def scope_pass(held: int, passes: int) -> float:
    """Scope escalation's retention sweep with ``held`` fresh subjects and one stale."""
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(retention_s=86_400))
    times = []
    for _ in range(passes):
        store = StateStore()
        subjects = store.table("scope_escalation", "subjects", HELD_SCOPES)
        subjects.put("stale", HeldScopes(START, START, frozenset()))
        for i in range(held):
            subjects.put(f"u{i}", HeldScopes(START, START + 10_000, frozenset()))
        started = time.perf_counter()
        detector.expire(START + 86_400 + 1, store)
        times.append(time.perf_counter() - started)
        assert "stale" not in subjects and len(subjects) == held
    return statistics.median(times)


def alert_pass(held: int, passes: int) -> float:
    """``Alerter.close_ready`` with ``held`` open alerts still folding, one due per pass."""
    alerter = Alerter()
    for i in range(held):
        event = _issued(f"a{i}", 100_000.0, 60)
        alerter.add(Finding(rule=RULE, event=event, key=f"a{i}", summary="bench", evidence=()))
    for p in range(passes):
        event = _issued(f"d{p}", float(p * 60), 60)
        alerter.add(Finding(rule=RULE, event=event, key=f"d{p}", summary="bench", evidence=()))
    times = []
    watermark = START + alerter.config.fold_window_s + 1
    for _ in range(passes):
        started = time.perf_counter()
        closed = alerter.close_ready(watermark)
        times.append(time.perf_counter() - started)
        assert len(closed) == 1
        watermark += 60
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--held", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args()
    for held in args.held:
        print(f"held {held:>9,}:  lineage wheel {lineage_pass(held, args.passes) * 1e6:9.1f} µs/pass  "
              f"scope sweep {scope_pass(held, args.passes) * 1e6:9.1f} µs/pass  "
              f"close_ready {alert_pass(held, args.passes) * 1e6:9.1f} µs/pass")


if __name__ == "__main__":
    main()
