"""Transport envelopes: records batched by the system that ships them are mapped one by one.

- Azure diagnostic settings streamed to Event Hubs (the Kafka endpoint being the natural
  way into tokenwatch) wrap records as ``{"records": [ … ]}`` (Microsoft's "Stream Azure
  monitoring data to an event hub" documents the shape); records of several categories
  may share one message.
- The Kubernetes audit webhook backend posts ``audit.k8s.io/v1`` ``EventList`` objects
  (``{"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [ … ]}``).

Each record is recognised and mapped on its own: the same events as the records one line
each; a bad record costs itself and is named in the line's dead letter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.detect_helpers import detect_lines
from tests.pipeline.test_e2e_entra_graph import ENTRA, GRAPH, HOME_IP, TOKEN, _graph
from tests.pipeline.test_e2e_k8s import JTI, POD_IP, kubelet_token, use


def event_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": list(items)}



def test_an_event_hubs_message_maps_like_its_records_one_line_each() -> None:
    one_by_one = detect_lines([*ENTRA, *GRAPH])
    wrapped = detect_lines([{"records": ENTRA}, *GRAPH])
    assert wrapped.dead_letters == [] and wrapped.summary.events == one_by_one.summary.events == 4
    assert wrapped.summary.per_format == {"entra": 2, "graph": 2}
    assert wrapped.hits == one_by_one.hits == [("geo_divergence.issue_use_divergence", TOKEN)]


def test_a_sign_in_from_event_hubs_joins_a_graph_use_and_its_benign_twin_is_quiet() -> None:
    attack = detect_lines([{"records": [ENTRA[1]]}, GRAPH[1]])
    assert attack.hits == [("geo_divergence.issue_use_divergence", TOKEN)]
    twin = detect_lines([{"records": ENTRA}, GRAPH[0], _graph(1, IPAddress=HOME_IP, UserAgent="Mozilla/5.0")])
    assert twin.alerts == [] and twin.dead_letters == []


def test_a_bad_record_in_an_envelope_costs_only_itself_and_is_named() -> None:
    found = detect_lines([{"records": [ENTRA[0], "not a record", {"neither": "a known format"}, ENTRA[1]]}, GRAPH[1]])
    assert found.summary.events == 3 and found.hits == [("geo_divergence.issue_use_divergence", TOKEN)]
    [letter] = found.dead_letters
    assert letter["reason"].startswith("entra: records[1]: expected an object, got str (2 of 4 records invalid: 1, 2)")
    assert [entry["index"] for entry in letter["records"]] == [1, 2]
    assert letter["records"][1]["raw"] == {"neither": "a known format"}


def test_records_of_types_no_detector_needs_are_counted_per_type() -> None:
    audit = {**ENTRA[0], "category": "AuditLogs"}
    found = detect_lines([{"records": [ENTRA[0], audit, audit]}])
    assert found.summary.events == 1 and found.dead_letters == []
    assert found.summary.skipped == {"entra:AuditLogs": 2}
    only_skipped = detect_lines([{"records": [audit]}])
    assert only_skipped.summary.skipped == {"entra:AuditLogs": 1} and only_skipped.summary.events == 0


def test_a_records_key_beside_other_keys_is_no_envelope() -> None:
    found = detect_lines([{"records": ENTRA, "category": "SignInLogs"}])
    assert found.summary.events == 0 and len(found.dead_letters) == 1


def test_an_audit_webhook_event_list_maps_like_its_items() -> None:
    thief = use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")
    items = [kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), thief]
    one_by_one = detect_lines(items)
    batched = detect_lines([event_list(*items)])
    assert batched.hits == one_by_one.hits == [("replay.binding_mismatch", JTI)]
    assert batched.summary.events == one_by_one.summary.events == 3 and batched.dead_letters == []
    twin = detect_lines([event_list(kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z", ip=POD_IP))])
    assert twin.alerts == []


def test_a_mixed_stream_of_envelopes_gives_the_alerts_of_the_shapes_one_at_a_time() -> None:
    thief = use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")
    k8s = [kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), thief]
    separately = sorted(detect_lines([*ENTRA, *GRAPH]).hits + detect_lines(k8s).hits)
    mixed = detect_lines([{"records": [ENTRA[0]]}, event_list(*k8s[:2]), {"records": [ENTRA[1]]}, GRAPH[0],
                          orjson.dumps(event_list(k8s[2])), GRAPH[1]])
    assert mixed.hits == separately and mixed.dead_letters == []


# -- AWS transports -----------------------------------------------------------------
# Amazon EventBridge events: version, id, detail-type, source, account, time, region,
# resources, detail (EventBridge User Guide, "Amazon EventBridge events"). CloudTrail
# management events arrive as detail-type "AWS API Call via CloudTrail", source "aws.<service>",
# the record in detail; Okta Log Streaming to EventBridge sends detail-type "SystemLog",
# source "aws.partner/okta.com/<org>/<stream>", the System Log event in detail.
# A CloudWatch Logs subscription filter delivers (gzip-compressed; read after decompressing)
# {"messageType": "DATA_MESSAGE", "owner", "logGroup", "logStream", "subscriptionFilters",
# "logEvents": [{"id", "timestamp", "message"}]} with each CloudTrail record as JSON text
# in message (CloudWatch Logs User Guide, "Subscription filters", example payload);
# "CONTROL_MESSAGE" payloads only check reachability.
FORMATS_DIR = Path(__file__).resolve().parents[1] / "data" / "formats"
IMDS_USES = [orjson.loads(line) for line in (FORMATS_DIR / "cloudtrail_instance.jsonl").read_bytes().splitlines()]
OKTA = [orjson.loads(line) for line in (FORMATS_DIR / "okta.jsonl").read_bytes().splitlines()]


def eventbridge(detail: dict[str, Any], detail_type: str, source: str) -> dict[str, Any]:
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": detail_type,
            "source": source, "account": "111122223333", "time": detail.get("eventTime", "2026-11-24T09:00:00Z"),
            "region": "eu-central-1", "resources": [], "detail": detail}


def subscription(*records: dict[str, Any]) -> dict[str, Any]:
    return {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "aws-cloudtrail-logs",
            "logStream": "111122223333_CloudTrail_eu-central-1", "subscriptionFilters": ["to-tokenwatch"],
            "logEvents": [{"id": f"3195310660696698337880902507980421114328961542429{n}", "timestamp": 1795510800000,
                           "message": orjson.dumps(record).decode()} for n, record in enumerate(records)]}


def test_cloudtrail_through_eventbridge_and_cloudwatch_logs_maps_like_the_records() -> None:
    alone = detect_lines(IMDS_USES)
    via_eventbridge = detect_lines([eventbridge(r, "AWS API Call via CloudTrail", "aws.sts") for r in IMDS_USES])
    via_cloudwatch = detect_lines([subscription(*IMDS_USES)])
    assert alone.hits  # the instance credentials used from outside AWS
    for found in (via_eventbridge, via_cloudwatch):
        assert found.dead_letters == [] and found.summary.per_format == alone.summary.per_format
        assert found.summary.events == alone.summary.events and found.hits == alone.hits


def test_okta_log_streaming_through_eventbridge_maps_like_the_system_log() -> None:
    alone = detect_lines(OKTA)
    streamed = detect_lines([eventbridge(e, "SystemLog", "aws.partner/okta.com/example/tokenwatch") for e in OKTA])
    assert streamed.dead_letters == [] and streamed.summary.events == alone.summary.events
    assert streamed.hits == alone.hits and streamed.hits  # the sample's impossible travel


def test_a_cloudwatch_message_that_is_not_a_record_costs_only_itself() -> None:
    payload = subscription(*IMDS_USES[:2])
    payload["logEvents"].insert(1, {"id": "x", "timestamp": 1795510800000, "message": "START RequestId: abc"})
    found = detect_lines([payload])
    assert found.summary.events == 2
    [letter] = found.dead_letters
    assert letter["reason"].startswith("cloudtrail: logEvents[1]: message is ")


def test_keycloak_log_text_shipped_through_cloudwatch_logs_maps_like_the_plain_lines() -> None:
    """Keycloak on ECS/EKS logs to CloudWatch Logs: each log event's message is a plain
    jboss-logging line, read as it is from a file."""
    plain = [line.decode() for line in (FORMATS_DIR / "keycloak_jboss.log").read_bytes().splitlines() if line.strip()]
    alone = detect_lines([line.encode() for line in plain])
    payload = {"messageType": "DATA_MESSAGE", "owner": "111122223333", "logGroup": "/ecs/keycloak",
               "logStream": "keycloak/keycloak/0123", "subscriptionFilters": ["to-tokenwatch"],
               "logEvents": [{"id": str(n), "timestamp": 1795510800000, "message": m} for n, m in enumerate(plain)]}
    shipped = detect_lines([payload])
    assert shipped.dead_letters == [] and shipped.summary.events == alone.summary.events > 0
    assert shipped.hits == alone.hits and shipped.hits
