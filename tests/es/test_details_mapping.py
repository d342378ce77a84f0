"""``details.*`` numbers are mapped as numbers, and the document builder never sends a word
to a numeric field (the index would refuse the whole alert)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from pipeline.es.details import NUMERIC_DETAILS, RAW_FIELD, number_type, typed_details
from pipeline.es.documents import shape
from pipeline.es.templates import index_template
from pipeline.response.breaker import breaker_alert
from tests.es.mapping import NUMERIC, field_types, sample_alerts

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def demo_alerts(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        from tests.conftest import TEST_HASH_KEY

        env.setenv("TOKENWATCH_TOKEN_HASH_KEY", TEST_HASH_KEY.decode())
        env.setenv("TOKENWATCH_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        alerts = sample_alerts(tmp_path_factory.mktemp("demo"))
    return [*alerts, breaker_alert(NOW, 5), breaker_alert(NOW, 3, "user:alice", [("user:alice", 4)])]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_every_numeric_detail_of_every_demo_alert_is_mapped_as_a_number(demo_alerts: list[dict[str, Any]]) -> None:
    types = field_types()
    numeric = {(a["rule"]["id"], k) for a in demo_alerts for k, v in (a.get("details") or {}).items()
               if _is_number(v)}
    assert len({rule for rule, _ in numeric}) >= 8  # travel, replay, revocation, expiry, breaker ... all say numbers
    unmapped = sorted((rule, k) for rule, k in numeric if types.get(f"details.{k}") not in NUMERIC)
    assert unmapped == [], "add these to pipeline.es.details.NUMERIC_DETAILS"


def test_no_demo_alert_holds_a_word_where_the_template_wants_a_number(demo_alerts: list[dict[str, Any]]) -> None:
    for alert in demo_alerts:
        for key, value in (alert.get("details") or {}).items():
            if number_type(key) is not None and value is not None:
                assert _is_number(value), (alert["rule"]["id"], key, value)


def test_the_template_maps_counts_as_long_and_measures_as_double() -> None:
    types = field_types()
    assert types["details.speed_kmh"] == types["details.distance_km"] == types["details.gap_s"] == "double"
    assert types["details.handovers_before"] == types["details.requests"] == "long"
    assert {f"details.{k}" for k in NUMERIC_DETAILS} <= set(types)
    dynamic = [next(iter(t)) for t in index_template("tokenwatch", "alert")["template"]["mappings"]["dynamic_templates"]]
    # the anomaly rule's contribution.<group> numbers: their template comes before the catch-all keyword one
    assert dynamic.index("details_contributions_as_numbers") < dynamic.index("details_as_keywords")


@pytest.mark.parametrize(("value", "kept", "raw"), [
    (812.5, 812.5, None),
    ("812.5", 812.5, None),  # a number written as text is still a number
    ("fast", None, "fast"),
    (True, None, "True"),
    (float("inf"), None, "inf"),
])
def test_a_measure_that_is_not_a_finite_number_moves_to_details_raw(value: Any, kept: Any, raw: str | None) -> None:
    details, moved = typed_details({"speed_kmh": value, "scope": "token"})
    assert details.get("speed_kmh") == kept and moved.get("speed_kmh") == raw
    assert details["scope"] == "token"


def test_a_count_keeps_whole_numbers_only() -> None:
    details, moved = typed_details({"handovers_before": 3.0, "requests": 2.5, "contribution.volume": "0.25"})
    assert details == {"handovers_before": 3, "contribution.volume": 0.25} and moved == {"requests": "2.5"}


def test_shape_routes_and_keeps_the_alert_whole(demo_alerts: list[dict[str, Any]]) -> None:
    travel = next(a for a in demo_alerts if a["rule"]["id"] == "geo_divergence.impossible_travel")
    bad = {**travel, "details": {**travel["details"], "speed_kmh": "n/a"}}
    doc = shape("alert", bad)
    assert "speed_kmh" not in doc["details"] and doc[RAW_FIELD] == {"speed_kmh": "n/a"}
    assert doc["details"]["distance_km"] == travel["details"]["distance_km"]
    assert bad["details"]["speed_kmh"] == "n/a"  # the caller's document is not changed

