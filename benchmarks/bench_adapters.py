"""Per-format adapter throughput: raw JSON line -> canonical events.

Feeds each format's documented sample lines (tests/data/formats/) through the
normalizer (JSON parse, format detection, vendor validation, mapping) in a
loop and prints events/s and lines/s per format. Prints figures only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.ingest.normalize import Normalizer  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from schemas.redaction import make_token_hasher  # noqa: E402 -- run as a script: the repository root goes on sys.path first

SAMPLES = ROOT / "tests" / "data" / "formats"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per format")
    args = parser.parse_args()
    normalizer = Normalizer(make_token_hasher(b"benchmark-key-0123456789abcdef"))
    normalizer.config = normalizer.config.model_copy(update={"max_future_skew_s": 10 * 365 * 86_400})
    print(f"{'format':<12} {'lines/s':>10} {'events/s':>10}  (sample lines, {args.lines:,} per format)")
    for sample in sorted(SAMPLES.glob("*.jsonl")):
        lines = sample.read_bytes().splitlines()
        batch = (lines * (args.lines // len(lines) + 1))[: args.lines]
        events = 0
        started = time.perf_counter()
        for line in batch:
            events += len(normalizer.normalize(line, "bench").events)
        spent = time.perf_counter() - started
        print(f"{sample.stem:<12} {len(batch) / spent:>10,.0f} {events / spent:>10,.0f}")


if __name__ == "__main__":
    main()
