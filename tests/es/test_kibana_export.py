"""The Kibana saved-objects export and the Security detection rule: every field they name exists
in the alert index template with the type its use needs, and every registered rule has its saved
search. That the committed files match the generator is tests/test_regen.py's check (`make regen`
writes them with the other files generated from the rules)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from detectors import DETECTORS
from pipeline.es import kibana
from tests.es.mapping import NUMERIC, field_types

NEEDS: dict[str, set[str]] = {
    "terms": {"keyword"}, "date_histogram": {"date"}, "time": {"date"}, "geo": {"geo_point"},
    "metric": NUMERIC, "any": {"keyword", "text", "date", "ip", "boolean", "geo_point", *NUMERIC},
}
_KQL_FIELD = re.compile(r"([A-Za-z_@][\w.@]*)\s*:")


def load(path: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load(kibana.EXPORT)


def query_fields(search_source_json: str) -> Iterator[str]:
    query = json.loads(search_source_json)["query"]["query"]
    yield from _KQL_FIELD.findall(query)


def referenced(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, str]]:
    """(object id, field, what the use needs) for every field the export names."""
    for obj in objects:
        attrs, oid = obj["attributes"], obj["id"]
        if obj["type"] == "index-pattern":
            yield oid, attrs["timeFieldName"], "time"
        if "kibanaSavedObjectMeta" in attrs:
            for field in query_fields(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"]):
                yield oid, field, "any"
        if obj["type"] == "search":
            for field in attrs["columns"]:
                yield oid, field, "any"
            for field, _ in attrs["sort"]:
                yield oid, field, "any"
        if obj["type"] == "visualization":
            for agg in json.loads(attrs["visState"])["aggs"]:
                if "field" in agg["params"]:
                    kind = agg["type"] if agg["type"] in ("terms", "date_histogram") else "metric"
                    yield oid, agg["params"]["field"], kind
        if obj["type"] == "map":
            for layer in json.loads(attrs["layerListJSON"]):
                source = layer["sourceDescriptor"]
                if "geoField" in source:
                    yield oid, source["geoField"], "geo"
                    yield oid, source["sortField"], "any"
                    for field in source["tooltipProperties"]:
                        yield oid, field, "any"


def test_the_module_command_checks_the_same_files_as_make_regen() -> None:
    """``python -m pipeline.es.kibana`` (named in the README's Kibana instructions) renders the
    same text as ``make regen``, through the same functions."""
    assert kibana.main(["--check"]) == 0, "run: make regen"


def test_every_field_the_export_names_is_in_the_template_with_the_right_type(objects: list[dict[str, Any]]) -> None:
    types = field_types()
    uses = list(referenced(objects))
    assert len(uses) > 100 and {need for _, _, need in uses} == set(NEEDS)
    wrong = [(oid, field, need, types.get(field)) for oid, field, need in uses if types.get(field) not in NEEDS[need]]
    assert wrong == []


def test_the_map_plots_source_geo_location_as_a_geo_point(objects: list[dict[str, Any]]) -> None:
    [the_map] = [o for o in objects if o["type"] == "map"]
    layers = json.loads(the_map["attributes"]["layerListJSON"])
    assert [layer["sourceDescriptor"].get("geoField") for layer in layers] == [None, "source.geo.location"]
    assert field_types()["source.geo.location"] == "geo_point"


def test_there_is_a_saved_search_per_registered_rule(objects: list[dict[str, Any]]) -> None:
    rules = {rule.id for cls in DETECTORS.values() for rule in cls.rules}
    searched = {}
    for obj in objects:
        if obj["type"] == "search":
            query = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])["query"]["query"]
            searched[obj["id"]] = query
    assert {f"tokenwatch-rule-{r}" for r in rules} <= set(searched)
    assert all(searched[f"tokenwatch-rule-{r}"] == f'rule.id : "{r}"' for r in rules)


def test_every_reference_resolves_inside_the_export(objects: list[dict[str, Any]]) -> None:
    present = {(o["type"], o["id"]) for o in objects}
    missing = [(o["id"], ref) for o in objects for ref in o["references"] if (ref["type"], ref["id"]) not in present]
    assert missing == []
    ids = [(o["type"], o["id"]) for o in objects]
    assert len(ids) == len(set(ids))
    [board] = [o for o in objects if o["type"] == "dashboard"]
    panel_refs = {p["panelRefName"] for p in json.loads(board["attributes"]["panelsJSON"])}
    assert panel_refs == {r["name"] for r in board["references"]}
    assert {r["type"] for r in board["references"]} == {"visualization", "map", "search"}


def test_the_detection_rule_promotes_tokenwatch_alerts_with_their_severity_and_score() -> None:
    [rule] = load(kibana.DETECTION_RULE)
    types = field_types()
    assert rule["index"] == [kibana.INDEX_PATTERN] and rule["type"] == "query"
    for field in _KQL_FIELD.findall(rule["query"]):
        assert types[field] == "keyword", field
    assert {m["field"] for m in rule["severity_mapping"]} == {"event.severity"}
    assert {m["value"]: m["severity"] for m in rule["severity_mapping"]} == {
        "21": "low", "47": "medium", "73": "high", "99": "critical"}
    assert types["event.severity"] in NUMERIC and types["event.risk_score"] in NUMERIC
    assert [m["field"] for m in rule["risk_score_mapping"]] == ["event.risk_score"]
    assert types[rule["rule_name_override"]] == "keyword"
    tactics = {entry["tactic"]["name"] for entry in rule["threat"]}
    assert {"Credential Access", "Privilege Escalation", "Persistence"} <= tactics
