"""Event->alert latency of `tokenwatch run` with the default configuration (issue 18).

Prints figures, asserts nothing (not part of the test suite). Starts a Tansu broker and an
osmem server, runs `tokenwatch run` as a subprocess with the default engine settings
(``allowed_lateness_s`` 5 s, per-source watermarks, in-order events judged at once), offers
``--rate`` lines/s of realistic traffic re-timed to the wall clock, with one single-source attack
(a token used from DE, then from US within a second: concurrent use, gateway lines only) per
``--attack-every`` lines, and reports produce->alert-on-topic p50/p99 (``bench_service.latency``:
from the moment the attack's second line is handed to the producer to the moment its alert is
read from the alerts topic). Target: p99 < 500 ms at 1,000 events/s.

Run: ``python benchmarks/bench_latency.py`` (``--rate 1000 --seconds 30`` by default).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_service import latency  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from tests.integration.servers import tansu_broker  # noqa: E402 -- run as a script: the repository root goes on sys.path first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1_000, help="offered load (lines/s)")
    parser.add_argument("--seconds", type=float, default=30, help="duration of the run")
    parser.add_argument("--attack-every", type=int, default=200, help="one attack per this many lines")
    parser.add_argument("--lateness", type=float, default=None,
                        help="engine.allowed_lateness_s (default: the shipped default, 5 s)")
    parser.add_argument("--cross", action="store_true",
                        help="a cross-source attack (IdP issuance delivered 5 s late, gateway use 1 s) instead")
    args = parser.parse_args()
    from osmem_server import OsmemServer

    with tansu_broker() as bootstrap, OsmemServer.start() as osmem, tempfile.TemporaryDirectory() as tmp:
        print(f"servers: Tansu {bootstrap}, osmem {osmem.url}; {os.cpu_count()} CPUs")
        latency(bootstrap, osmem.url, args.rate, args.seconds, args.attack_every, args.lateness, Path(tmp),
                cross=args.cross)


if __name__ == "__main__":
    main()
