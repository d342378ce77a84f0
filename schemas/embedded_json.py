"""JSON carried as a string inside a record, decoded under the same bounds as a line.

Some exports wrap a record's body as text: AKS diagnostic settings put the whole
Kubernetes audit event in ``properties.log``, the AzureDiagnostics table in ``log_s``,
and the Log Analytics query API returns ``dynamic`` columns as JSON strings. The line
was bounded when it was parsed; the text inside it was not, so it gets its own bounds:
a size cap, orjson's strict parse (a malformed body is the record's fault, not a
field's), and nesting deeper than ``MAX_DEPTH`` cut to a marker, so that no later step
(redaction, a dead letter's quote) recurses without bound.

The decoded value replaces the text in the record (``decode_in_place``): the
normalizer repairs a refused field at its location in the record it handed to the
adapter, and only a decoded body has locations inside it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import orjson

from schemas.sources.base import InvalidRecord

MAX_TEXT_CHARS = 1_048_576
"""Longest embedded body decoded (the default ``input.max_line_bytes``: it cannot be longer in a line)."""

MAX_DEPTH = 64
"""Containers nested deeper than this (below the embedded value) are replaced by ``DEPTH_MARKER``."""

DEPTH_MARKER = "[tokenwatch: nested deeper than 64 levels, cut]"


def decode_in_place(
    holder: MutableMapping[str, Any], key: str, fmt: str, path: str, repairs: Counter[str]
) -> Any:
    """The value at ``holder[key]``: a string is decoded (bounded) and put back decoded;
    anything else is returned as it is (already decoded, or for the model to judge).
    ``fmt`` and ``path`` (the field's dotted path in the record) name it in reasons
    (``aks: properties.log: not JSON``) and repair counters (``aks.properties.log: …``)."""
    value = holder.get(key)
    if not isinstance(value, str):
        return value
    if len(value) > MAX_TEXT_CHARS:
        raise InvalidRecord(f"{fmt}: {path}: embedded JSON of {len(value)} characters exceeds {MAX_TEXT_CHARS}")
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidRecord(f"{fmt}: {path}: not JSON: {str(exc)[:120]}") from None
    if value.count("{") + value.count("[") > MAX_DEPTH:  # only then can it nest too deep
        decoded = _bound_depth(decoded, repairs, f"{fmt}.{path}")
    holder[key] = decoded
    return decoded


def _bound_depth(root: Any, repairs: Counter[str], where: str) -> Any:
    """Containers deeper than ``MAX_DEPTH`` replaced by a marker, in place, iteratively."""
    holder = [root]
    stack: list[tuple[Any, Any, int]] = [(holder, 0, 0)]
    while stack:
        parent, key, depth = stack.pop()
        value = parent[key]
        if isinstance(value, dict):
            children = list(value)
        elif isinstance(value, list):
            children = list(range(len(value)))
        else:
            continue
        if depth >= MAX_DEPTH:
            parent[key] = DEPTH_MARKER
            repairs[f"{where}: nesting cut"] += 1
            continue
        stack.extend((value, child, depth + 1) for child in children)
    return holder[0]
