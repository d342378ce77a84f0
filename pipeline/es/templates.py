"""Index templates and time-based index names for the Elasticsearch sink.

One template per document kind, ECS-shaped: ids and enumerations are
``keyword``, times ``date``, ``source.ip`` an ``ip``, ``source.geo.location`` a
``geo_point``, summaries ``text``. Unmapped strings become ``keyword``. In
``details.*`` the measures ``pipeline.es.details`` lists are numbers (the document
builder moves a value that is not one aside, so none is refused) and every other
detail is ``keyword``, so a new detail never makes a document unindexable. Alerts
also carry the fields Elastic Security reads (``event.*``, ``kibana.alert.*``,
ATT&CK ``threat.tactic``/``threat.technique``: ``pipeline.es.security``). Index names
carry the UTC day of the document's own time, so a replay of the same alert lands in
the same index.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from pipeline.es.details import RAW_FIELD, details_mapping

FAMILIES: dict[str, str] = {
    "alert": "alerts",
    "event": "events",
    "dead_letter": "dead-letters",
    "action": "actions",
}
"""Document kind → index family (``<prefix>-<family>-YYYY.MM.DD``)."""

TIME_FIELDS: tuple[str, ...] = ("@timestamp", "time", "ingested_at")
"""Where a document's time is looked for, in order."""

KW: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
DATE: dict[str, Any] = {"type": "date"}
TEXT: dict[str, Any] = {"type": "text"}
LONG: dict[str, Any] = {"type": "long"}
BOOL: dict[str, Any] = {"type": "boolean"}
FLOAT: dict[str, Any] = {"type": "float"}


def _obj(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"properties": fields}


_DYNAMIC = [
    {"details_contributions_as_numbers": {"path_match": "details.contribution.*", "mapping": {"type": "double"}}},
    {"details_as_keywords": {"path_match": "details.*", "mapping": KW}},
    {"details_raw_as_keywords": {"path_match": f"{RAW_FIELD}.*", "mapping": KW}},
    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": KW}},
]

_SOURCE = _obj(
    ip={"type": "ip", "ignore_malformed": True},
    address=KW,
    geo=_obj(country_iso_code=KW, city_name=KW, location={"type": "geo_point"}),
    **{"as": _obj(number=LONG, organization=_obj(name=KW))},
    hosting=BOOL,
    net_class=KW,
    net_list=KW,
)
_REF = _obj(id=KW, name=KW, reference=KW)
_TECHNIQUE = _obj(id=KW, name=KW, reference=KW, subtechnique=_REF)
_THREAT = _obj(framework=KW, tactic=_REF, technique=_TECHNIQUE)
_TOKEN = _obj(id=KW, family_id=KW, type=KW, parent_id=KW, issued_at=DATE, expires_at=DATE, audience=KW)
_USER = _obj(id=KW, name=KW)

ALERT_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "alert": _obj(id=KW, severity=KW, risk_score={"type": "float"}, status=KW, summary=TEXT,
                  first_seen=DATE, last_seen=DATE, count=LONG),
    "rule": _obj(id=KW, name=KW, category=KW),
    "token": _TOKEN,
    "user": _USER,
    "client": _obj(id=KW),
    "session": _obj(id=KW),
    "source": _SOURCE,
    "evidence": _obj(event_id=KW, kind=KW, time=DATE, source=KW, token_id=KW, ip=KW, service=KW, country=KW,
                     city=KW, asn=LONG, as_org=KW, scopes=KW, required_scopes=KW, client_id=KW,
                     outcome=KW, request_id=KW, resource=KW, binding=KW),
    "threat": _THREAT,
    "response": _obj(action=KW, state=KW),
    "details": details_mapping(),
    RAW_FIELD: {"type": "object", "dynamic": True},
    # Elastic Security (pipeline.es.security): ECS event fields and Elastic's alert schema.
    "event": _obj(kind=KW, module=KW, dataset=KW, id=KW, severity=LONG, risk_score=FLOAT),
    "message": TEXT,
    "kibana": _obj(alert=_obj(
        uuid=KW, severity=KW, risk_score=FLOAT, workflow_status=KW, status=KW, original_time=DATE, reason=KW,
        rule=_obj(name=KW, rule_id=KW, uuid=KW, threat=_obj(framework=KW, tactic=_REF, technique=_TECHNIQUE)),
    )),
    # Triage, written by the alert store / CLI: who owns the alert, and its case or ticket.
    "assignee": KW,
    "triage": _obj(link=KW),
}

EVENT_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "event": _obj(id=KW, kind=KW, action=KW, dataset=KW, outcome=KW, reason=KW, ingested=DATE),
    "token": _obj(**_TOKEN["properties"], binding=_obj(method=KW, value=KW)),
    "user": _obj(**_USER["properties"], kind=KW),
    "client": _obj(id=KW),
    "session": _obj(id=KW),
    "organization": _obj(id=KW),
    "source": _SOURCE,
    "user_agent": _obj(original=KW),
    "http": _obj(request=_obj(id=KW, method=KW), response=_obj(status_code=LONG)),
    "url": _obj(path=KW),
    "tokenwatch": _obj(grant_type=KW, scopes=KW, required_scopes=KW, egress=KW, provider=KW,
                       device_id=KW, service=KW, geo_source=KW, geo_accuracy_km={"type": "float"}),
}

DEAD_LETTER_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "reason": TEXT,
    "format": KW,
    "origin": KW,
    "ingested_at": DATE,
    "raw_bytes": LONG,
    "raw_sha256": KW,
    "truncated": BOOL,
    "raw_text": {"type": "text", "index": False},
    # The redacted original in any vendor shape: kept, not indexed (it would clash across vendors).
    "raw": {"type": "object", "enabled": False},
    # The bad records of a batch (a CloudTrail log file), each with its index, reason and raw.
    "records": {"type": "object", "enabled": False},
}

ACTION_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "action": _obj(id=KW, type=KW, target=KW, state=KW, mode=KW, attempts=LONG, reason=TEXT),
    "alert": _obj(id=KW),
    "rule": _obj(id=KW),
    "token": _TOKEN,
    "user": _USER,
    "actor": KW,
}

PROPERTIES: dict[str, dict[str, Any]] = {
    "alert": ALERT_PROPERTIES,
    "event": EVENT_PROPERTIES,
    "dead_letter": DEAD_LETTER_PROPERTIES,
    "action": ACTION_PROPERTIES,
}


def template_name(prefix: str, doc_kind: str) -> str:
    return f"{prefix}-{FAMILIES[doc_kind]}"


def index_template(prefix: str, doc_kind: str, priority: int = 200) -> dict[str, Any]:
    """Keyword arguments for ``indices.put_index_template`` of one document kind."""
    return {
        "name": template_name(prefix, doc_kind),
        "index_patterns": [f"{template_name(prefix, doc_kind)}-*"],
        "priority": priority,
        "template": {
            "settings": {"number_of_shards": 1},
            "mappings": {"dynamic_templates": _DYNAMIC, "properties": PROPERTIES[doc_kind]},
        },
        "meta": {"managed_by": "tokenwatch"},
    }


def document_time(document: Mapping[str, Any]) -> datetime | None:
    """The document's own time (UTC), from the first of ``TIME_FIELDS`` that parses."""
    for key in TIME_FIELDS:
        value = document.get(key)
        if isinstance(value, datetime):
            return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def index_name(prefix: str, doc_kind: str, when: datetime) -> str:
    """``<prefix>-<family>-YYYY.MM.DD`` for the UTC day of ``when``."""
    day = when.astimezone(timezone.utc) if when.tzinfo else when
    return f"{template_name(prefix, doc_kind)}-{day:%Y.%m.%d}"
