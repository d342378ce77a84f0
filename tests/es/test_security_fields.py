"""Alert documents carry what Elastic Security reads: ``event.kind``, ``kibana.alert.*`` and the
ATT&CK tactic beside every technique, with reference URLs."""

from __future__ import annotations

from typing import Any

import pytest

from detectors import DETECTORS
from pipeline.es.documents import shape
from pipeline.es.mitre import SUBTECHNIQUES, TACTICS, TECHNIQUES, ecs_threat, parent_of, rule_threat, tactics_of
from pipeline.es.security import ELASTIC_RISK_SCORE, rule_uuid
from tests.es.mapping import NUMERIC, field_types
from tests.factories import BERLIN_HOME, SINGAPORE_VPS, event, run

RULES = [rule for cls in DETECTORS.values() for rule in cls.rules]


@pytest.fixture(scope="module")
def travel() -> dict[str, Any]:
    alerts = run([
        event("issued", 0, token="at-9", place=BERLIN_HOME, scopes=("read",), event_id="tr-1"),
        event("used", 120, token="at-9", place=SINGAPORE_VPS, scopes=("read",), required=("read",), event_id="tr-2"),
    ])
    return next(a for a in alerts if a.rule.id == "geo_divergence.impossible_travel").to_json_dict()


def test_every_technique_a_rule_names_has_its_tactics_and_its_attack_name() -> None:
    for rule in RULES:
        for tid, name in rule.techniques:
            assert tactics_of(tid), (rule.id, tid)
            parent = TECHNIQUES[parent_of(tid)][0]
            assert name == (parent if tid == parent_of(tid) else f"{parent}: {SUBTECHNIQUES[tid]}"), (rule.id, tid)


def test_attack_facts_for_the_token_techniques() -> None:
    assert {TACTICS[t] for t in tactics_of("T1550.001")} == {"Defense Evasion", "Lateral Movement"}
    assert [TACTICS[t] for t in tactics_of("T1528")] == ["Credential Access"]
    assert {TACTICS[t] for t in tactics_of("T1078")} == {"Initial Access", "Persistence", "Privilege Escalation",
                                                         "Defense Evasion"}


def test_ecs_threat_puts_a_subtechnique_under_its_parent_with_references() -> None:
    threat = ecs_threat(["T1550.001", "T1528"])
    assert threat["framework"] == "MITRE ATT&CK"
    assert [t["id"] for t in threat["tactic"]] == ["TA0005", "TA0008", "TA0006"]
    assert threat["tactic"][0]["reference"] == "https://attack.mitre.org/tactics/TA0005/"
    alt, steal = threat["technique"]
    assert (alt["id"], alt["name"]) == ("T1550", "Use Alternate Authentication Material")
    assert alt["subtechnique"] == [{"id": "T1550.001", "name": "Application Access Token",
                                    "reference": "https://attack.mitre.org/techniques/T1550/001/"}]
    assert steal == {"id": "T1528", "name": "Steal Application Access Token",
                     "reference": "https://attack.mitre.org/techniques/T1528/"}


def test_rule_threat_groups_techniques_by_tactic() -> None:
    by_tactic = {entry["tactic"]["id"]: [t["id"] for t in entry["technique"]]
                 for entry in rule_threat(["T1550.001", "T1528"])}
    assert by_tactic == {"TA0005": ["T1550"], "TA0008": ["T1550"], "TA0006": ["T1528"]}


def test_an_alert_document_reads_as_an_external_alert(travel: dict[str, Any]) -> None:
    doc = shape("alert", travel)
    severity = travel["alert"]["severity"]
    assert doc["event"]["kind"] == "alert"  # ECS reserves "signal" for Kibana's own rules
    assert doc["event"]["module"] == "tokenwatch" and doc["event"]["severity"] == ELASTIC_RISK_SCORE[severity]
    assert doc["event"]["risk_score"] == travel["alert"]["risk_score"]
    kibana = doc["kibana"]["alert"]
    assert kibana["rule"]["name"] == travel["rule"]["name"] and kibana["rule"]["rule_id"] == travel["rule"]["id"]
    assert kibana["rule"]["uuid"] == rule_uuid(travel["rule"]["id"]) == rule_uuid("geo_divergence.impossible_travel")
    assert kibana["severity"] == severity and kibana["risk_score"] == ELASTIC_RISK_SCORE[severity]
    assert kibana["workflow_status"] == "open" and kibana["status"] == "active"
    assert kibana["original_time"] == travel["@timestamp"] and kibana["reason"] == travel["alert"]["summary"]
    assert {t["name"] for t in doc["threat"]["tactic"]} >= {"Defense Evasion", "Lateral Movement", "Initial Access"}
    assert {e["tactic"]["id"] for e in kibana["rule"]["threat"]} == {t["id"] for t in doc["threat"]["tactic"]}
    assert travel["threat"]["technique"][0]["id"] == "T1550.001"  # the caller's document is not changed


def test_workflow_status_follows_the_alert_status(travel: dict[str, Any]) -> None:
    for status in ("open", "acknowledged", "closed"):
        doc = shape("alert", {**travel, "alert": {**travel["alert"], "status": status}})
        assert doc["kibana"]["alert"]["workflow_status"] == status


def test_elastic_risk_scores_follow_elastics_severity_bands() -> None:
    # Elastic's prebuilt rules: low 21, medium 47, high 73, critical 99 (bands 0-21, 22-47, 48-73, 74-100)
    assert ELASTIC_RISK_SCORE == {"low": 21, "medium": 47, "high": 73, "critical": 99}


def test_every_field_the_security_builder_writes_is_mapped(travel: dict[str, Any]) -> None:
    types = field_types()
    doc = shape("alert", travel)
    leaves: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}.{k}" if path else k)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                walk(item, path)
        else:
            leaves.append(path)

    walk({k: doc[k] for k in ("event", "kibana", "threat", "message")}, "")
    assert sorted(p for p in set(leaves) if p not in types) == []
    assert types["kibana.alert.original_time"] == "date" and types["event.severity"] in NUMERIC
    assert types["kibana.alert.risk_score"] in NUMERIC and types["event.kind"] == "keyword"
    assert types["assignee"] == types["triage.link"] == "keyword"
