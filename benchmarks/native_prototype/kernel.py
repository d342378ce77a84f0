"""The per-event kernel the native prototype measures, in Python, on the same exported events.

What a native engine would do for each event once it is parsed: drop a request id seen within
the window, keep each token's last use, flag a use from another network within the
concurrency window and a move faster than the travel limit (haversine), and expire request
ids from the front of a queue. It is the shape of the engine's hottest work (dedup, lineage
state, replay and geo divergence), not the rules themselves: no wording, no alerts.

``python benchmarks/native_prototype/kernel.py EVENTS.tsv`` prints ns/event (CPU, best of 5).
"""

from __future__ import annotations

import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from detectors.geo import haversine_km

WINDOW_S = 300.0
CONCURRENT_S = 60.0
MAX_KMH = 1000.0


@dataclass(slots=True)
class LastUse:
    at: float
    ip: str
    lat: float
    lon: float


def run(events: list[tuple[str, str, float, str, float, float]]) -> tuple[int, int, int]:
    """Duplicates, concurrent uses and impossible moves found in ``events``."""
    seen: dict[str, float] = {}
    order: deque[tuple[float, str]] = deque()
    tokens: dict[str, LastUse] = {}
    duplicates = concurrent = travel = 0
    for request_id, token, at, ip, lat, lon in events:
        while order and order[0][0] < at - WINDOW_S:
            seen.pop(order.popleft()[1], None)
        if request_id in seen:
            duplicates += 1
            continue
        seen[request_id] = at
        order.append((at, request_id))
        last = tokens.get(token)
        if last is not None and last.ip != ip:
            hours = max(at - last.at, 1.0) / 3600
            if at - last.at < CONCURRENT_S:
                concurrent += 1
            if haversine_km(last.lat, last.lon, lat, lon) / hours > MAX_KMH:
                travel += 1
        tokens[token] = LastUse(at, ip, lat, lon)
    return duplicates, concurrent, travel


def load(path: str) -> list[tuple[str, str, float, str, float, float]]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rid, token, at, ip, lat, lon = line.rstrip("\n").split("\t")
            out.append((rid, token, float(at), ip, float(lat), float(lon)))
    return out


def main() -> None:
    events = load(sys.argv[1])
    best = math.inf
    for _ in range(5):
        started = time.process_time()
        found = run(events)
        best = min(best, time.process_time() - started)
    print(f"python kernel: {len(events):,} events, {best / len(events) * 1e9:,.0f} ns/event; "
          f"duplicates, concurrent, travel = {found}")


if __name__ == "__main__":
    main()
