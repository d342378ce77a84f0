"""The fast path's pieces held to the pydantic ones they stand in for, so they cannot drift:
the gateway Structs declare the vendor model's fields, and the models ``construct`` builds
equal validated ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Revocation,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.fast import FAST_MAPPERS
from schemas.fast import gateway_records as fast_gateway
from schemas.fast.build import construct
from schemas.fast.times import rfc3339
from schemas.sources import FORMATS
from schemas.sources import gateway as pydantic_gateway
from tests.fuzzing import FUZZ

_NOT_COMPARED = {"title", "default", "format"}  # names, and the datetime the Struct reads as text


def _plain(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {key: _plain(value) for key, value in schema.items()
                if key not in _NOT_COMPARED and not (key == "required" and value == [])}
    if isinstance(schema, list):
        return [_plain(value) for value in schema]
    return schema


def _definitions(schema: dict[str, Any], top: str) -> dict[str, Any]:
    """Each object of a JSON schema by name: the top one and its ``$defs``."""
    found = dict(schema.get("$defs", {}))
    if "$ref" not in schema:
        found[top] = {key: value for key, value in schema.items() if key != "$defs"}
    return {name: _plain(value) for name, value in found.items()}


def test_every_fast_mapper_stands_for_a_registered_format() -> None:
    assert set(FAST_MAPPERS) <= set(FORMATS)
    assert all(name == mapper.name for name, mapper in FAST_MAPPERS.items())


def test_gateway_structs_declare_the_vendor_models_fields_types_and_caps() -> None:
    """Same field names (as written in the record), the same types, nullability, string and
    list caps and status bounds; only "required" differs: the pydantic TypedDicts take
    every key as optional and the adapter checks ``_REQUIRED`` itself."""
    struct = _definitions(msgspec.json.schema(fast_gateway.GatewayRecord), "GatewayRecord")
    model = _definitions(TypeAdapter(pydantic_gateway.GatewayRecord).json_schema(), "GatewayRecord")
    required = struct["GatewayRecord"].pop("required")
    assert required == ["timestamp", "status"]  # the keys GatewayFormat refuses a record without
    assert struct == model


@pytest.mark.parametrize("cap", [("request_id", 512), ("method", 16), ("path", 8192), ("user_agent", 2048)])
def test_a_value_at_a_cap_is_taken_by_both_and_one_over_by_neither(cap: tuple[str, int]) -> None:
    name, limit = cap
    base = {"timestamp": "2026-11-24T09:00:05.120Z", "status": 200, "client_ip": "79.200.1.10", "jwt": {"jti": "a"}}
    validate = TypeAdapter(pydantic_gateway.GatewayRecord).validate_python
    validate({**base, name: "x" * limit})
    msgspec.convert({**base, name: "x" * limit}, fast_gateway.GatewayRecord)
    with pytest.raises(ValidationError):
        validate({**base, name: "x" * (limit + 1)})
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**base, name: "x" * (limit + 1)}, fast_gateway.GatewayRecord)


MOMENT = datetime(2026, 11, 24, 9, 0, 5, 120000, tzinfo=timezone.utc)
BINDING = Binding(method="dpop", value="jkt-1")
VALIDATED: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (Binding, {"method": "mtls", "value": "x5t"}),
    (Subject, {"id": "user-1"}),
    (Geo, {"country": "DE", "lat": 52.5, "lon": 13.4, "source": "city_db"}),
    (Network, {"ip": "79.200.1.10", "user_agent": "Mozilla/5.0"}),
    (Network, {"ip": "79.200.1.10", "geo": Geo(country="DE"), "asn": 3320, "hosting": False}),
    (Request, {"id": "gw-1", "method": "GET", "resource": "/orders/42", "status": 200, "proof": BINDING}),
    (Outcome, {"result": "failure", "reason": "HTTP 401"}),
    (Revocation, {"target": "family", "actor": "admin"}),
    (TokenRef, {"id": "at-1", "type": TokenType.ACCESS, "issued_at": MOMENT, "expires_at": None,
                "audience": ("orders-api",), "binding": BINDING}),
    (CanonicalEvent, {"event_id": "gateway:1", "kind": EventKind.USED, "time": MOMENT, "source": "gateway",
                      "token": TokenRef(id="at-1"), "scopes": ("a", "b"), "network": Network(ip="79.200.1.10"),
                      "outcome": Outcome()}),
]


@pytest.mark.parametrize(("cls", "values"), VALIDATED, ids=lambda value: getattr(value, "__name__", ""))
def test_a_constructed_model_is_the_validated_one(cls: type[BaseModel], values: dict[str, Any]) -> None:
    validated = cls(**values)
    built = construct(cls, values, values)
    assert built == validated and hash(built) == hash(validated)
    assert list(built.__dict__.items()) == list(validated.__dict__.items())
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump_json() == validated.model_dump_json()
    every = dict(validated.__dict__)  # every field, as the fast path's asdict gives them
    assert construct(cls, values, every) == validated


def test_construct_refuses_a_missing_or_unknown_field() -> None:
    with pytest.raises(TypeError):
        construct(Subject, (), {"name": "no id"})
    with pytest.raises(TypeError):
        construct(Subject, ("id",), {"id": "x", "nickname": "y"})


def test_construct_refuses_a_model_with_its_own_new() -> None:
    """``construct`` makes instances with ``object.__new__``: a model that needs its own
    ``__new__`` is refused, not built without it."""

    class Odd(BaseModel):
        id: str

        def __new__(cls, *args: Any, **kwargs: Any) -> Odd:
            return super().__new__(cls)

    with pytest.raises(TypeError, match="defines __new__"):
        construct(Odd, ("id",), {"id": "x"})


def test_a_constructed_model_is_frozen_and_has_no_extra_or_private_state() -> None:
    built = construct(Subject, ("id",), {"id": "x"})
    assert built.__pydantic_extra__ is None and built.__pydantic_private__ is None
    assert built.model_fields_set == {"id"} and built.model_fields_set is not construct(Subject, ("id",), {"id": "y"}).model_fields_set
    with pytest.raises(ValidationError):
        built.id = "y"  # type: ignore[misc]  # frozen: the assignment is what is tested


_AWARE = TypeAdapter(AwareDatetime).validate_python
_OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timedelta(minutes=minutes))


@FUZZ
@given(moment=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), offset=_OFFSETS,
       digits=st.integers(0, 6), zulu=st.booleans())
def test_rfc3339_reads_the_instant_and_offset_pydantic_reads(
        moment: datetime, offset: timedelta, digits: int, zulu: bool) -> None:
    text = moment.replace(tzinfo=timezone(offset)).isoformat(timespec="seconds")
    if digits:
        text = f"{text[:19]}.{moment.microsecond:06d}"[: 20 + digits] + text[19:]
    if zulu and not offset:
        text = text[:-6] + "Z"
    ours, theirs = rfc3339(text), _AWARE(text)
    assert ours == theirs and ours is not None and ours.utcoffset() == theirs.utcoffset()


@pytest.mark.parametrize("text", [
    "2026-11-24 09:00:05Z", "2026-11-24T09:00:05z", "2026-11-24T09:00:05", "2026-11-24T09:00:05.1234567Z",
    "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z", "1764000000", "2026-11-24T09:00:05+0100", "",
    "２０２６-11-24T09:00:05Z",
])
def test_rfc3339_leaves_every_other_shape_to_pydantic(text: str) -> None:
    assert rfc3339(text) is None
