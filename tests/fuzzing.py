"""Shared machinery of the format fuzz tests: random JSON, random mutations and cuts
of sample records, and one pass through the Normalizer.

The contract every format keeps is ``assert_accounted_for``: hostile input ends as
events, a skip or a dead letter with a reason, never as an exception. Each format's
test adds its own assertions on top (secrets redacted, no adapter crash).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import orjson
from hypothesis import settings
from hypothesis import strategies as st

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalized, Normalizer
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY

FUZZ_HASHER = make_token_hasher(TEST_HASH_KEY)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
FUZZ = settings(max_examples=200, deadline=None)
# How the Normalizer dead-letters an exception an adapter did not turn into InvalidRecord.
ADAPTER_CRASH = " failed: "


_ANY_INT = st.integers()  # strategies are immutable: one shared default


def json_values(
    ints: st.SearchStrategy[int] = _ANY_INT, *, infinity: bool = True, max_leaves: int = 12
) -> st.SearchStrategy[Any]:
    """Any JSON value, nested a few levels (NaN left out: it never equals itself)."""
    return st.recursive(
        st.none() | st.booleans() | ints | st.floats(allow_nan=False, allow_infinity=infinity)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=max_leaves,
    )


JSON_VALUES = json_values()
ORJSON_VALUES = json_values(st.integers(-(2**63), 2**64 - 1))  # what orjson.dumps can write back


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key / list index path in a JSON value, parents before children."""
    found: list[tuple[Any, ...]] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def _mutate(raw: Any, path: tuple[Any, ...], drop: bool, value: Any) -> None:
    """Drop the value at ``path`` or replace it with ``value``, in place."""
    parent = raw
    for step in path[:-1]:
        parent = parent[step]
    if drop:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value


@st.composite
def mutated_lines(
    draw: st.DrawFn, lines: list[bytes], *, most: int = 4,
    dumps: Callable[[Any], bytes] = orjson.dumps, values: st.SearchStrategy[Any] = ORJSON_VALUES,
) -> bytes:
    """One of ``lines`` with one to ``most`` nested values dropped or replaced by ``values``,
    written back with ``dumps`` (``json_dumps`` with ``JSON_VALUES`` for integers of any size)."""
    raw = orjson.loads(draw(st.sampled_from(lines)))
    for _ in range(draw(st.integers(1, most))):
        found = paths(raw)
        if not found:
            break
        _mutate(raw, draw(st.sampled_from(found)), draw(st.booleans()), draw(values))
    return dumps(raw)


def json_dumps(raw: Any) -> bytes:
    """The standard library's JSON: integers of any size, and Infinity, which is not JSON."""
    return json.dumps(raw).encode()


def cut_lines(lines: list[bytes]) -> st.SearchStrategy[bytes]:
    """One of ``lines`` cut short anywhere, from empty to all but its last byte."""
    return st.sampled_from(lines).flatmap(lambda line: st.integers(0, max(len(line) - 1, 0)).map(lambda n: line[:n]))


def normalize(line: bytes, config: InputConfig | None = None) -> Normalized:
    """One line through a Normalizer with the test key and a fixed clock."""
    return Normalizer(FUZZ_HASHER, config, clock=lambda: NOW).normalize(line, "fuzz:1")


def assert_accounted_for(result: Normalized, *, adapter_crash: bool = True) -> None:
    """Events, a skip, or a dead letter with a reason; with ``adapter_crash=False`` the
    dead letter must also not be an adapter exception the Normalizer caught."""
    if result.dead_letter is not None:
        reason = result.dead_letter["reason"]
        assert reason
        if not adapter_crash:
            assert ADAPTER_CRASH not in reason, reason
    else:
        assert result.events or result.skipped_type, result
