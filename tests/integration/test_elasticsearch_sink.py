"""The Elasticsearch sink against osmem (OpenSearch-compatible, flavour "opensearch").

Alerts are real: produced by the detection engine from factory events.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from osmem_server import OsmemServer

from pipeline.es.config import ElasticsearchConfig
from pipeline.sinks import ElasticsearchSink, SinkUnavailable
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from tests.factories import BERLIN_HOME, BERLIN_MOBILE, SINGAPORE_VPS, event, run

AFTER_REVOCATION = "post_revocation_use.after_revocation"
IMPOSSIBLE_TRAVEL = "geo_divergence.impossible_travel"


def revocation_attack(prefix: str = "rv") -> list[CanonicalEvent]:
    """Issue, use, revoke the token, then use it twice from another Berlin network (fixed event ids)."""
    common: dict[str, Any] = {"token": "at-1", "family": "fam-1", "session": "s-1", "scopes": ("read",)}
    return [
        event("issued", 0, expires_in=3600.0, event_id=f"{prefix}-1", **common),
        event("used", 50, required=("read",), event_id=f"{prefix}-2", **common),
        event("revoked", 100, token="at-1", revoke="token", event_id=f"{prefix}-3"),
        event("used", 700, required=("read",), place=BERLIN_MOBILE, event_id=f"{prefix}-4", **common),
        event("used", 800, required=("read",), place=BERLIN_MOBILE, event_id=f"{prefix}-5", **common),
    ]


def travel_attack() -> list[CanonicalEvent]:
    return [
        event("issued", 0, token="at-9", place=BERLIN_HOME, scopes=("read",), event_id="tr-1"),
        event("used", 120, token="at-9", place=SINGAPORE_VPS, scopes=("read",), required=("read",), event_id="tr-2"),
    ]


def sink_for(url: str, **config: Any) -> ElasticsearchSink:
    cfg = ElasticsearchConfig(hosts=[url], flavour="opensearch", **{"retry_backoff_s": 0.01, **config})
    return ElasticsearchSink(cfg)


def add_alerts(sink: ElasticsearchSink, alerts: list[Alert]) -> None:
    for alert in alerts:
        sink.add("alert", alert.alert.id, alert.to_json_dict())


def search(sink: ElasticsearchSink, query: dict[str, Any], index: str = "tokenwatch-alerts-*") -> list[dict[str, Any]]:
    sink.client.indices.refresh(index=index)
    return sink.client.search(index=index, query=query, size=100)["hits"]["hits"]


def test_templates_are_created_with_ecs_mappings(osmem_clone: Any) -> None:
    sink = sink_for(osmem_clone.url)
    sink.start()
    sink.start()  # idempotent
    templates = {t["name"]: t["index_template"]
                 for t in sink.client.indices.get_index_template(name="tokenwatch-*")["index_templates"]}
    assert set(templates) == {"tokenwatch-alerts", "tokenwatch-events", "tokenwatch-dead-letters", "tokenwatch-actions"}
    add_alerts(sink, run(travel_attack()))
    assert sink.flush().ok
    [mapping] = sink.client.indices.get_mapping(index="tokenwatch-alerts-*").body.values()
    props = mapping["mappings"]["properties"]
    assert props["source"]["properties"]["geo"]["properties"]["location"]["type"] == "geo_point"
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["alert"]["properties"]["summary"]["type"] == "text"
    assert props["rule"]["properties"]["id"]["type"] == "keyword"
    sink.close()


def test_alerts_are_bulk_indexed_and_found_by_geo_and_rule(osmem_clone: Any) -> None:
    sink = sink_for(osmem_clone.url)
    sink.start()
    alerts = run(revocation_attack()) + run(travel_attack())
    assert {a.rule.id for a in alerts} >= {AFTER_REVOCATION, IMPOSSIBLE_TRAVEL}
    add_alerts(sink, alerts)
    result = sink.flush()
    assert (result.written, result.rejected, sink.pending) == (len(alerts), (), 0)
    assert sink.client.indices.exists(index="tokenwatch-alerts-2026.11.24")

    near_berlin = search(sink, {"geo_distance": {"distance": "50km", "source.geo.location": {"lat": 52.52, "lon": 13.4}}})
    assert [h["_source"]["rule"]["id"] for h in near_berlin] == [AFTER_REVOCATION]
    in_asia = search(sink, {"geo_bounding_box": {"source.geo.location": {
        "top_left": {"lat": 10, "lon": 95}, "bottom_right": {"lat": -5, "lon": 110}}}})
    assert {h["_source"]["rule"]["id"] for h in in_asia} >= {IMPOSSIBLE_TRAVEL}
    assert all(h["_source"]["source"]["geo"]["city_name"] == "Singapore" for h in in_asia)
    by_rule = search(sink, {"terms": {"rule.id": [AFTER_REVOCATION, IMPOSSIBLE_TRAVEL]}})
    assert sorted(h["_id"] for h in by_rule) == sorted(
        a.alert.id for a in alerts if a.rule.id in (AFTER_REVOCATION, IMPOSSIBLE_TRAVEL))
    by_ip = search(sink, {"term": {"source.ip": SINGAPORE_VPS.ip}})
    assert by_ip and all(h["_source"]["source"]["ip"] == SINGAPORE_VPS.ip for h in by_ip)
    sink.close()


def test_replayed_alert_updates_the_same_document(osmem_clone: Any) -> None:
    sink = sink_for(osmem_clone.url)
    sink.start()
    events = revocation_attack()
    [first] = run(events[:4])
    [replayed] = run(events)  # the same events plus one more use: same id, folded count
    assert first.alert.id == replayed.alert.id and (first.alert.count, replayed.alert.count) == (1, 2)
    add_alerts(sink, [first])
    sink.flush()
    add_alerts(sink, [replayed])
    sink.flush()
    hits = search(sink, {"term": {"alert.id": first.alert.id}})
    assert len(hits) == 1 and hits[0]["_id"] == first.alert.id
    assert hits[0]["_source"]["alert"]["count"] == 2
    sink.close()


def test_events_dead_letters_and_actions_go_to_their_indices(osmem_clone: Any) -> None:
    sink = sink_for(osmem_clone.url)
    sink.start()
    events = travel_attack()
    for ev in events:
        sink.add("event", ev.event_id, ev.model_dump(mode="json"))
    sink.add("dead_letter", "t-0-17", {"reason": "not JSON: Expecting value", "origin": "kafka:t/0@17",
                                        "ingested_at": "2026-11-25T08:00:00+00:00", "raw_bytes": 3,
                                        "raw_sha256": "ab" * 32, "raw_text": "{{{", "truncated": False})
    sink.add("action", "act-1", {"@timestamp": "2026-11-24T09:02:01Z", "action": {"id": "act-1", "type": "revoke_token",
                                                                                  "state": "done"}})
    assert sink.flush().written == 4
    found = search(sink, {"geo_distance": {"distance": "100km", "source.geo.location": {"lat": 1.3, "lon": 103.8}}},
                   index="tokenwatch-events-*")
    assert [h["_id"] for h in found] == ["tr-2"] and found[0]["_index"] == "tokenwatch-events-2026.11.24"
    assert [h["_index"] for h in search(sink, {"match_all": {}}, index="tokenwatch-dead-letters-*")] == [
        "tokenwatch-dead-letters-2026.11.25"]
    assert len(search(sink, {"term": {"action.state": "done"}}, index="tokenwatch-actions-*")) == 1
    sink.close()


def test_a_document_the_mapping_refuses_is_rejected_not_retried(osmem_clone: Any) -> None:
    sink = sink_for(osmem_clone.url, max_retries=1)
    sink.start()
    [good] = run(revocation_attack())
    bad = good.to_json_dict() | {"alert": {**good.to_json_dict()["alert"], "first_seen": "not a date"}}
    sink.add("alert", good.alert.id, good.to_json_dict())
    sink.add("alert", "bad-1", bad)
    result = sink.flush()
    assert result.written == 1 and sink.pending == 0
    [rejected] = result.rejected
    assert rejected.doc_id == "bad-1" and rejected.status == 400 and "first_seen" in rejected.reason
    sink.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_server_down_is_backpressure_and_the_buffer_lands_when_it_is_back() -> None:
    port = _free_port()
    sink = sink_for(f"http://127.0.0.1:{port}", max_retries=2, request_timeout_s=2)
    alerts = run(revocation_attack("down"))
    add_alerts(sink, alerts)
    with pytest.raises(SinkUnavailable) as caught:
        sink.flush()
    assert "Connection" in caught.value.reason and caught.value.pending == len(alerts)
    assert sink.pending == len(alerts)
    server = OsmemServer.start(addr=f"127.0.0.1:{port}")
    try:
        sink.start()
        assert sink.flush().written == len(alerts) and sink.pending == 0
        assert [h["_id"] for h in search(sink, {"match_all": {}})] == [a.alert.id for a in alerts]
    finally:
        sink.close()
        server.close()
