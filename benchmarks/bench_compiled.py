"""The compiled build (``make compile``, mypyc) against pure Python, on the same traffic.

Each measurement runs in a fresh process, the two builds taking turns, and each figure is the
median of ``--runs``: the engine's CPU µs per event (dedup, ordering, detectors, lineage state,
alerting, fed parsed and enriched events) and ``detect``'s events per CPU second, start-up
excluded. Prints figures, asserts nothing. ``python benchmarks/bench_compiled.py --events 60000``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import compiled  # noqa: E402 -- after the path above; imports no compiled module


def measure(build: str, events: int) -> dict[str, float | bool]:
    """One run on ``build`` (``pure`` imports the sources): engine µs/event and detect events/s."""
    if build == "pure":
        compiled.use_pure_python()
    import pipeline.runtime.engine
    from benchmarks.bench_detect import HASHER, bench_detect
    from benchmarks.traffic import generate
    from pipeline.config import Settings
    from pipeline.ingest.enrich import Enricher
    from pipeline.ingest.normalize import Normalizer
    from pipeline.runtime.build import build_engine, settle_heap

    settings = Settings()
    lines = list(generate(events))
    normalizer, enricher = Normalizer(HASHER, settings.input), Enricher(settings.enrich)
    parsed = [enricher(ev) for line in lines for ev in normalizer.normalize(line, "b").events]
    engine = build_engine(settings, None)
    settle_heap()
    started = time.process_time()
    for ev in parsed:
        engine.submit(ev)
    engine.flush()
    engine_us = (time.process_time() - started) / len(parsed) * 1e6
    bench_detect(lines[:5000], settings)  # warm caches
    started = time.process_time()
    bench_detect(lines, settings)
    rate = len(lines) / (time.process_time() - started)
    return {"compiled": compiled.is_compiled(pipeline.runtime.engine), "engine_us": engine_us, "detect_rate": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=("pure", "compiled"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.events)))
        return
    if compiled.stale():
        sys.exit("no current compiled build: run `make compile` first")
    results: dict[str, list[dict[str, float | bool]]] = {"pure": [], "compiled": []}
    for _ in range(args.runs):
        for build in results:
            child = subprocess.run(
                [sys.executable, __file__, "--child", build, "--events", str(args.events)],
                cwd=ROOT, capture_output=True, text=True, check=True,
            )
            results[build].append(json.loads(child.stdout))
    assert [r["compiled"] for r in results["compiled"]] == [True] * args.runs, "the compiled runs were not"
    medians = {
        build: (statistics.median(float(r["engine_us"]) for r in runs), statistics.median(float(r["detect_rate"]) for r in runs))
        for build, runs in results.items()
    }
    print(f"{args.events:,} events, median of {args.runs} (CPU time)")
    for build, (engine_us, rate) in medians.items():
        print(f"  {build:<8} engine {engine_us:6.2f} µs/event   detect {rate:8,.0f} events/s")
    (pure_us, pure_rate), (fast_us, fast_rate) = medians["pure"], medians["compiled"]
    print(f"  compiled/pure: engine {pure_us / fast_us:.2f}x faster, detect {fast_rate / pure_rate:.2f}x")


if __name__ == "__main__":
    main()
