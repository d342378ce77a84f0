"""Writes the benchmark traffic's events, parsed and enriched by tokenwatch, as the TSV the
native prototype and ``kernel.py`` read: request id, token id, epoch, IP, latitude, longitude;
every 500th event is followed by its replay and by a use of its token from Sydney 10 s later,
so both kernels have something to find (and must find the same).

``python benchmarks/native_prototype/export_events.py 60000 /tmp/events.tsv``
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_detect import HASHER  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from benchmarks.traffic import generate  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.config import Settings  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.enrich import Enricher  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.normalize import Normalizer  # noqa: E402 -- run as a script: the repository root goes on sys.path first


def main() -> None:
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    settings = Settings()
    normalizer, enricher = Normalizer(HASHER, settings.input), Enricher(settings.enrich)
    rows = []
    for number, line in enumerate(generate(count)):
        for event in normalizer.normalize(line, f"bench:{number}").events:
            event = enricher(event)
            geo = event.network.geo if event.network else None
            if event.network is None or event.network.ip is None or geo is None or geo.lat is None or geo.lon is None:
                continue
            request = event.request.id if event.request and event.request.id else event.event_id
            rows.append(f"{request}\t{event.token.id}\t{event.epoch}\t{event.network.ip}\t{geo.lat}\t{geo.lon}\n")
            if len(rows) % 500 == 0:  # a replayed request, then the token used from across the world 10 s later
                rows.append(rows[-1])
                rows.append(f"{request}-far\t{event.token.id}\t{event.epoch + 10}\t203.0.113.9\t-33.87\t151.21\n")
    out.write_text("".join(rows), encoding="utf-8")
    print(f"{len(rows):,} events of {count:,} lines to {out}")


if __name__ == "__main__":
    main()
