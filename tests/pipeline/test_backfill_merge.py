"""Backfill order: files exported per source are merged by event time, one pending
line per file, and lines that map to no event keep their place in their file."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest

from pipeline.ingest.reading import read_lines
from pipeline.kafka.merge import input_files, keyed_lines, merge_by_time
from schemas.redaction import make_token_hasher

HASHER = make_token_hasher(b"k" * 32)


def _canonical(request_id: str, iso: str, token: str) -> bytes:
    """A gateway access-log line (README "Gateway layout") of one use of ``token``."""
    return orjson.dumps({
        "timestamp": iso, "request_id": request_id, "client_ip": "79.200.1.10", "method": "GET",
        "path": "/orders", "status": 200, "user_agent": "curl/8.5",
        "jwt": {"jti": token, "client_id": "portal", "scope": "orders:read", "iat": 1764000000, "exp": 1764000300},
    })


def _stream(name: str, *lines: bytes):
    return keyed_lines(read_lines(io.BytesIO(b"\n".join(lines) + b"\n"), 1 << 20), name, HASHER)


def test_two_sources_one_after_another_come_out_in_event_time_order() -> None:
    okta = _stream("okta.jsonl", _canonical("o1", "2026-11-24T09:00:10Z", "t1"),
                   _canonical("o2", "2026-11-24T09:05:00Z", "t1"))
    gateway = _stream("gw.jsonl", _canonical("g1", "2026-11-24T09:00:00Z", "t1"),
                      b"not json at all", _canonical("g2", "2026-11-24T09:06:00Z", "t1"))

    merged = [item.origin for item in merge_by_time([okta, gateway])]

    # g1 (09:00:00) < o1 (09:00:10); the garbage line rides right behind g1; o2 (09:05) < g2 (09:06)
    assert merged == ["gw.jsonl:1", "gw.jsonl:2", "okta.jsonl:1", "okta.jsonl:2", "gw.jsonl:3"]


def test_a_file_slightly_out_of_order_keeps_its_own_order() -> None:
    late = _stream("a.jsonl", _canonical("a1", "2026-11-24T09:00:30Z", "t"),
                   _canonical("a2", "2026-11-24T09:00:05Z", "t"))  # 25 s out of order inside the file
    other = _stream("b.jsonl", _canonical("b1", "2026-11-24T09:00:10Z", "t"))

    assert [item.origin for item in merge_by_time([late, other])] == ["b.jsonl:1", "a.jsonl:1", "a.jsonl:2"]


def test_the_key_is_the_one_the_service_maps_and_blank_lines_have_none() -> None:
    items = list(_stream("x.jsonl", _canonical("e1", "2026-11-24T09:00:00Z", "tok-1"), b"   "))
    assert items[0].key is not None and (items[0].key.key, items[0].key.basis) == (b"tok-1", "token")
    assert items[0].key.epoch == 1795510800.0
    assert items[1].key is None


def test_a_directory_stands_for_its_files_and_a_typo_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_bytes(b"{}\n")
    (tmp_path / "a.jsonl").write_bytes(b"{}\n")
    (tmp_path / ".hidden").write_bytes(b"{}\n")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in input_files([str(tmp_path)])] == ["a.jsonl", "b.jsonl"]
    with pytest.raises(FileNotFoundError, match="nope.jsonl: no such file"):
        input_files([str(tmp_path / "nope.jsonl")])
    with pytest.raises(ValueError, match="directory has no files"):
        input_files([str(tmp_path / "sub")])
