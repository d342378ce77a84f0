"""Untrusted bytes → a bounded JSON value, or a clear reason why not.

The person tokenwatch watches writes part of its input (their User-Agent, the
path they request, their request ids), so a line must never be lost for what
such a field holds. orjson parses the well-formed majority; what it refuses for
a field's content rather than the line's structure is repaired and counted:

- bytes that are not UTF-8 (nginx ``escape=json`` writes header bytes as-is)
  and lone surrogate escapes (``"\\ud800"``) become U+FFFD;
- ``NaN`` / ``Infinity`` and numbers beyond a double become ``null``;
- nesting deeper than ``max_depth`` is cut: the too-deep value is replaced by a
  marker string, so no later step (redaction, serialisation) recurses without
  bound.

Everything here is iterative: no input can exhaust the Python stack.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any

import orjson

from schemas.sources.common import cut

MAX_LABEL = 120
"""Characters of a field path in a repair counter's name."""

DEPTH_MARKER = "[tokenwatch: nested deeper than {depth} levels, cut]"
_SURROGATE = re.compile("[\ud800-\udfff]")


class NotJSON(ValueError):
    """The line is not a JSON value even after repair; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_line(line: bytes, max_depth: int, repairs: Counter[str] | None = None) -> Any:
    """Parse one line; repairs made are counted in ``repairs`` by kind."""
    try:
        value = orjson.loads(line)
        dirty = False
    except orjson.JSONDecodeError as exc:
        value = _lenient(line, exc, repairs)
        dirty = True
    # A line can only nest as deep as it has brackets: most lines need no walk at all.
    if dirty or line.count(b"{") + line.count(b"[") > max_depth:
        value = _bound(value, max_depth, dirty, repairs)
    return value


def _lenient(line: bytes, first: orjson.JSONDecodeError, repairs: Counter[str] | None) -> Any:
    """The standard library parser accepts what orjson refuses for content (lone
    surrogates, NaN, huge numbers); undecodable bytes are replaced before it sees them."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        _count(repairs, "invalid UTF-8 replaced")
    try:
        return json.loads(text, parse_constant=lambda _: _count(repairs, "non-finite number dropped"), strict=False)
    except RecursionError:
        raise NotJSON("not JSON: nested too deep to parse") from None
    except ValueError:  # JSONDecodeError, or an integer of more than 4300 digits
        raise NotJSON(f"not JSON: {str(first.args[0])[:120]}") from None


def bound_value(value: Any, max_depth: int, repairs: Counter[str] | None = None) -> Any:
    """A value parsed elsewhere (a streamed CloudTrail record) held to the same rules as a
    line: depth cut, lone surrogates replaced, non-finite numbers dropped. orjson writes
    the clean majority back in microseconds; only what it refuses, or what has more
    brackets than ``max_depth``, is walked."""
    try:
        body = orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return _bound(value, max_depth, True, repairs)
    if body.count(b"{") + body.count(b"[") > max_depth:
        return _bound(value, max_depth, False, repairs)
    return value


def _bound(root: Any, max_depth: int, clean_strings: bool, repairs: Counter[str] | None) -> Any:
    """Copy-free fix-up in place: cut containers deeper than ``max_depth``; when the
    stdlib parser was used, also replace lone surrogates and non-finite floats."""
    holder = [root]
    # (container, key or index, depth of the value at that slot)
    stack: list[tuple[Any, Any, int]] = [(holder, 0, 0)]
    while stack:
        parent, key, depth = stack.pop()
        value = parent[key]
        if isinstance(value, dict):
            if depth >= max_depth:
                parent[key] = DEPTH_MARKER.format(depth=max_depth)
                _count(repairs, "nesting cut")
                continue
            if clean_strings and any(isinstance(k, str) and _SURROGATE.search(k) for k in value):
                value = parent[key] = {_clean_key(k): v for k, v in value.items()}
                _count(repairs, "lone surrogate replaced")
            stack.extend((value, k, depth + 1) for k in value)
        elif isinstance(value, list):
            if depth >= max_depth:
                parent[key] = DEPTH_MARKER.format(depth=max_depth)
                _count(repairs, "nesting cut")
                continue
            stack.extend((value, i, depth + 1) for i in range(len(value)))
        elif clean_strings:
            if isinstance(value, str):
                if _SURROGATE.search(value):
                    parent[key] = _SURROGATE.sub("\ufffd", value)
                    _count(repairs, "lone surrogate replaced")
            elif isinstance(value, float) and not math.isfinite(value):
                parent[key] = None
                _count(repairs, "non-finite number dropped")
    return holder[0]


def _clean_key(key: Any) -> Any:
    return _SURROGATE.sub("\ufffd", key) if isinstance(key, str) else key


def _count(repairs: Counter[str] | None, kind: str) -> None:
    """Count one repair (``NaN``/``Infinity`` literals come through here too: read as null)."""
    if repairs is not None:
        repairs[kind] += 1


def repair_fields(raw: Any, errors: list[dict[str, Any]], where: str, repairs: Counter[str]) -> bool:
    """Cut the strings and lists a vendor model found too long and drop the fields it
    found malformed, in place, so the record can be mapped again; False when nothing
    could be repaired (a required field is missing: the record is a dead letter).

    A union type reports one error per member for the same field (a ``str | list``
    too long as a string is also "not a list"): a cut wins over a drop."""
    slots: dict[tuple[int, Any], tuple[Any, Any, str, dict[str, Any] | None]] = {}
    for error in errors:
        found = _locate(raw, error["loc"])
        if found is None:
            continue
        parent, key, path = found
        slot = (id(parent), key)
        path = path[:MAX_LABEL]
        cuttable = error["type"] in ("string_too_long", "too_long") and isinstance(error["ctx"].get("max_length"), int)
        if slot not in slots or (cuttable and slots[slot][3] is None):
            slots[slot] = (parent, key, f"{where}.{path}", error if cuttable else None)
    for parent, key, label, cut_error in slots.values():
        value = parent[key]
        if cut_error is not None and isinstance(value, str):
            parent[key] = cut(value, cut_error["ctx"]["max_length"])
            repairs[f"{label}: cut"] += 1
        elif cut_error is not None and isinstance(value, list):
            del value[cut_error["ctx"]["max_length"]:]
            repairs[f"{label}: list cut"] += 1
        elif isinstance(parent, dict):
            del parent[key]
            repairs[f"{label}: malformed (dropped)"] += 1
        else:  # an element of a list: keep the list's length, drop the element's value
            parent[key] = None
            repairs[f"{label}: malformed (dropped)"] += 1
    return bool(slots)


def _locate(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, Any, str] | None:
    """The (container, key, dotted path) a pydantic error location points at in the raw
    record; union member tags in the location (``'str'``, ``'list[str]'``) are not keys
    and end the walk."""
    parent: Any = None
    key: Any = None
    node = raw
    path: list[str] = []
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
            path.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, key, node = node, part, node[part]
        else:
            break
    return (parent, key, ".".join(path)) if parent is not None else None
