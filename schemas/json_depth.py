"""Nesting cut in JSON text, before any parser recurses into it: shared by the line reader
(``pipeline.ingest.untrusted``) and the decoder of JSON embedded in a record (``schemas.embedded_json``)."""

from __future__ import annotations

import re

import orjson

DEPTH_MARKER_TEMPLATE = "[tokenwatch: nested deeper than {depth} levels, cut]"
"""What stands in for a container cut for depth (``depth``: the limit)."""

_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def cut_deep_text(text: str, max_depth: int) -> str:
    """JSON text with every container deeper than ``max_depth`` replaced by a marker string
    (``DEPTH_MARKER_TEMPLATE``), found by a scan that skips strings whole (a parser would
    recurse)."""
    out: list[str] = []
    depth, kept_until, cut_from = 0, 0, -1
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            continue
        if token in "[{":
            depth += 1
            if depth == max_depth + 1:
                cut_from = match.start()
        else:
            if depth == max_depth + 1 and cut_from >= 0:
                marker = orjson.dumps(DEPTH_MARKER_TEMPLATE.format(depth=max_depth)).decode()
                out.append(f"{text[kept_until:cut_from]}{marker}")
                kept_until, cut_from = match.end(), -1
            depth -= 1
    out.append(text[kept_until:])
    return "".join(out)
