"""The msgspec fast path (``schemas.fast``) against the pydantic path, line by line.

Every line goes through a normalizer with ``input.fast_path`` on and one with it off; the
two must agree exactly: each canonical event (``model_dump``, its JSON, and which fields
count as set, nested), the dead letter (reason, fields, quoted record), skips, repair and
handle counters. Lines: every format's documented samples (tests/data/formats/, the
benchmark traffic for canonical), mutated and cut by hypothesis, and gateway records drawn
field by field from the layout in README "Gateway layout" (valid, odd and hostile values
of each field).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from benchmarks.traffic import generate
from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalized, Normalizer
from schemas.fast import FAST_MAPPERS, fast_mappers
from schemas.sources import FORMATS, AdapterContext
from tests.detect_helpers import detect_lines
from tests.fuzzing import FUZZ, FUZZ_HASHER, NOW, cut_lines, json_dumps, json_values, mutated_lines

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats"
TRUSTED_PROXY = "10.0.0.0/8"


def _normalizer(fast: bool) -> Normalizer:
    config = InputConfig(fast_path=fast)
    return Normalizer(FUZZ_HASHER, config, clock=lambda: NOW, accept_handle=lambda _: None,
                      trusted_proxies=[TRUSTED_PROXY])


def _fields_set(model: BaseModel) -> Any:
    """Which fields count as given, for the model and every model inside it."""
    nested = {name: _fields_set(value) for name, value in model.__dict__.items() if isinstance(value, BaseModel)}
    return sorted(model.model_fields_set), nested


def outcome(result: Normalized, normalizer: Normalizer) -> dict[str, Any]:
    """Everything a line leaves behind, in comparable form."""
    return {
        "events": [(event.model_dump(), event.model_dump_json(), _fields_set(event), list(event.__dict__))
                   for event in result.events],
        "format": result.format,
        "skipped_type": result.skipped_type,
        "dead_letter": result.dead_letter,
        "skipped_entries": dict(result.skipped_entries),
        "event_formats": result.event_formats,
        "repairs": dict(normalizer.repairs),
        "handles": dict(normalizer.handle_counts),
    }


def both_ways(line: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """The line through a fresh normalizer with the fast path on, and one with it off."""
    results = []
    for fast in (True, False):
        normalizer = _normalizer(fast)
        results.append(outcome(normalizer.normalize(line, "diff:1"), normalizer))
    return results[0], results[1]


def assert_same(line: bytes) -> dict[str, Any]:
    fast, slow = both_ways(line)
    assert fast == slow, line[:2000]
    return fast


@cache
def samples_by_format() -> dict[str, list[bytes]]:
    """Documented sample lines of each registered format (the format the normalizer reads
    them as), plus the benchmark traffic (gateway and canonical lines)."""
    lines = [line for path in sorted(SAMPLES.iterdir()) for line in path.read_bytes().splitlines() if line.strip()]
    lines += list(generate(400))[::20]
    found: dict[str, list[bytes]] = {}
    for line in lines:
        result = _normalizer(False).normalize(line, "sample:1")
        if result.format is not None:
            found.setdefault(result.format, []).append(line)
    return found


def test_every_registered_format_has_sample_lines() -> None:
    assert set(samples_by_format()) == set(FORMATS)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_samples_of_every_format_map_alike(name: str) -> None:
    for line in samples_by_format()[name]:
        assert_same(line)


@pytest.mark.parametrize("name", sorted(FORMATS))
@FUZZ
@given(data=st.data())
def test_mutated_samples_of_every_format_map_alike(name: str, data: st.DataObject) -> None:
    lines = samples_by_format()[name]
    objects = [line for line in lines if line.startswith(b"{")]  # not Keycloak's text log lines
    mutated = mutated_lines(objects) | mutated_lines(objects, dumps=json_dumps, values=json_values()) if objects else st.nothing()
    line = data.draw(mutated | cut_lines(lines))
    assert_same(line)


def test_the_fast_path_takes_the_documented_gateway_lines_and_the_benchmark_traffic() -> None:
    """Proof the comparison above compares something: the fast mappers accept these lines
    themselves (None would hand them to pydantic) with the pydantic adapter's events."""
    ctx = AdapterContext(hash_token=FUZZ_HASHER)
    mappers = fast_mappers()
    for name in FAST_MAPPERS:
        lines = samples_by_format()[name]
        assert len(lines) >= 3
        for line in lines:
            fast = mappers[name].to_events(orjson.loads(line), ctx)
            assert fast is not None, line
            assert fast == FORMATS[name].to_events(orjson.loads(line), ctx)


# Gateway records field by field: README "Gateway layout". Three kinds: valid (right types,
# within the caps: the fast path takes each), edge (caps crossed, odd time shapes, epochs
# out of range) and odd (any field of another type).
_MOMENTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30))
_OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=2), timedelta(hours=-5, minutes=-30), timedelta(hours=14)])


def _rfc3339(moment: datetime, offset: timedelta, digits: int, zulu: bool) -> str:
    text = moment.replace(tzinfo=timezone(offset)).isoformat(timespec="seconds")
    if digits:
        text = text[:19] + "." + f"{moment.microsecond:06d}{moment.microsecond % 10}"[:digits] + text[19:]
    return text[:-6] + "Z" if zulu and not offset else text


_PLAIN_TIMES = st.builds(_rfc3339, _MOMENTS, _OFFSETS, st.integers(0, 6), st.booleans())
_EPOCHS = st.integers(0, 253402300799) | st.floats(0, 4e9)
_EDGE_TIMES = st.one_of(
    st.builds(_rfc3339, _MOMENTS, _OFFSETS, st.just(7), st.booleans()),
    _PLAIN_TIMES.map(lambda text: text.replace("T", " ")), _PLAIN_TIMES.map(lambda text: text.replace("Z", "z")),
    _PLAIN_TIMES.map(lambda text: text[:19]), st.integers(-10, -1), st.integers(253402300800, 2**63),
    st.sampled_from(["2026-02-30T00:00:00Z", "1764000000", "", "2026-11-24T24:00:00Z", "0001-01-01T00:00:00Z"]),
)
_ODD = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.just([]) | st.just({})


def _text(cap: int) -> st.SearchStrategy[str]:
    return st.text(max_size=12) | st.just("x" * cap)


def _over(cap: int) -> st.SearchStrategy[str]:
    return st.just("x" * (cap + 1))


_SCOPE_LIST = st.lists(st.sampled_from(["openid", "orders:read", "orders:read", " profile ", "", "a b"]), max_size=5)
_ADDRESSES = st.sampled_from(["79.200.1.10", "2001:db8::1", "[2001:db8::1]:443", "79.200.1.10:5123",
                              "203.0.113.9, 10.1.2.3", "not-an-ip", "10.0.0.7", ""]) | st.lists(
    st.sampled_from(["79.200.1.10", "10.1.2.3", "bogus"]), max_size=3)
_FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    # name: (valid values, edge values)
    "timestamp": (_PLAIN_TIMES | _EPOCHS, _EDGE_TIMES),
    "status": (st.integers(100, 599), st.sampled_from([98, 99, 600, 601, 200.0, "200"])),
    "client_ip": (_ADDRESSES, st.just("79.200.1.1, " * 400) | st.just(["10.1.2.3"] * 70)),
    "request_id": (_text(512) | st.just("id with Bearer abc.def.ghi"), _over(512)),
    "method": (_text(16), _over(16)),
    "path": (_text(8192) | st.just("/x?access_token=secret-value"), _over(8192)),
    "user_agent": (_text(2048), _over(2048)),
    "required_scope": (_SCOPE_LIST | _SCOPE_LIST.map(" ".join), st.just("s" * 16_385) | st.just(["s"] * 513)),
    "dpop_jkt": (_text(512), _over(512)),
    "client_cert_thumbprint": (_text(512), _over(512)),
    "token": (st.sampled_from(["Bearer eyJ.abc.def", "opaque-token", ""]), st.just("t" * 70_000)),
    "authorization": (st.sampled_from(["DPoP eyJ.abc.def", "Basic dXNlcjpwYXNz", "Bearer"]), st.just("")),
}
_CLAIMS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    **{name: (_text(512), _over(512)) for name in ("sub", "client_id", "azp", "sid")},
    "scope": (_SCOPE_LIST | _SCOPE_LIST.map(" ".join), st.just("s" * 16_385)),
    "iss": (_text(2048), _over(2048)),
    "aud": (_text(512) | st.lists(_text(512), max_size=3), st.just(["a"] * 65) | st.just(["x" * 513])),
    "iat": (_EPOCHS, st.integers(-5, -1) | st.sampled_from([1e12, "1764000000", "soon"])),
    "exp": (_EPOCHS, st.integers(-5, -1) | st.sampled_from([1e12, "1764000000", "soon"])),
}
_CONFIRMATION = {"jkt": (_text(512), _over(512)), "x5t#S256": (_text(512), _over(512))}
_REQUIRED = ("timestamp", "status", "client_ip")  # client_ip: what tells a gateway line (GatewayFormat.matches)


def _pick(choices: tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]], kind: str) -> st.SearchStrategy[Any]:
    valid, edge = choices
    return valid if kind == "valid" else valid | edge if kind == "edge" else valid | edge | _ODD


def _object(fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]], kind: str,
            required: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {name: _pick(fields[name], kind) for name in required},
        optional={name: _pick(choice, kind) for name, choice in fields.items() if name not in required},
    )


def gateway_records(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Gateway records of one ``kind``: "valid", "edge" or "odd"."""
    jti: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {"jti": (st.text(min_size=1, max_size=12) | st.just("x" * 512), _over(512) | st.just(""))}
    claims = st.tuples(_object(jti, kind, ("jti",) if kind == "valid" else ()), _object(_CLAIMS, kind),
                       _object(_CONFIRMATION, kind) if kind == "valid" else _object(_CONFIRMATION, kind) | _ODD,
                       st.booleans()).map(lambda parts: {**parts[0], **parts[1], **({"cnf": parts[2]} if parts[3] else {})})
    record = _object(_FIELDS, kind, _REQUIRED)
    extra = st.fixed_dictionaries({}, optional={"extra_field": _ODD, "tokenwatch_handle": st.sampled_from(["sealed", None])})
    jwt = claims if kind == "valid" else claims | _ODD
    return st.tuples(record, jwt, extra).map(lambda parts: {**parts[0], "jwt": parts[1], **parts[2]})


GATEWAY_RECORDS = st.one_of(gateway_records("valid"), gateway_records("valid"), gateway_records("edge"),
                            gateway_records("odd"))


@FUZZ
@given(record=gateway_records("valid"))
def test_every_valid_gateway_record_takes_the_fast_path(record: dict[str, Any]) -> None:
    """The comparisons compare something: the fast mapper itself takes every valid record."""
    assert fast_mappers()["gateway"].to_events(record, AdapterContext(hash_token=FUZZ_HASHER)) is not None


def _wrapped(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"records": records}


_GATEWAY_LINES: st.SearchStrategy[bytes] = (
    GATEWAY_RECORDS.map(orjson.dumps) | st.lists(GATEWAY_RECORDS, min_size=1, max_size=3).map(_wrapped).map(orjson.dumps)
)


@FUZZ
@given(line=_GATEWAY_LINES)
def test_gateway_records_map_alike_field_by_field(line: bytes) -> None:
    assert_same(line)


# End to end: the same alerts either way, for an attack and its benign twin.
def _use(second: float, ip: str, request: str) -> dict[str, Any]:
    return {
        "timestamp": (NOW - timedelta(minutes=10) + timedelta(seconds=second)).isoformat().replace("+00:00", "Z"),
        "request_id": request, "client_ip": ip, "method": "GET", "path": "/orders/42", "status": 200,
        "user_agent": "Mozilla/5.0", "required_scope": "orders:read",
        "jwt": {"jti": "at-fast-1", "sub": "user-1", "client_id": "portal", "scope": "openid orders:read",
                "iss": "https://sso.example.org/realms/main", "aud": "orders-api",
                "iat": int(NOW.timestamp()) - 900, "exp": int(NOW.timestamp()) + 900},
    }


@pytest.mark.parametrize("fast", [True, False])
def test_a_token_used_from_two_continents_at_once_alerts_alike_and_its_twin_is_quiet(fast: bool) -> None:
    settings: dict[str, Any] = {"input": {"fast_path": fast}}
    attack = detect_lines([_use(0, "79.200.1.10", "r1"), _use(0.5, "73.1.2.3", "r2")], settings)
    assert attack.dead_letters == [] and attack.summary.events == 2
    assert attack.hits == [("geo_divergence.impossible_travel", "at-fast-1"), ("replay.concurrent_use", "at-fast-1")]
    twin = detect_lines([_use(0, "79.200.1.10", "r1"), _use(0.5, "79.200.1.10", "r2")], settings)
    assert twin.alerts == [] and twin.dead_letters == [] and twin.summary.events == 2


def test_alerts_are_byte_identical_either_way_on_benchmark_traffic() -> None:
    lines = list(generate(3000))
    fast = detect_lines(list(lines), {"input": {"fast_path": True}})
    slow = detect_lines(list(lines), {"input": {"fast_path": False}})
    assert fast.alerts == slow.alerts and fast.summary.events == slow.summary.events == len(lines)

