"""Cost of enriching a network the enricher has not seen: each event of a source that
rotates its addresses (IPv6 privacy addresses, mobile carriers, a botnet or a residential
proxy network spraying requests) is such a miss, so this cost, not the cached one, bounds
the rate on that traffic.

Draws ``--addresses`` random public IPv4 addresses (a fixed seed) and enriches each once
with a fresh enricher, then enriches the same events again. Prints CPU µs per
address of each pass (median of ``--rounds``) and how many AS organisation names they
carried; asserts nothing. Run beside an older checkout with ``python
benchmarks/bench_enrich.py`` in each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from ipaddress import IPv4Address
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.ingest.enrich import Enricher
from pipeline.ingest.enrich_config import EnrichConfig
from schemas.events import CanonicalEvent, EventKind, Network, TokenRef

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def addresses(count: int) -> list[str]:
    draw = random.Random(17)
    out: list[str] = []
    while len(out) < count:
        address = IPv4Address(draw.randrange(1 << 24, 224 << 24))
        if address.is_global:
            out.append(str(address))
    return out


def use_from(ip: str, number: int) -> CanonicalEvent:
    """A use from ``ip``, with its own network object (as the adapters make one per line)."""
    return CanonicalEvent(event_id=f"e-{number}", kind=EventKind.USED, time=T0, source="bench",
                          token=TokenRef(id=f"t-{number}"), network=Network(ip=ip, user_agent="Mozilla/5.0"))


def one_round(events: list[CanonicalEvent]) -> tuple[float, float, int]:
    """µs per address enriched for the first time, then again; distinct organisation names."""
    enricher = Enricher(EnrichConfig())
    enricher.warm()
    start = time.process_time()
    enriched = [enricher(event).network for event in events]
    first = time.process_time() - start
    start = time.process_time()
    for event in events:
        enricher(event)
    again = time.process_time() - start
    orgs = {network.as_org for network in enriched if network.as_org}
    return first / len(events) * 1e6, again / len(events) * 1e6, len(orgs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--addresses", type=int, default=20_000, help="distinct addresses (default 20,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each with a fresh enricher (median)")
    args = parser.parse_args()
    events = [use_from(ip, number) for number, ip in enumerate(addresses(args.addresses))]
    rounds = [one_round(events) for _ in range(args.rounds)]
    print(f"{args.addresses:,} random public addresses, {rounds[0][2]:,} AS organisation names")
    print(f"  first sight: {statistics.median(r[0] for r in rounds):7.1f} µs per address (CPU, median of {args.rounds})")
    print(f"  again:       {statistics.median(r[1] for r in rounds):7.1f} µs per address "
          "(the same events again: each network found by its object, or past enrich.network_cache_size "
          "addresses by the per-address answers)")


if __name__ == "__main__":
    main()
