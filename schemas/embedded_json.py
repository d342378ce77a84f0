"""JSON carried as a string inside a record, decoded under the same bounds as a line.

Some exports wrap a record's body as text: AKS diagnostic settings put the whole
Kubernetes audit event in ``properties.log``, the AzureDiagnostics table in ``log_s``,
and the Log Analytics query API returns ``dynamic`` columns as JSON strings. The line
was bounded when it was parsed; the text inside it was not, so it gets its own bounds:
a size cap, and nesting deeper than ``MAX_DEPTH`` cut to a marker, so that no later step
(redaction, a dead letter's quote) recurses without bound. The body holds what the
watched caller sent (an AKS audit event's ``requestObject``: a custom resource nested
past orjson's 1,024 levels, say), so what orjson refuses for content rather than
structure is repaired as in a line, never a reason to lose the record: nesting past
``PARSE_DEPTH`` is cut in the text, ``NaN``/``Infinity``, numbers beyond a double or 64
bits and lone surrogate escapes become null or U+FFFD. Text that is not JSON at all is
the record's fault.

The decoded value replaces the text in the record (``decode_in_place``): the
normalizer repairs a refused field at its location in the record it handed to the
adapter, and only a decoded body has locations inside it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import MutableMapping
from typing import Any

import orjson

from schemas.json_depth import DEPTH_MARKER_TEMPLATE, cut_deep_text
from schemas.sources.base import InvalidRecord

MAX_TEXT_CHARS = 1_048_576
"""Longest embedded body decoded (the default ``input.max_line_bytes``: it cannot be longer in a line)."""

MAX_DEPTH = 64
"""Containers nested deeper than this (below the embedded value) are replaced by ``DEPTH_MARKER``."""

DEPTH_MARKER = DEPTH_MARKER_TEMPLATE.format(depth=MAX_DEPTH)

PARSE_DEPTH = 256
"""Depth at which text too deep for the parsers is cut before the lenient parse."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT_RANGE = (-(2**63), 2**64 - 1)


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
        decoded = _lenient(value, f"{fmt}.{path}", repairs)
        if decoded is _NOT_JSON:
            raise InvalidRecord(f"{fmt}: {path}: not JSON: {str(exc)[:120]}") from None
    if value.count("{") + value.count("[") > MAX_DEPTH:  # only then can it nest too deep
        decoded = _bound_depth(decoded, repairs, f"{fmt}.{path}")
    holder[key] = decoded
    return decoded


_NOT_JSON = object()


def _lenient(text: str, where: str, repairs: Counter[str]) -> Any:
    """What orjson refused, parsed as ``pipeline.ingest.untrusted`` parses a line: the standard
    parser with non-finite numbers and out-of-range integers as null, lone surrogates as
    U+FFFD, nesting too deep for it cut in the text first; ``_NOT_JSON`` when it is not JSON."""
    if text.count("{") + text.count("[") > PARSE_DEPTH:
        text = cut_deep_text(text, PARSE_DEPTH)
        repairs[f"{where}: nesting cut"] += 1

    def dropped(kind: str) -> None:
        repairs[f"{where}: {kind}"] += 1

    def integer(digits: str) -> int | None:
        if len(digits) > 20 or not _INT_RANGE[0] <= int(digits) <= _INT_RANGE[1]:
            dropped("integer beyond 64 bits dropped")
            return None
        return int(digits)

    def number(digits: str) -> float | None:
        value = float(digits)
        if value in (float("inf"), float("-inf")):
            dropped("non-finite number dropped")
            return None
        return value

    try:
        decoded = json.loads(text, parse_constant=lambda _: dropped("non-finite number dropped"),
                             parse_int=integer, parse_float=number, strict=False)
    except (ValueError, RecursionError):
        return _NOT_JSON
    if _SURROGATE.search(text) or "\\ud" in text.lower():
        decoded = _clean_strings(decoded, where, repairs)
    return decoded


def _clean_strings(root: Any, where: str, repairs: Counter[str]) -> Any:
    """Lone surrogates (which no encoder writes back) replaced by U+FFFD, keys and values, iteratively."""
    holder = [root]
    stack: list[tuple[Any, Any]] = [(holder, 0)]
    while stack:
        parent, key = stack.pop()
        value = parent[key]
        if isinstance(value, str) and _SURROGATE.search(value):
            parent[key] = _SURROGATE.sub("\ufffd", value)
            repairs[f"{where}: lone surrogate replaced"] += 1
        elif isinstance(value, dict):
            for name in [name for name in value if _SURROGATE.search(name)]:
                value[_SURROGATE.sub("\ufffd", name)] = value.pop(name)
                repairs[f"{where}: lone surrogate replaced"] += 1
            stack.extend((value, child) for child in value)
        elif isinstance(value, list):
            stack.extend((value, index) for index in range(len(value)))
    return holder[0]


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
