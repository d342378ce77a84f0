"""The Kibana saved-objects export for the alert indices, and the Elastic Security rule that
raises tokenwatch alerts into Security → Alerts.

``make regen`` (``pipeline/regen.py``, with the other files generated from the rules) writes
both files under ``pipeline/data/kibana/``; ``python -m pipeline.es.kibana`` writes these two
alone:

- ``tokenwatch.ndjson`` (Stack Management → Saved Objects → Import): the data view of
  ``tokenwatch-alerts-*``, one saved search per registered rule and one of open alerts,
  aggregation-based visualizations, a map of ``source.geo.location``, and a dashboard
  holding them;
- ``tokenwatch-detection-rule.ndjson`` (Security → Rules → Import rules): a custom query rule
  over ``event.kind:alert`` tokenwatch documents, severity from ``event.severity`` and risk
  score from ``event.risk_score``, as Elastic's own "External Alerts" rule does.

Ids are fixed, so importing again overwrites instead of duplicating. Every field named here is
checked against the index template by ``tests/es/test_kibana_export.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from detectors import DETECTORS
from pipeline.es.mitre import rule_threat
from pipeline.es.security import DATASET, ELASTIC_RISK_SCORE, MODULE, rule_uuid

EXPORT_PATH = "pipeline/data/kibana/tokenwatch.ndjson"  # relative to the repository root, as regen names files
DETECTION_RULE_PATH = "pipeline/data/kibana/tokenwatch-detection-rule.ndjson"
_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = _ROOT / "pipeline" / "data" / "kibana"
EXPORT = _ROOT / EXPORT_PATH
DETECTION_RULE = _ROOT / DETECTION_RULE_PATH

INDEX_PATTERN = "tokenwatch-alerts-*"
DATA_VIEW_ID = "tokenwatch-alerts"
DASHBOARD_ID = "tokenwatch-alerts-dashboard"
MAP_ID = "tokenwatch-alerts-map"
OPEN_SEARCH_ID = "tokenwatch-open-alerts"
DETECTION_RULE_ID = rule_uuid("tokenwatch.security_alerts")  # fixed: importing again updates the rule

COLUMNS = ["alert.severity", "rule.name", "user.id", "client.id", "source.ip", "source.geo.country_iso_code",
           "source.as.organization.name", "alert.status", "alert.summary"]
_SEARCH_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"


def _source(query: str = "", with_index: bool = True) -> dict[str, str]:
    body: dict[str, Any] = {"query": {"query": query, "language": "kuery"}, "filter": []}
    if with_index:
        body["indexRefName"] = _SEARCH_REF
    return {"searchSourceJSON": json.dumps(body)}


def _data_view_ref(name: str = _SEARCH_REF) -> dict[str, str]:
    return {"name": name, "type": "index-pattern", "id": DATA_VIEW_ID}


def data_view() -> dict[str, Any]:
    return {"type": "index-pattern", "id": DATA_VIEW_ID, "references": [],
            "attributes": {"title": INDEX_PATTERN, "name": "tokenwatch alerts", "timeFieldName": "@timestamp"}}


def saved_search(search_id: str, title: str, query: str, description: str = "") -> dict[str, Any]:
    return {"type": "search", "id": search_id, "references": [_data_view_ref()], "attributes": {
        "title": title, "description": description, "columns": COLUMNS, "sort": [["@timestamp", "desc"]],
        "kibanaSavedObjectMeta": _source(query)}}


def rule_searches() -> list[dict[str, Any]]:
    """One saved search per registered rule, in registry order."""
    return [saved_search(f"tokenwatch-rule-{rule.id}", f"tokenwatch: {rule.name}", f'rule.id : "{rule.id}"',
                         rule.description)
            for cls in DETECTORS.values() for rule in cls.rules]


def _agg(agg_id: str, kind: str, schema: str, **params: Any) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": kind, "schema": schema, "params": params}


def _terms(agg_id: str, field: str, schema: str = "segment", size: int = 10) -> dict[str, Any]:
    return _agg(agg_id, "terms", schema, field=field, size=size, order="desc", orderBy="1")


_COUNT = _agg("1", "count", "metric")
VISUALIZATIONS: list[tuple[str, str, str, list[dict[str, Any]], dict[str, Any]]] = [
    ("tokenwatch-alerts-over-time", "tokenwatch: alerts over time by severity", "histogram",
     [_COUNT, _agg("2", "date_histogram", "segment", field="@timestamp", interval="auto"),
      _terms("3", "alert.severity", "group", 4)], {"type": "histogram", "addLegend": True}),
    ("tokenwatch-alerts-by-rule", "tokenwatch: alerts by rule", "pie",
     [_COUNT, _terms("2", "rule.id", size=20)], {"type": "pie", "isDonut": True, "addLegend": True}),
    ("tokenwatch-alerts-by-tactic", "tokenwatch: ATT&CK tactics", "table",
     [_COUNT, _terms("2", "threat.tactic.name", "bucket"), _terms("3", "threat.technique.name", "bucket")],
     {"perPage": 10}),
    ("tokenwatch-top-users", "tokenwatch: users with most alerts", "table",
     [_COUNT, _terms("2", "user.id", "bucket", 20), _agg("3", "max", "metric", field="alert.risk_score")],
     {"perPage": 10}),
    ("tokenwatch-source-networks", "tokenwatch: source networks", "table",
     [_COUNT, _terms("2", "source.as.organization.name", "bucket", 20),
      _terms("3", "source.geo.country_iso_code", "bucket", 5)], {"perPage": 10}),
    ("tokenwatch-travel", "tokenwatch: impossible travel (speed, distance)", "metric",
     [_agg("1", "max", "metric", field="details.speed_kmh"), _agg("2", "avg", "metric", field="details.distance_km"),
      _agg("3", "max", "metric", field="details.seconds_after_revocation")], {"addLegend": False}),
]
"""(id, title, visualization type, aggregations, params)."""


def visualization(vis_id: str, title: str, kind: str, aggs: list[dict[str, Any]],
                  params: dict[str, Any]) -> dict[str, Any]:
    vis_state = {"title": title, "type": kind, "aggs": aggs, "params": params}
    return {"type": "visualization", "id": vis_id, "references": [_data_view_ref()], "attributes": {
        "title": title, "description": "", "uiStateJSON": "{}", "version": 1,
        "visState": json.dumps(vis_state), "kibanaSavedObjectMeta": _source()}}


TOOLTIP = ["rule.name", "alert.severity", "user.id", "source.ip", "source.as.organization.name", "@timestamp"]


def alert_map() -> dict[str, Any]:
    """Kibana Maps: alerts as points at ``source.geo.location`` on the default basemap."""
    layers = [
        {"id": "basemap", "type": "EMS_VECTOR_TILE", "label": None, "visible": True, "alpha": 1,
         "minZoom": 0, "maxZoom": 24, "sourceDescriptor": {"type": "EMS_TMS", "isAutoSelect": True},
         "style": {"type": "EMS_VECTOR_TILE"}},
        {"id": "alerts", "type": "GEOJSON_VECTOR", "label": "tokenwatch alerts by source", "visible": True,
         "alpha": 0.8, "minZoom": 0, "maxZoom": 24,
         "sourceDescriptor": {"type": "ES_SEARCH", "id": "alerts-source", "geoField": "source.geo.location",
                              "indexPatternRefName": "layer_0_source_index_pattern", "scalingType": "LIMIT",
                              "filterByMapBounds": True, "tooltipProperties": TOOLTIP,
                              "sortField": "@timestamp", "sortOrder": "desc"},
         "style": {"type": "VECTOR", "properties": {
             "fillColor": {"type": "STATIC", "options": {"color": "#E7664C"}},
             "iconSize": {"type": "STATIC", "options": {"size": 6}}}}},
    ]
    state = {"zoom": 1.5, "center": {"lon": 10, "lat": 30}, "timeFilters": {"from": "now-7d", "to": "now"},
             "query": {"query": "", "language": "kuery"}, "filters": []}
    return {"type": "map", "id": MAP_ID, "references": [_data_view_ref("layer_0_source_index_pattern")],
            "attributes": {"title": "tokenwatch: alerts by source location", "description": "",
                           "layerListJSON": json.dumps(layers), "mapStateJSON": json.dumps(state),
                           "uiStateJSON": json.dumps({"isLayerTOCOpen": True})}}


def dashboard() -> dict[str, Any]:
    panels: list[tuple[str, str, int, int]] = [  # (type, id, width, height) on Kibana's 48-column grid
        *(("visualization", v[0], 24, 12) for v in VISUALIZATIONS),
        ("map", MAP_ID, 48, 18),
        ("search", OPEN_SEARCH_ID, 48, 18),
    ]
    panel_json, references, x, y = [], [], 0, 0
    for number, (kind, ident, width, height) in enumerate(panels):
        if x + width > 48:
            x, y = 0, y + height
        panel_json.append({"panelIndex": str(number + 1), "gridData": {"x": x, "y": y, "w": width, "h": height,
                                                                      "i": str(number + 1)},
                           "embeddableConfig": {}, "version": "7.10.0", "panelRefName": f"panel_{number}"})
        references.append({"name": f"panel_{number}", "type": kind, "id": ident})
        x += width
    return {"type": "dashboard", "id": DASHBOARD_ID, "references": references, "attributes": {
        "title": "tokenwatch: alerts", "description": "tokenwatch alerts: trend, rules, ATT&CK, users, "
        "networks, travel measures, the map of sources and the open alerts", "timeRestore": False,
        "panelsJSON": json.dumps(panel_json), "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
        "version": 1, "kibanaSavedObjectMeta": _source(with_index=False)}}


def saved_objects() -> list[dict[str, Any]]:
    """Every object of the export, referenced objects first."""
    return [
        data_view(),
        saved_search(OPEN_SEARCH_ID, "tokenwatch: open alerts", 'alert.status : "open"',
                     "Alerts nobody has acknowledged or closed yet"),
        *rule_searches(),
        *(visualization(*v) for v in VISUALIZATIONS),
        alert_map(),
        dashboard(),
    ]


def detection_rule() -> dict[str, Any]:
    """A custom query rule (Elastic Security) that turns each tokenwatch alert into a Security alert."""
    techniques = list(dict.fromkeys(t for cls in DETECTORS.values() for rule in cls.rules for t, _ in rule.techniques))
    return {
        "rule_id": DETECTION_RULE_ID, "name": "tokenwatch alerts", "type": "query", "language": "kuery",
        "description": "Raises every alert tokenwatch writes to its Elasticsearch alert indices into Security "
                       "alerts, with tokenwatch's rule name, severity and risk score.",
        "index": [INDEX_PATTERN], "query": f'event.kind : "alert" and event.module : "{MODULE}"',
        "enabled": False, "interval": "5m", "from": "now-6m", "max_signals": 1000, "version": 1,
        "author": ["tokenwatch"], "tags": ["tokenwatch", "OAuth", "Tokens"], "references": [],
        "severity": "medium", "risk_score": ELASTIC_RISK_SCORE["medium"],
        "severity_mapping": [{"field": "event.severity", "operator": "equals", "value": str(score), "severity": sev}
                             for sev, score in ELASTIC_RISK_SCORE.items()],
        "risk_score_mapping": [{"field": "event.risk_score", "operator": "equals", "value": ""}],
        "rule_name_override": "rule.name",
        "threat": rule_threat(techniques),
        "note": f"Documents come from the `{DATASET}` dataset; `details.*` holds the rule's measures and "
                "`evidence` the events that prove it.",
    }


def ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n" for obj in objects)


def export_ndjson() -> str:
    """The text of ``tokenwatch.ndjson`` (what ``make regen`` writes)."""
    return ndjson(saved_objects())


def detection_rule_ndjson() -> str:
    """The text of ``tokenwatch-detection-rule.ndjson`` (what ``make regen`` writes)."""
    return ndjson([detection_rule()])


def main(argv: list[str] | None = None) -> int:
    """Write the export and the detection rule (``--check``: exit 1 if the files differ); ``make
    regen`` writes them too, and ``tests/test_regen.py`` fails while they are stale."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    wanted = {EXPORT: export_ndjson(), DETECTION_RULE: detection_rule_ndjson()}
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path} is out of date: run make regen", file=sys.stderr)
        return 1 if stale else 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(wanted[path], encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
