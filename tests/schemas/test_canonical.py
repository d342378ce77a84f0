"""tokenwatch reads its own canonical output back unchanged."""

from __future__ import annotations

import orjson
import pytest

from schemas.events import Binding, EventKind
from schemas.sources import AdapterContext, InvalidRecord, detect_format
from tests.factories import event


def test_canonical_round_trip(hasher) -> None:
    original = event(EventKind.USED, 5, token="at-1", scopes=("a", "b"), required=("a",),
                     proof=Binding(method="dpop", value="k1"))
    raw = orjson.loads(original.model_dump_json())
    adapter = detect_format(raw)
    assert adapter.name == "canonical"
    assert adapter.to_events(raw, AdapterContext(hash_token=hasher)) == [original]


def test_canonical_naive_time_is_rejected(hasher) -> None:
    raw = orjson.loads(event(EventKind.USED, 5, token="at-1").model_dump_json())
    raw["time"] = "2026-11-24T09:00:00"
    with pytest.raises(InvalidRecord, match="time"):
        detect_format(raw).to_events(raw, AdapterContext(hash_token=hasher))
