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

import codecs
import json
import math
import re
from collections import Counter
from typing import Any

import orjson

from schemas.json_depth import DEPTH_MARKER_TEMPLATE as DEPTH_MARKER
from schemas.json_depth import cut_deep_text
from schemas.sources.common import cut

MAX_LABEL = 120
"""Characters of a field path in a repair counter's name."""

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
    surrogates, NaN, huge numbers); undecodable bytes are replaced before it sees them,
    and nesting too deep for any parser is cut in the bytes first."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        text = line.decode("utf-8", "replace")
        _count(repairs, "invalid UTF-8 replaced")
    for attempt in range(2):
        try:
            return json.loads(
                text,
                parse_constant=lambda _: _count(repairs, "non-finite number dropped"),
                parse_int=lambda digits: _int(digits, repairs),
                strict=False,
            )
        except RecursionError:
            if attempt:
                break
            text = cut_deep_text(text, PARSE_DEPTH)
            _count(repairs, "nesting cut")
        except ValueError:  # JSONDecodeError
            break
    raise NotJSON(f"not JSON: {str(first.args[0])[:120]}") from None


PARSE_DEPTH = 256
"""Depth at which the text of a line too deep for the parsers is cut before parsing."""

_INT64 = (-(2**63), 2**64 - 1)


def _int(digits: str, repairs: Counter[str] | None) -> int | None:
    """An integer JSON can hold but no 64-bit field can (nor orjson write back): null."""
    if len(digits) > 20 or not _INT64[0] <= int(digits) <= _INT64[1]:
        _count(repairs, "integer beyond 64 bits dropped")
        return None
    return int(digits)


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
    """Cut the strings and lists a vendor model found too long and drop the fields (or list
    elements) it found malformed, in place, so the record can be mapped again; False when
    nothing changed (a required field is missing: the record is a dead letter).

    A union type reports one error per member for the same field (a ``str | list``
    too long as a string is also "not a list"): a cut wins over a drop."""
    located = []
    for error in errors:
        if error["type"] == "missing":  # nothing to cut or drop: the record lacks a required field
            continue
        found = _locate(raw, error["loc"])
        if found is not None:
            located.append((found, error))
    # An error inside a value wins over one about the value itself (a union's "not a str"
    # beside a list whose element is too long): the element is repaired, the list kept.
    inner = {found[3][:n] for found, _ in located for n in range(1, len(found[3]))}
    slots: dict[tuple[int, Any], tuple[Any, Any, str, dict[str, Any] | None]] = {}
    for (parent, key, path, keys), error in located:
        if keys in inner:
            continue
        slot = (id(parent), key)
        cuttable = error["type"] in ("string_too_long", "too_long") and isinstance(error["ctx"].get("max_length"), int)
        if slot not in slots or (cuttable and slots[slot][3] is None):
            slots[slot] = (parent, key, f"{where}.{path[:MAX_LABEL]}", error if cuttable else None)
    changed = False
    # List elements are deleted from the highest index down, so the others keep their place.
    order = sorted(slots.values(), key=lambda s: s[1] if isinstance(s[0], list) else -1, reverse=True)
    for parent, key, label, cut_error in order:
        value = parent[key]
        if cut_error is not None and isinstance(value, str) and len(value) > cut_error["ctx"]["max_length"]:
            parent[key] = cut(value, cut_error["ctx"]["max_length"])
            repairs[f"{label}: cut"] += 1
        elif cut_error is not None and isinstance(value, list) and len(value) > cut_error["ctx"]["max_length"]:
            del value[cut_error["ctx"]["max_length"]:]
            repairs[f"{label}: list cut"] += 1
        else:
            del parent[key]
            repairs[f"{label}: malformed (dropped)"] += 1
        changed = True
    return changed


def _locate(raw: Any, loc: tuple[Any, ...]) -> tuple[Any, Any, str, tuple[Any, ...]] | None:
    """The (container, key, dotted path, key path) a pydantic error location points at in
    the raw record. Parts that name no key here are union member tags (``'str'``,
    ``'list[str]'``, ``'constrained-str'``) and are passed over."""
    parent: Any = None
    key: Any = None
    node = raw
    keys: list[Any] = []
    for part in loc:
        if isinstance(node, dict) and part in node:
            parent, key, node = node, part, node[part]
            keys.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, key, node = node, part, node[part]
            keys.append(part)
        elif isinstance(part, int):
            break
    if parent is None:
        return None
    return parent, key, ".".join(str(k) for k in keys if not isinstance(k, int)), tuple(keys)


class RepairingReader:
    """A file-like view of a JSON byte stream that hands a streaming parser (ijson, which
    stops at the first fault) what ``parse_line`` repairs in a line: undecodable bytes
    become U+FFFD; ``NaN``, ``Infinity`` and numbers no double or 64-bit integer holds
    become null. So one odd value in record 5 of a log file costs nothing, not records
    5 onwards. (A value such as ``":NaN,"`` inside a string is read as null too.)"""

    CHUNK = 1 << 16
    TAIL = 64  # characters held back so that no token is split between two chunks

    def __init__(self, source: Any, repairs: Counter[str] | None = None) -> None:
        self._source = source
        self._repairs = repairs
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._tail = ""
        self._out = b""
        self._eof = False

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # readers probe the type of what read returns this way
            return b""
        want = self.CHUNK if size is None or size < 0 else size
        while len(self._out) < want and not self._eof:
            self._fill()
        out, self._out = self._out[:want], self._out[want:]
        return out

    def _fill(self) -> None:
        chunk = self._source.read(self.CHUNK)
        decoded = self._decoder.decode(chunk, final=not chunk)
        if decoded.count("\ufffd") > chunk.count(b"\xef\xbf\xbd"):
            _count(self._repairs, "invalid UTF-8 replaced")
        text = self._tail + decoded
        if not chunk:
            self._eof = True
            self._tail = ""
        else:
            split = max(len(text) - self.TAIL, 0)
            while split > 0 and text[split - 1] in _NUMBER_CHARS:  # never split a number ...
                split -= 1
            while split > 0 and text[split - 1] in " \t\r\n":
                split -= 1
            if split > 0 and text[split - 1] in ":[,":  # ... nor part it from what precedes it
                split -= 1
            text, self._tail = text[:split], text[split:]
        self._out += _BAD_NUMBER.sub(self._null, text).encode("utf-8")

    def _null(self, match: re.Match[str]) -> str:
        _count(self._repairs, "non-finite number dropped" if match.group(2)[-1] in "yN" else "number out of range dropped")
        return match.group(1) + "null"


_NUMBER_CHARS = frozenset("0123456789+-.eEaNIinfty")
_BAD_NUMBER = re.compile(
    r"(?<=[:\[,])(\s*)(-?Infinity|NaN|-?\d{20,}(?:\.\d+)?(?:[eE][+-]?\d+)?|-?\d+(?:\.\d+)?[eE]\+?\d{3,})(?=\s*[,\]}])"
)
