"""The fields Elastic Security reads on an alert: ``event.*``, ``kibana.alert.*`` and ATT&CK ``threat``.

tokenwatch detects outside the Elastic Stack, so its alerts are ``event.kind: "alert"``: ECS
reserves ``"signal"`` for the alerts Kibana's own rules write, and says ingestion must not set
it. Elastic's way in for outside alerts is a detection rule over ``event.kind:alert``
documents (its prebuilt "External Alerts" rule, or the rule in the Kibana export,
``pipeline.es.kibana``): that rule raises them into Security → Alerts, taking severity from
``event.severity`` and the risk score from ``event.risk_score``. The ``kibana.alert.*`` fields
of Elastic's alert schema are written too, so the documents read the same in Discover and
dashboards as Elastic's own alerts do.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from pipeline.es.mitre import ecs_threat, rule_threat

MODULE = "tokenwatch"
DATASET = "tokenwatch.alerts"

ELASTIC_RISK_SCORE: dict[str, int] = {"low": 21, "medium": 47, "high": 73, "critical": 99}
"""Severity → the risk score Elastic's prebuilt rules give it (and the "External Alerts"
rule maps back from ``event.severity``)."""

WORKFLOW_STATUS: dict[str, str] = {"open": "open", "acknowledged": "acknowledged", "closed": "closed"}
"""tokenwatch alert status → Elastic Security's ``kibana.alert.workflow_status``."""



def status_update(status: str) -> dict[str, Any]:
    """The partial alert document a triage change writes: ``alert.status`` and the Elastic
    Security workflow status that mirrors it (a stale one would show a closed alert as open
    in Security → Alerts)."""
    return {"alert": {"status": status},
            "kibana": {"alert": {"workflow_status": WORKFLOW_STATUS.get(status, "open")}}}


_RULE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://tokenwatch/rules")


def rule_uuid(rule_id: str) -> str:
    """A stable UUID per rule id (``kibana.alert.rule.uuid``): the same in every deployment."""
    return str(uuid.uuid5(_RULE_NAMESPACE, rule_id))


def security_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """``event``, ``message``, ``kibana`` and ``threat`` for alert document ``doc`` (its JSON dict)."""
    alert: Mapping[str, Any] = doc.get("alert") or {}
    rule: Mapping[str, Any] = doc.get("rule") or {}
    severity = str(alert.get("severity") or "medium")
    technique_ids = [t["id"] for t in (doc.get("threat") or {}).get("technique") or () if t.get("id")]
    rule_id = str(rule.get("id") or "")
    kibana_rule: dict[str, Any] = {"name": rule.get("name"), "rule_id": rule_id, "uuid": rule_uuid(rule_id)}
    if technique_ids:
        kibana_rule["threat"] = rule_threat(technique_ids)
    fields: dict[str, Any] = {
        "event": {
            "kind": "alert",
            "module": MODULE,
            "dataset": DATASET,
            "id": alert.get("id"),
            "severity": ELASTIC_RISK_SCORE[severity],
            "risk_score": alert.get("risk_score"),
        },
        "message": alert.get("summary"),
        "kibana": {"alert": {
            "uuid": alert.get("id"),
            "rule": kibana_rule,
            "severity": severity,
            "risk_score": ELASTIC_RISK_SCORE[severity],
            "workflow_status": WORKFLOW_STATUS.get(str(alert.get("status") or "open"), "open"),
            "status": "active",
            "original_time": doc.get("@timestamp"),
            "reason": alert.get("summary"),
        }},
    }
    if technique_ids:
        fields["threat"] = ecs_threat(technique_ids)
    return fields
