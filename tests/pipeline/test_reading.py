"""Bounded reading and parsing of untrusted lines (pipeline/ingest/reading.py, pipeline/ingest/untrusted.py)."""

from __future__ import annotations

import hashlib
import io
from collections import Counter

import pytest

from pipeline.ingest.reading import LongLine, read_lines
from pipeline.ingest.untrusted import DEPTH_MARKER, NotJSON, cut_deep_text, parse_line, repair_fields


def _read(data: bytes, cap: int) -> list[bytes | tuple[int, str, bytes]]:
    out: list[bytes | tuple[int, str, bytes]] = []
    for item in read_lines(io.BytesIO(data), cap):
        if isinstance(item, LongLine):
            item.finish()
            out.append((item.size, item.sha256, item.head))
        else:
            out.append(item)
    return out


def test_lines_up_to_the_cap_pass_whatever_their_ending() -> None:
    data = b"a" * 10 + b"\r\n" + b"b" * 10 + b"\n" + b"c" * 10
    assert _read(data, 10) == [b"a" * 10 + b"\r\n", b"b" * 10 + b"\n", b"c" * 10]


@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_longer_line_is_sized_and_hashed_without_being_kept(ending: bytes) -> None:
    body = b"x" * 5000
    [(size, sha, head), after] = _read(body + ending + b"next\n", 100)
    assert size == 5000 and sha == hashlib.sha256(body).hexdigest() and len(head) <= 102
    assert after == b"next\n"


def test_a_long_last_line_without_a_newline_and_one_just_past_the_cap() -> None:
    assert _read(b"x" * 5000, 100) == [(5000, hashlib.sha256(b"x" * 5000).hexdigest(), b"x" * 102)]
    assert _read(b"y" * 101 + b"\n", 100) == [(101, hashlib.sha256(b"y" * 101).hexdigest(), b"y" * 101)]


def test_a_long_line_reads_back_whole_through_its_file_view() -> None:
    body = bytes(b for b in range(256) if b != 10) * 40
    item = next(read_lines(io.BytesIO(body + b"\n"), 1000))
    assert isinstance(item, LongLine)
    assert item.read(0) == b""  # a reader's type probe takes nothing
    pieces = []
    while chunk := item.read(333):
        assert len(chunk) <= 333
        pieces.append(chunk)
    assert b"".join(pieces) == body and item.size == len(body)


def test_odd_content_is_repaired_and_counted() -> None:
    repairs: Counter[str] = Counter()
    value = parse_line(b'{"ua": "\\ud800x\xff", "n": NaN, "big": 1' + b"0" * 400 + b', "i": -Infinity}', 64, repairs)
    assert value == {"ua": "\ufffdx\ufffd", "n": None, "big": None, "i": None}
    assert repairs == {"invalid UTF-8 replaced": 1, "lone surrogate replaced": 1, "non-finite number dropped": 2,
                       "integer beyond 64 bits dropped": 1}


@pytest.mark.parametrize("depth", [100, 1_000, 1_100, 20_000])
def test_nesting_is_cut_at_max_depth_however_deep(depth: int) -> None:
    line = b'{"keep": 1, "deep": ' + b"[" * depth + b"]" * depth + b"}"
    value = parse_line(line, 8)
    assert value["keep"] == 1
    node, levels = value["deep"], 1
    while isinstance(node, list):
        node, levels = node[0], levels + 1
    assert node == DEPTH_MARKER.format(depth=8) and levels == 8


def test_the_text_cut_skips_brackets_inside_strings() -> None:
    assert cut_deep_text('{"a": [["[[x", {"b": "]"}]], "c": 2}', 2) == (
        '{"a": ["' + DEPTH_MARKER.format(depth=2) + '"], "c": 2}'
    )


def test_broken_json_stays_a_clear_error() -> None:
    with pytest.raises(NotJSON, match="not JSON"):
        parse_line(b'{"a": ', 64)


def test_repairs_cut_in_unions_drop_list_elements_and_leave_missing_fields_alone() -> None:
    raw = {"scope": ["ok", "s" * 50, 7], "ua": "u" * 40, "sub": {"x": 1}}
    errors = [
        {"loc": ("scope", "str"), "type": "string_type", "ctx": {}},
        {"loc": ("scope", "list[constrained-str]", 1), "type": "string_too_long", "ctx": {"max_length": 20}},
        {"loc": ("scope", "list[constrained-str]", 2), "type": "string_type", "ctx": {}},
        {"loc": ("ua",), "type": "string_too_long", "ctx": {"max_length": 30}},
        {"loc": ("sub",), "type": "string_type", "ctx": {}},
        {"loc": ("jti",), "type": "missing", "ctx": {}},
    ]
    repairs: Counter[str] = Counter()
    assert repair_fields(raw, errors, "gw", repairs)
    assert raw["scope"][0] == "ok" and len(raw["scope"]) == 2 and len(raw["scope"][1]) == 20
    assert len(raw["ua"]) == 30 and "sub" not in raw and "jti" not in raw
    assert repairs == {"gw.scope: cut": 1, "gw.scope: malformed (dropped)": 1, "gw.ua: cut": 1,
                       "gw.sub: malformed (dropped)": 1}
    assert not repair_fields(raw, [{"loc": ("jti",), "type": "missing", "ctx": {}}], "gw", repairs)
