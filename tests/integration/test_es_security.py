"""Alert documents against osmem through the real sink: every sample alert indexes under the
template, numeric details range and aggregate as numbers, a word where a number belongs is
kept aside instead of refusing the alert, and the Elastic Security fields are searchable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.es.details import RAW_FIELD
from pipeline.sinks import ElasticsearchSink
from tests.es.mapping import sample_alerts
from tests.integration.test_elasticsearch_sink import search, sink_for


def _index(sink: ElasticsearchSink, alerts: list[dict[str, Any]]) -> None:
    for alert in alerts:
        sink.add("alert", alert["alert"]["id"], alert)
    result = sink.flush()
    assert (result.written, result.rejected) == (len(alerts), ())


def _variant(alert: dict[str, Any], suffix: str, **details: Any) -> dict[str, Any]:
    return {**alert, "alert": {**alert["alert"], "id": alert["alert"]["id"] + suffix},
            "details": {**alert["details"], **details}}


def test_sample_alerts_index_with_numeric_details_and_security_fields(osmem_clone: Any, tmp_path: Path) -> None:
    sink = sink_for(osmem_clone.url)
    sink.start()
    alerts = sample_alerts(tmp_path)
    travel = next(a for a in alerts if a["rule"]["id"] == "geo_divergence.impossible_travel")
    odd = [
        _variant(travel, "-words", speed_kmh="n/a", distance_km="1234.5"),  # a word, and a number as text
        _variant(travel, "-anomaly", **{"contribution.volume": 0.4, "requests": 31}),
    ]
    _index(sink, alerts + odd)

    [hit] = search(sink, {"ids": {"values": [travel["alert"]["id"] + "-anomaly"]}})
    mapping = sink.client.indices.get_mapping(index=hit["_index"]).body[hit["_index"]]
    details = mapping["mappings"]["properties"]["details"]["properties"]
    assert details["speed_kmh"]["type"] == "double" and details["requests"]["type"] == "long"
    assert details["contribution"]["properties"]["volume"]["type"] == "double"

    fast = search(sink, {"range": {"details.speed_kmh": {"gte": 1000}}})
    assert {h["_id"] for h in fast} == {a["alert"]["id"] for a in alerts + odd
                                       if isinstance((a.get("details") or {}).get("speed_kmh"), float)
                                       and a["details"]["speed_kmh"] >= 1000}
    assert fast  # the sample's impossible travel is faster than any plane
    far = search(sink, {"range": {"details.distance_km": {"gte": 1234, "lte": 1235}}})
    assert travel["alert"]["id"] + "-words" in {h["_id"] for h in far}
    kept = search(sink, {"term": {f"{RAW_FIELD}.speed_kmh": "n/a"}})
    assert [h["_id"] for h in kept] == [travel["alert"]["id"] + "-words"]
    sink.client.indices.refresh(index="tokenwatch-alerts-*")
    top = sink.client.search(index="tokenwatch-alerts-*", size=0,
                             aggs={"fastest": {"max": {"field": "details.speed_kmh"}}})["aggregations"]
    assert top["fastest"]["value"] == max(a["details"]["speed_kmh"] for a in alerts
                                          if isinstance((a.get("details") or {}).get("speed_kmh"), float))

    assert len(search(sink, {"term": {"event.kind": "alert"}})) == len(alerts) + len(odd)
    critical = search(sink, {"term": {"kibana.alert.severity": "critical"}})
    assert critical and all(h["_source"]["kibana"]["alert"]["risk_score"] == 99 for h in critical)
    lateral = search(sink, {"term": {"threat.tactic.name": "Lateral Movement"}})
    assert {h["_source"]["rule"]["id"].partition(".")[0] for h in lateral} >= {"replay", "post_revocation_use"}
    tokens = search(sink, {"term": {"threat.technique.subtechnique.id": "T1550.001"}})
    assert len(tokens) == len(lateral)
    sink.close()
