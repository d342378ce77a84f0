"""Run raw vendor lines through the whole `detect` path (normalize, real enrichment, engine).

For per-format end-to-end tests: an attack written in the vendor's own format
must raise the right alert, its benign twin none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from pipeline.config import Settings
from pipeline.ingest.enrich import Enricher
from pipeline.runtime.detect import DetectRun, Summary
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
_ENRICHER: dict[str, Enricher] = {}


@dataclass
class Detected:
    alerts: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    summary: Summary

    @property
    def hits(self) -> list[tuple[str, str | None]]:
        """(rule id, token id) per alert, sorted."""
        return sorted((a["rule"]["id"], a["token"].get("id")) for a in self.alerts)


def detect_lines(lines: list[dict[str, Any] | bytes], settings: dict[str, Any] | None = None) -> Detected:
    """Feed lines (dicts are JSON-encoded) in order; return alerts as JSON documents."""
    config = Settings(**(settings or {}))
    key = orjson.dumps(config.enrich.model_dump(mode="json")).decode()
    enricher = _ENRICHER.get(key) or _ENRICHER.setdefault(key, Enricher(config.enrich))
    alerts_out, dead_out = io.BytesIO(), io.BytesIO()
    run = DetectRun(config, make_token_hasher(TEST_HASH_KEY), alerts_out, dead_out, None, enricher,
                    clock=lambda: NOW)
    run.feed((line if isinstance(line, bytes) else orjson.dumps(line) for line in lines), "test")
    summary = run.finish()
    return Detected(
        alerts=[orjson.loads(x) for x in alerts_out.getvalue().splitlines()],
        dead_letters=[orjson.loads(x) for x in dead_out.getvalue().splitlines()],
        summary=summary,
    )


