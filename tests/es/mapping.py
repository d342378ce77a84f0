"""The alert index template as dotted field → type, and the sample demo's alerts: what the
Elasticsearch tests check documents and the Kibana export against."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from pipeline.es.templates import index_template

NUMERIC = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}


def field_types(doc_kind: str = "alert") -> dict[str, str]:
    """Every explicitly mapped leaf field of ``doc_kind``'s template, as ``a.b.c`` → type."""
    out: dict[str, str] = {}

    def walk(props: Mapping[str, Any], prefix: str) -> None:
        for name, spec in props.items():
            path = f"{prefix}{name}"
            if "properties" in spec:
                walk(spec["properties"], path + ".")
            elif "type" in spec and spec["type"] != "object":
                out[path] = spec["type"]

    walk(index_template("tokenwatch", doc_kind)["template"]["mappings"]["properties"], "")
    return out


def sample_alerts(out: Path) -> list[dict[str, Any]]:
    """The alerts of the bundled sample under the demo configuration (what ``tokenwatch demo
    --sample`` raises): an attack for every rule in the demo."""
    from pipeline import DATA_DIR
    from pipeline.config import load_settings
    from pipeline.runtime.detect import run_detect

    alerts = out / "alerts.jsonl"
    with open(alerts, "wb") as sink, contextlib.redirect_stderr(io.StringIO()):
        run_detect(load_settings(DATA_DIR / "demo.toml"), str(DATA_DIR / "sample.jsonl"), sink,
                   out / "dead-letters.jsonl", "auto")
    return [orjson.loads(line) for line in alerts.read_bytes().splitlines()]
