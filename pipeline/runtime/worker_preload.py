"""Imported once by the fork server of the `detect --workers` processes, never by a worker itself.

It loads the shipped geo tables (module-level caches: about 110 MB of memory, nearly all of it
geoip2fast's ranges, and 0.3-0.4 s of CPU, medians of 5 on a shared 2-core machine; only ~4,500
of their objects are ones the garbage collector tracks) in the server, so every worker forked
from it starts with them loaded and shares their pages instead of loading its own copy. A
worker's configured enrichment is still built from its settings; only the shipped data comes
from here.
"""

from __future__ import annotations

import gc

from pipeline.ingest.enrich import Enricher
from pipeline.ingest.enrich_config import EnrichConfig

Enricher(EnrichConfig()).warm()
gc.freeze()  # what the server loaded is never collected: its pages stay shared after a fork
