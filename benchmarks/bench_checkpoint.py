"""Checkpoint cost against what a partition holds (issue 15).

CPU time to build one checkpoint's changelog records when a detector table holds ``--held``
rows and ``--changed`` of them changed since the last checkpoint, after the periodic expiry
ran (the lineage state's and the replay detector's, as the engine runs them).

Prints figures, asserts nothing (not part of the test suite). The held rows are the replay
detector's request ids (its default cap is 1,000,000), filled through the detector's own
table; the changed rows are new request ids, as a stream of fresh requests makes them.

Run: ``python benchmarks/bench_checkpoint.py`` (``--held 1000000 --changed 100`` by default).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from detectors import state_codec  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from detectors.replay import SEEN_REQUEST, ReplayDetector, SeenRequest  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from detectors.state import StateStore, stable_hash  # noqa: E402 -- run as a script: the repository root goes on sys.path first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].replace("\n", " "))
    parser.add_argument("--held", type=int, default=1_000_000, help="rows held in the table (default: %(default)s)")
    parser.add_argument("--changed", type=int, default=100,
                        help="rows changed between two checkpoints (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="checkpoints timed (default: %(default)s)")
    args = parser.parse_args()
    replay = ReplayDetector()

    store = StateStore(track_changes=True)
    requests = store.table("replay", "requests", SEEN_REQUEST)
    for i in range(args.held):
        requests.put(stable_hash("token", f"held-{i}"), SeenRequest(1_000.0 + i * 1e-3, f"ev-{i}", "gateway"))
    started = time.perf_counter()
    first = state_codec.dirty_records(store)
    print(f"first checkpoint: {len(first):,} records in {time.perf_counter() - started:.2f} s")

    timings, sizes = [], []
    for round_ in range(args.rounds):
        for j in range(args.changed):
            requests.put_last(stable_hash("token", f"new-{round_}-{j}"), SeenRequest(5_000.0, f"nev-{j}", "gateway"))
        store.expire(1.0)  # the engine's periodic expiry runs between checkpoints: lineage first,
        replay.expire(1.0, store)  # then each detector's own tables
        started = time.process_time()
        records = state_codec.dirty_records(store)
        timings.append(time.process_time() - started)
        sizes.append(len(records))
    median_ms = statistics.median(timings) * 1e3
    print(f"checkpoint with {args.changed} of {args.held:,} rows changed: {sizes[-1]} records, "
          f"median {median_ms:.2f} ms CPU (min {min(timings) * 1e3:.2f}, max {max(timings) * 1e3:.2f}; "
          f"{args.rounds} rounds)")


if __name__ == "__main__":
    main()
