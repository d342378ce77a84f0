"""Throughput of `tokenwatch detect` and memory per tracked token.

Prints figures, asserts nothing: targets are ≥150k events/s with all rules
on, ≤1 KiB of state per tracked token. Run with `make bench` or
`python benchmarks/bench_detect.py --events 300000`.
"""

from __future__ import annotations

import argparse
import gc
import io
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import compiled  # imports no compiled module: it may switch them off first

if __name__ == "__main__" and "--pure" in sys.argv:
    compiled.use_pure_python()

from benchmarks.traffic import generate
from pipeline.config import Settings
from pipeline.ingest.enrich import Enricher
from pipeline.ingest.normalize import Normalizer
from pipeline.runtime import workers as worker_pool
from pipeline.runtime.build import build_engine, settle_heap
from pipeline.runtime.detect import DetectRun
from schemas.redaction import make_token_hasher

HASH_KEY = b"benchmark-key-0123456789abcdef"
HASHER = make_token_hasher(HASH_KEY)


def bench_detect(lines: list[bytes], settings: Settings, workers: int = 1) -> tuple[float, int, str]:
    """Seconds from starting the run (its workers too) to its last alert, alerts, and where
    the CPU went (the parent, then each worker, start-up included)."""
    enricher = None
    if workers == 1:
        enricher = Enricher(settings.enrich)
        enricher.warm()
    settle_heap()
    started, cpu = time.perf_counter(), time.process_time()
    run = DetectRun(settings, HASHER, io.BytesIO(), io.BytesIO(), None, enricher, workers=workers, hash_key=HASH_KEY)
    try:
        run.feed(lines, "bench")
        summary = run.finish()
    finally:
        run.close()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    spent = f"CPU {cpu:.2f}s"
    if run.pool is not None:
        spent += " + workers " + ", ".join(f"{s:.2f}s" for s in run.pool.cpu_s)
        spent += " (waiting for lines " + ", ".join(f"{s:.2f}s" for s in run.pool.idle_s) + ")"
    return seconds, sum(summary.alerts.values()), spent


def bench_workers(lines: list[bytes], settings: Settings, counts: tuple[int, ...] = (1, 2), runs: int = 3) -> None:
    """`detect --workers N` against one process: median events/s of ``runs`` runs each, the
    counts interleaved (a shared machine's load then weighs on each alike), with the CPU
    seconds of that median run."""
    rates: dict[int, float] = {}
    runs_of: dict[int, list[tuple[float, int, str]]] = {count: [] for count in counts}
    for _ in range(runs):
        for count in counts:
            runs_of[count].append(bench_detect(lines, settings, count))
    for count in counts:
        seconds, _, spent = sorted(runs_of[count])[runs // 2]
        rates[count] = len(lines) / seconds
        print(f"detect --workers {count}: {rates[count]:,.0f} events/s (median of {runs}: {seconds:.2f}s; {spent})")
    for count in counts[1:]:
        print(f"  --workers {count} / --workers {counts[0]}: {rates[count] / rates[counts[0]]:.2f}x")


def bench_stages(lines: list[bytes], settings: Settings) -> dict[str, float]:
    """Seconds per stage, each stage fed the previous stage's output."""
    normalizer = Normalizer(HASHER, settings.input)
    started = time.perf_counter()
    events = [ev for line in lines for ev in normalizer.normalize(line, "b").events]
    parse = time.perf_counter() - started
    enricher = Enricher(settings.enrich)
    started = time.perf_counter()
    enriched = [enricher(ev) for ev in events]
    enrich = time.perf_counter() - started
    engine = build_engine(settings, None)
    started = time.perf_counter()
    for ev in enriched:
        engine.submit(ev)
    engine.flush()
    detect = time.perf_counter() - started
    return {"parse+validate": parse, "enrich": enrich, "engine (dedup+order+detect+alert)": detect}


def bench_memory(lines: list[bytes], settings: Settings) -> tuple[int, dict[str, int]]:
    """Bytes allocated (and still held) by each part of the engine, by tracemalloc."""
    normalizer = Normalizer(HASHER, settings.input)
    enricher = Enricher(settings.enrich)
    events = [enricher(ev) for line in lines for ev in normalizer.normalize(line, "b").events]
    engine = build_engine(settings, None)
    gc.collect()
    tracemalloc.start()
    for ev in events:
        engine.submit(ev)
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    parts: dict[str, int] = {}
    for stat in snapshot.statistics("filename"):
        name = stat.traceback[0].filename
        if "detectors/state.py" in name:
            part = "lineage state (detectors/state.py)"
        elif "/detectors/" in name:
            part = "detector-owned state (" + name.rsplit("/", 1)[-1] + ")"
        elif "pipeline/runtime/engine.py" in name:
            part = "dedup window + reorder buffer (engine)"
        else:
            part = "other (alerts, interned values, caches)"
        parts[part] = parts.get(part, 0) + stat.size
    return len(engine.state.tokens), parts


def bench_anomaly(lines: list[bytes], settings: Settings) -> None:
    """Rules plus the anomaly detector, with a model trained on the same traffic."""
    import tempfile

    from detectors.anomaly.model import save
    from pipeline.model.train import anomaly_config, read_events, train_from_events

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "traffic.jsonl"
        source.write_bytes(b"\n".join(lines) + b"\n")
        config = anomaly_config(settings, min_training_windows=50)
        model = train_from_events(read_events(source, settings), config, settings)
        path = Path(tmp) / "anomaly.skops"
        save(model, path)
        with_model = Settings(detectors={"anomaly": {"model_path": str(path)}})
        bench_detect(lines[:5000], with_model)
        seconds, alerts, _ = bench_detect(lines, with_model)
    print(f"detect, all rules + anomaly ({model.windows:,} training windows): "
          f"{len(lines) / seconds:,.0f} events/s ({seconds:.2f}s, {alerts} alerts)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--memory-events", type=int, default=100_000)
    parser.add_argument("--anomaly", action="store_true", help="also measure with the anomaly detector on")
    parser.add_argument("--pure", action="store_true",
                        help="the pure-Python sources even where `make compile` built them (the memory breakdown "
                        "needs it: tracemalloc cannot tell which compiled module allocated)")
    parser.add_argument("--workers", type=int, nargs="*", metavar="N",
                        help="only compare `detect --workers` counts (default with no N: 1 and 2)")
    parser.add_argument("--batch-lines", type=int, nargs="+", metavar="N",
                        help="with --workers: lines per message to a worker, each size measured in turn")
    args = parser.parse_args()
    if args.workers is not None:
        lines = list(generate(args.events))
        for batch in args.batch_lines or [worker_pool.BATCH_LINES]:
            worker_pool.BATCH_LINES = batch
            print(f"{batch} lines per message to a worker:")
            bench_workers(lines, Settings(), tuple(args.workers) or (1, 2))
        return
    settings = Settings()
    lines = list(generate(args.events))
    print(f"generated {len(lines):,} lines of benign traffic")
    bench_detect(lines[:5000], settings)  # warm caches and imports
    seconds, alerts, _ = bench_detect(lines, settings)
    print(f"detect, all rules on: {len(lines) / seconds:,.0f} events/s ({seconds:.2f}s, {alerts} alerts)")
    if args.anomaly:
        bench_anomaly(lines, settings)
    bench_workers(lines, settings)
    stages = bench_stages(lines, settings)
    total = sum(stages.values())
    for stage, spent in stages.items():
        print(f"  {stage:<36} {spent / len(lines) * 1e6:6.2f} µs/event  {spent / total:5.1%}")
    tokens, parts = bench_memory(lines[: args.memory_events], settings)
    total = sum(parts.values())
    print(f"memory after {args.memory_events:,} events: {tokens:,} tracked tokens, "
          f"{total / tokens:,.0f} bytes per tracked token in all")
    import pipeline.runtime.engine

    if compiled.is_compiled(pipeline.runtime.engine):  # no Python frame allocates: all of it reads "other"
        print("  (compiled build: tracemalloc cannot tell which module allocated; --pure for the breakdown)")
    for part, size in sorted(parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:<48} {size / tokens:7,.0f} bytes/token  ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
