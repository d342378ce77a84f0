"""Per-format adapter cost: raw JSON line -> canonical events, fast path on and off.

Feeds each format's documented sample lines (tests/data/formats/) and the benchmark
traffic (benchmarks/traffic.py: gateway and canonical lines) through the normalizer
(JSON parse, format detection, vendor validation, mapping) and prints CPU µs per line,
median of ``--repeat`` runs, with ``input.fast_path`` on (msgspec, ``schemas.fast``) and
off (pydantic only). Prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.traffic import generate  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.config import InputConfig  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.normalize import Normalizer  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from schemas.redaction import make_token_hasher  # noqa: E402 -- run as a script: the repository root goes on sys.path first

SAMPLES = ROOT / "tests" / "data" / "formats"
HASHER = make_token_hasher(b"benchmark-key-0123456789abcdef")


def cpu_per_line(lines: list[bytes], fast: bool) -> tuple[float, int]:
    """CPU µs per line through a fresh normalizer, and the events it made."""
    config = InputConfig(max_future_skew_s=10 * 365 * 86_400, fast_path=fast)
    normalizer = Normalizer(HASHER, config)
    events = 0
    started = time.process_time()
    for line in lines:
        events += len(normalizer.normalize(line, "bench").events)
    return (time.process_time() - started) / len(lines) * 1e6, events


def compare(name: str, lines: list[bytes], repeat: int) -> None:
    """One row: µs/line on each path (runs interleaved, so load on the machine hits both)."""
    runs: dict[bool, list[float]] = {True: [], False: []}
    events = 0
    for _ in range(repeat):
        for fast in (False, True):
            spent, events = cpu_per_line(lines, fast)
            runs[fast].append(spent)
    slow, quick = statistics.median(runs[False]), statistics.median(runs[True])
    print(f"{name:<22} {slow:>9.2f} {quick:>9.2f} {slow / quick:>7.2f}x {events / len(lines):>7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000, help="lines per format")
    parser.add_argument("--traffic", type=int, default=100_000, help="lines of benchmark traffic")
    parser.add_argument("--repeat", type=int, default=3, help="runs per path (the median is printed)")
    args = parser.parse_args()
    print(f"{'lines':<22} {'pydantic':>9} {'fast':>9} {'gain':>8} {'ev/line':>7}  (CPU µs/line, median of {args.repeat})")
    traffic = list(generate(args.traffic))
    compare("traffic: gateway", [line for line in traffic if b'"canonical_version"' not in line], args.repeat)
    compare("traffic: canonical", [line for line in traffic if b'"canonical_version"' in line], args.repeat)
    compare("traffic: all", traffic, args.repeat)
    for sample in sorted(SAMPLES.glob("*.jsonl")):
        lines = sample.read_bytes().splitlines()
        compare(sample.stem, (lines * (args.lines // len(lines) + 1))[: args.lines], args.repeat)


if __name__ == "__main__":
    main()
