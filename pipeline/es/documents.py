"""Document shaping for Elasticsearch: canonical events → ECS, alerts made index-safe and
readable by Elastic Security (``pipeline.es.security``).

The sink takes the documents the rest of tokenwatch already has (alert JSON,
canonical event JSON, dead-letter records, action records) and shapes them
here, so callers need not know the index layout.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pipeline.es.details import RAW_FIELD, typed_details
from pipeline.es.security import security_fields


def shape(doc_kind: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """The document as it is indexed for ``doc_kind`` (a new dict; the input is not changed)."""
    if doc_kind == "event" and "event_id" in document and "kind" in document:
        return ecs_event(document)
    doc = dict(document)
    if doc_kind == "alert":
        _ip_or_address(doc)
        _typed_details(doc)
        doc.update(security_fields(doc))
    elif doc_kind == "dead_letter" and "@timestamp" not in doc and doc.get("ingested_at"):
        doc["@timestamp"] = doc["ingested_at"]
    return doc


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _ip_or_address(doc: dict[str, Any]) -> None:
    """ECS: ``source.address`` always, ``source.ip`` only when it is an IP (not an AWS service name)."""
    source = doc.get("source")
    if not isinstance(source, Mapping) or source.get("ip") is None:
        return
    source = dict(source)
    source.setdefault("address", source["ip"])
    if not isinstance(source["ip"], str) or not _is_ip(source["ip"]):
        del source["ip"]
    doc["source"] = source


def _typed_details(doc: dict[str, Any]) -> None:
    """Numeric details as numbers; a value that is not one moves to ``details_raw`` (see
    ``pipeline.es.details``), so the index never refuses the alert over it."""
    details = doc.get("details")
    if not isinstance(details, Mapping):
        return
    kept, raw = typed_details(details)
    doc["details"] = kept
    if raw:
        doc[RAW_FIELD] = raw


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: _drop_none(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in (None, {}, [])}
    return value


def ecs_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical event (its JSON dict) as an ECS-shaped investigation document."""
    net: Mapping[str, Any] = event.get("network") or {}
    geo: Mapping[str, Any] = net.get("geo") or {}
    token: Mapping[str, Any] = event.get("token") or {}
    subject: Mapping[str, Any] = event.get("subject") or {}
    request: Mapping[str, Any] = event.get("request") or {}
    outcome: Mapping[str, Any] = event.get("outcome") or {}
    address = net.get("ip") or net.get("service")
    location = None
    if geo.get("lat") is not None and geo.get("lon") is not None:
        location = {"lat": geo["lat"], "lon": geo["lon"]}
    doc = {
        "@timestamp": event.get("time"),
        "event": {
            "id": event.get("event_id"),
            "kind": "event",
            "action": event.get("kind"),
            "dataset": event.get("source"),
            "outcome": outcome.get("result"),
            "reason": outcome.get("reason"),
            "ingested": event.get("ingested_at"),
        },
        "token": dict(token) or None,
        "user": {"id": subject.get("id"), "name": subject.get("name"), "kind": subject.get("kind")},
        "client": {"id": event.get("client_id")},
        "session": {"id": event.get("session_id")},
        "organization": {"id": event.get("tenant")},
        "source": {
            "ip": net.get("ip") if net.get("ip") and _is_ip(net["ip"]) else None,
            "address": address,
            "geo": {"country_iso_code": geo.get("country"), "city_name": geo.get("city"), "location": location},
            "as": {"number": net.get("asn"), "organization": {"name": net.get("as_org")}},
            "hosting": net.get("hosting"),
        },
        "user_agent": {"original": net.get("user_agent")},
        "http": {
            "request": {"id": request.get("id"), "method": request.get("method")},
            "response": {"status_code": request.get("status")},
        },
        "url": {"path": request.get("resource")},
        "tokenwatch": {
            "grant_type": event.get("grant_type"),
            "scopes": list(event.get("scopes") or []),
            "required_scopes": list(event.get("required_scopes") or []),
            "egress": net.get("egress"),
            "provider": net.get("provider"),
            "device_id": net.get("device_id"),
            "service": net.get("service"),
            "geo_source": geo.get("source"),
            "geo_accuracy_km": geo.get("accuracy_km"),
            "proof": request.get("proof"),
            "revocation": event.get("revocation"),
        },
    }
    cleaned: dict[str, Any] = _drop_none(doc)
    return cleaned
