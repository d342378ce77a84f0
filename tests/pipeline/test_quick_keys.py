"""``quick_key`` (pipeline/kafka/keys.py), the key `detect --workers` routes by without mapping a
line, against the key rule itself: wherever it answers for a line that maps to events, its key
is the one those events give (``event_key``), and a line it says holds no revocation holds none
(else that revocation would reach only one worker). Lines: every format's documented samples,
the benchmark traffic, and gateway and canonical records mutated by hypothesis."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.traffic import generate
from pipeline.kafka.keys import QUICK_KEYS, event_key, is_global, quick_key
from schemas.sources import FORMATS
from tests.fuzzing import FUZZ, json_dumps, json_values, mutated_lines, normalize
from tests.pipeline.test_detect_workers import revocation
from tests.schemas.test_fast_path import GATEWAY_RECORDS, samples_by_format


def keyed_as_mapped(line: bytes, format_name: str = "auto") -> bool:
    """Check ``quick_key`` on one line against its mapped events; True when it answered."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    quick = quick_key(raw, format_name)
    if quick is None:
        return False
    events = normalize(line).events
    found = event_key(events)
    if found is not None:
        assert quick[0] == found[0], line[:1000]
        assert quick[1] or not any(is_global(event) for event in events), line[:1000]
    return True


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_the_quick_key_of_every_documented_line_is_the_rule_s_or_none(name: str) -> None:
    answered = [keyed_as_mapped(line) for line in samples_by_format()[name]]
    assert all(answered) if name in QUICK_KEYS else not any(answered)


def test_every_benchmark_line_and_revocation_has_a_quick_key_that_says_whether_to_broadcast() -> None:
    lines = list(generate(3000, users=300))
    assert all(keyed_as_mapped(line) for line in lines)
    by_token = revocation("revoked", "2026-11-24T08:00:00Z", token="at-1-0")
    by_session = revocation("session_ended", "2026-11-24T08:00:00Z", subject="user-1", session="sess-1")
    assert quick_key(orjson.loads(by_token)) == (b"at-1-0", True)
    assert quick_key(orjson.loads(by_session)) == (b"user-1", True)
    assert keyed_as_mapped(by_token) and keyed_as_mapped(by_session)
    assert quick_key(orjson.loads(by_token), "gateway") is None  # a forced format that does not match


def test_records_whose_winning_id_a_model_would_cut_or_drop_are_left_to_mapping() -> None:
    use = next(raw for raw in map(orjson.loads, samples_by_format()["gateway"]) if raw.get("jwt", {}).get("sub"))
    assert quick_key(use) == (use["jwt"]["sub"].encode(), False)
    for sub in ("x" * 513, 7, ["user-1"]):
        assert quick_key(use | {"jwt": use["jwt"] | {"sub": sub}}) is None
    assert quick_key(use | {"jwt": "eyJ.abc.def"}) is None  # no claims: the key is the raw token's hash
    assert quick_key({"records": [use]}) is None  # an envelope: its records may be of any format


_SAMPLES = st.sampled_from(["gateway", "canonical"]).flatmap(lambda name: st.just(samples_by_format()[name]))


@FUZZ
@given(data=st.data())
def test_mutated_gateway_and_canonical_records_are_keyed_as_mapped(data: st.DataObject) -> None:
    lines = data.draw(_SAMPLES)
    line = data.draw(mutated_lines(lines) | mutated_lines(lines, dumps=json_dumps, values=json_values())
                     | GATEWAY_RECORDS.map(orjson.dumps))
    keyed_as_mapped(line)
