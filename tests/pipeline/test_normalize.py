"""Hostile input never escapes the normalizer: events, a skip, or a dead letter with a reason."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalizer
from tests.fuzzing import FUZZ_HASHER, JSON_VALUES, NOW, assert_accounted_for, json_dumps, normalize

GATEWAY = (Path(__file__).resolve().parents[1] / "data" / "formats" / "gateway.jsonl").read_bytes().splitlines()
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


@pytest.fixture
def normalizer(hasher) -> Normalizer:
    return Normalizer(hasher, InputConfig(max_line_bytes=100_000), clock=lambda: NOW)


def _line(**changes: object) -> bytes:
    raw = orjson.loads(GATEWAY[0])
    raw.update(changes)
    return orjson.dumps(raw)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"\x00\xff garbage", "not JSON"),
        (GATEWAY[0][:57], "not JSON"),
        (b"[1, 2, 3]", "not a JSON object but list"),
        (b'"just a string"', "not a JSON object but str"),
        (b'{"hello": "world"}', "unknown format"),
        (_line(status="two hundred"), "gateway: status"),
        (_line(timestamp=12), None),
        (_line(timestamp="2099-01-01T00:00:00Z"), "in the future"),
        (_line(client_ip="9" * 200_000), "exceeds max_line_bytes"),
        (_line(jwt="not an object"), "gateway: jwt"),
    ],
)
def test_bad_lines_are_dead_lettered_with_reason(normalizer: Normalizer, line: bytes, reason: str | None) -> None:
    result = normalizer.normalize(line, "in.jsonl:7")
    if reason is None:  # epoch 12 is a valid (if odd) timestamp: accepted
        assert result.dead_letter is None and len(result.events) == 1
        return
    assert result.events == []
    assert result.dead_letter is not None
    assert reason in result.dead_letter["reason"]
    assert result.dead_letter["origin"] == "in.jsonl:7"
    assert result.dead_letter["raw_bytes"] == len(line)


def test_dead_letter_keeps_redacted_raw_record(normalizer: Normalizer, hasher) -> None:
    line = _line(status="bad", authorization=f"Bearer {JWT}")
    record = normalizer.normalize(line, "x:1").dead_letter
    assert record is not None
    assert record["raw"]["authorization"] == hasher(JWT)
    assert JWT not in orjson.dumps(record).decode()


def test_unparsable_line_with_token_is_redacted_in_dead_letter(normalizer: Normalizer) -> None:
    line = b'{"authorization": "Bearer ' + JWT.encode() + b'", "broken'
    record = normalizer.normalize(line, "x:1").dead_letter
    assert record is not None and "raw_text" in record
    assert JWT not in orjson.dumps(record).decode()


def test_forced_format_rejects_other_formats(hasher) -> None:
    forced = Normalizer(hasher, forced_format="canonical", clock=lambda: NOW)
    record = forced.normalize(GATEWAY[0], "x:1").dead_letter
    assert record is not None and "does not look like canonical" in record["reason"]


def test_unknown_forced_format_is_a_clear_error(hasher) -> None:
    with pytest.raises(ValueError, match="unknown format 'splunk'"):
        Normalizer(hasher, forced_format="splunk")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert_accounted_for(normalize(data))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["timestamp", "status", "jwt", "client_ip", "request_id", "required_scope"]), JSON_VALUES))
def test_mutated_gateway_records_never_raise(changes: dict) -> None:
    raw = orjson.loads(GATEWAY[1])
    raw.update(changes)
    result = normalize(json_dumps(raw))
    assert result.events or (result.dead_letter is not None and result.dead_letter["reason"])


# -- revocation handles riding along with records -------------------------------------------
def _with_handle(handle: object) -> bytes:
    from pipeline.synthetic.sample import render, scenarios

    line = render(scenarios()[:1]).splitlines()[0]
    return orjson.dumps({**orjson.loads(line), "tokenwatch_handle": handle})


def test_a_sealed_handle_is_taken_out_before_parsing_and_handed_over() -> None:
    from schemas.redaction import make_token_hasher

    taken: list[str] = []
    normalizer = Normalizer(make_token_hasher(b"k" * 32), accept_handle=taken.append)
    result = normalizer.normalize(_with_handle("SEALED-BLOB"), "t:1")
    assert result.dead_letter is None and len(result.events) == 1
    assert taken == ["SEALED-BLOB"] and normalizer.handle_counts == {"accepted": 1}
    assert b"SEALED-BLOB" not in result.events[0].model_dump_json().encode()


def test_without_a_handle_key_handles_are_dropped_and_bad_ones_counted_not_fatal() -> None:
    from schemas.redaction import make_token_hasher

    hasher = make_token_hasher(b"k" * 32)
    ignoring = Normalizer(hasher)
    assert len(ignoring.normalize(_with_handle("SEALED-BLOB"), "t:1").events) == 1
    assert ignoring.handle_counts == {"ignored": 1}

    def refuse(sealed: str) -> None:
        raise ValueError("revocation handle cannot be opened")

    strict = Normalizer(hasher, accept_handle=refuse)
    assert len(strict.normalize(_with_handle("garbage"), "t:1").events) == 1
    assert len(strict.normalize(_with_handle(42), "t:2").events) == 1
    assert strict.handle_counts == {"refused": 2}


def test_a_null_handle_is_no_handle() -> None:
    """Envoy's access log writes null for a request that carried no token: nothing to open,
    nothing refused."""
    seen: list[str] = []
    normalizer = Normalizer(FUZZ_HASHER, clock=lambda: NOW, accept_handle=seen.append)
    raw = orjson.loads(_line())
    result = normalizer.normalize(orjson.dumps({**raw, "tokenwatch_handle": None}), "in:1")
    assert result.events and seen == [] and not normalizer.handle_counts
    normalizer.normalize(orjson.dumps({**raw, "tokenwatch_handle": "sealed"}), "in:2")
    assert seen == ["sealed"] and normalizer.handle_counts == {"accepted": 1}
