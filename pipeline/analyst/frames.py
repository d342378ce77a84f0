"""The flat shapes of alerts, evidence and events in the notebooks' pandas frames.

Pure functions from documents (alert JSON, canonical events, the ECS event documents of
the Elasticsearch events index) to rows: one place that names the columns, so every
notebook and ``pipeline.analyst.explore`` agree on them. Times are timezone-aware UTC, ASNs and
HTTP statuses nullable integers, scope lists space-separated text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from schemas.events import CanonicalEvent

ALERT_COLUMNS: tuple[str, ...] = (
    "time", "alert_id", "rule", "category", "severity", "status", "user", "client", "token", "family",
    "ip", "country", "asn", "as_org", "count", "summary",
    # beyond the core: what triage and the map need
    "session", "risk_score", "lat", "lon", "hosting", "response", "response_state", "disposition",
    "first_seen", "last_seen",
)
"""Columns of ``alerts_frame``: the alert's event time, ids, where it came from, triage."""

EVIDENCE_COLUMNS: tuple[str, ...] = (
    "time", "event_id", "kind", "source", "token", "ip", "service", "country", "city", "asn", "as_org", "scopes",
    "required_scopes", "client", "outcome", "request_id", "resource", "binding",
)

EVENT_COLUMNS: tuple[str, ...] = (
    "time", "event_id", "kind", "source", "tenant", "token", "token_type", "family", "parent", "user",
    "user_kind", "client", "session", "grant_type", "scopes", "required_scopes", "ip", "country", "city",
    "lat", "lon", "accuracy_km", "asn", "as_org", "hosting", "egress", "user_agent", "request_id", "method",
    "resource", "status", "outcome", "reason", "revocation", "expires_at",
)
"""Columns of ``events_frame``: the canonical event fields (README "Canonical events"), flattened."""


def _get(doc: Mapping[str, Any] | None, *path: str) -> Any:
    value: Any = doc
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _words(values: Iterable[str] | None) -> str:
    return " ".join(values or ())


# -- alerts ------------------------------------------------------------------------------
def alert_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One alert document (as stored or as ``tokenwatch detect`` writes it) as a flat row."""
    source = doc.get("source") or {}
    return {
        "time": doc.get("@timestamp"),
        "alert_id": _get(doc, "alert", "id"),
        "rule": _get(doc, "rule", "id"),
        "category": _get(doc, "rule", "category"),
        "severity": _get(doc, "alert", "severity"),
        "status": _get(doc, "alert", "status") or "open",
        "user": _get(doc, "user", "id"),
        "client": _get(doc, "client", "id"),
        "token": _get(doc, "token", "id"),
        "family": _get(doc, "token", "family_id"),
        "ip": source.get("ip") or source.get("address"),
        "country": _get(source, "geo", "country_iso_code"),
        "asn": _get(source, "as", "number"),
        "as_org": _get(source, "as", "organization", "name"),
        "count": _get(doc, "alert", "count") or 1,
        "summary": _get(doc, "alert", "summary"),
        "session": _get(doc, "session", "id"),
        "risk_score": _get(doc, "alert", "risk_score"),
        "lat": _get(source, "geo", "location", "lat"),
        "lon": _get(source, "geo", "location", "lon"),
        "hosting": source.get("hosting"),
        "response": _get(doc, "response", "action"),
        "response_state": _get(doc, "response", "state"),
        "disposition": _get(doc, "triage", "disposition"),
        "first_seen": _get(doc, "alert", "first_seen"),
        "last_seen": _get(doc, "alert", "last_seen"),
    }


def alerts_frame_of(docs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Alert documents as a frame (``ALERT_COLUMNS``), oldest first (ties by id)."""
    frame = pd.DataFrame.from_records([alert_row(d) for d in docs], columns=list(ALERT_COLUMNS))
    for column in ("time", "first_seen", "last_seen"):
        frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
    frame["asn"] = frame["asn"].astype("Int64")
    frame["count"] = frame["count"].astype("int64")
    frame["risk_score"] = frame["risk_score"].astype("Int64")
    frame["lat"] = frame["lat"].astype("float64")
    frame["lon"] = frame["lon"].astype("float64")
    frame["hosting"] = frame["hosting"].astype("boolean")
    return frame.sort_values(["time", "alert_id"], kind="stable").reset_index(drop=True)


def evidence_frame(doc: Mapping[str, Any]) -> pd.DataFrame:
    """The evidence of one alert document, one row per event, oldest first (``EVIDENCE_COLUMNS``)."""
    rows = [{**{k: e.get(k) for k in EVIDENCE_COLUMNS}, "token": e.get("token_id"), "client": e.get("client_id"),
             "scopes": _words(e.get("scopes")), "required_scopes": _words(e.get("required_scopes"))}
            for e in doc.get("evidence") or ()]
    frame = pd.DataFrame.from_records(rows, columns=list(EVIDENCE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["asn"] = frame["asn"].astype("Int64")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


# -- events ------------------------------------------------------------------------------
def event_row(event: CanonicalEvent) -> dict[str, Any]:
    """One canonical event as a flat row."""
    tok, subj, net, req = event.token, event.subject, event.network, event.request
    geo = net.geo
    return {
        "time": event.time,
        "event_id": event.event_id,
        "kind": event.kind.value,
        "source": event.source,
        "tenant": event.tenant,
        "token": tok.id if tok else None,
        "token_type": tok.type.value if tok else None,
        "family": tok.family_id if tok else None,
        "parent": tok.parent_id if tok else None,
        "user": subj.id if subj else None,
        "user_kind": subj.kind if subj else None,
        "client": event.client_id,
        "session": event.session_id,
        "grant_type": event.grant_type,
        "scopes": _words(event.scopes),
        "required_scopes": _words(event.required_scopes),
        "ip": net.ip or net.service,
        "country": geo.country if geo else None,
        "city": geo.city if geo else None,
        "lat": geo.lat if geo else None,
        "lon": geo.lon if geo else None,
        "accuracy_km": geo.accuracy_km if geo else None,
        "asn": net.asn,
        "as_org": net.as_org,
        "hosting": net.hosting,
        "egress": net.egress,
        "user_agent": net.user_agent,
        "request_id": req.id if req else None,
        "method": req.method if req else None,
        "resource": req.resource if req else None,
        "status": req.status if req else None,
        "outcome": event.outcome.result,
        "reason": event.outcome.reason,
        "revocation": event.revocation.target if event.revocation else None,
        "expires_at": tok.expires_at if tok else None,
    }


def ecs_event_row(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One document of the Elasticsearch events index (``pipeline.es.documents.ecs_event``)
    as the same flat row as ``event_row``."""
    source = doc.get("source") or {}
    tw = doc.get("tokenwatch") or {}
    return {
        "time": doc.get("@timestamp"),
        "event_id": _get(doc, "event", "id"),
        "kind": _get(doc, "event", "action"),
        "source": _get(doc, "event", "dataset"),
        "tenant": _get(doc, "organization", "id"),
        "token": _get(doc, "token", "id"),
        "token_type": _get(doc, "token", "type"),
        "family": _get(doc, "token", "family_id"),
        "parent": _get(doc, "token", "parent_id"),
        "user": _get(doc, "user", "id"),
        "user_kind": _get(doc, "user", "kind"),
        "client": _get(doc, "client", "id"),
        "session": _get(doc, "session", "id"),
        "grant_type": tw.get("grant_type"),
        "scopes": _words(tw.get("scopes")),
        "required_scopes": _words(tw.get("required_scopes")),
        "ip": source.get("address") or source.get("ip"),
        "country": _get(source, "geo", "country_iso_code"),
        "city": _get(source, "geo", "city_name"),
        "lat": _get(source, "geo", "location", "lat"),
        "lon": _get(source, "geo", "location", "lon"),
        "accuracy_km": tw.get("geo_accuracy_km"),
        "asn": _get(source, "as", "number"),
        "as_org": _get(source, "as", "organization", "name"),
        "hosting": source.get("hosting"),
        "egress": tw.get("egress"),
        "user_agent": _get(doc, "user_agent", "original"),
        "request_id": _get(doc, "http", "request", "id"),
        "method": _get(doc, "http", "request", "method"),
        "resource": _get(doc, "url", "path"),
        "status": _get(doc, "http", "response", "status_code"),
        "outcome": _get(doc, "event", "outcome"),
        "reason": _get(doc, "event", "reason"),
        "revocation": _get(tw, "revocation", "target"),
        "expires_at": _get(doc, "token", "expires_at"),
    }


def typed_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Column types of an events frame, oldest first (ties in input order)."""
    frame["time"] = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["expires_at"] = pd.to_datetime(frame["expires_at"], utc=True, format="ISO8601")
    for column in ("asn", "status"):
        frame[column] = frame[column].astype("Int64")
    for column in ("lat", "lon", "accuracy_km"):
        frame[column] = frame[column].astype("float64")
    frame["hosting"] = frame["hosting"].astype("boolean")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def events_frame_of(events: Iterable[CanonicalEvent]) -> pd.DataFrame:
    """Canonical events as a frame (``EVENT_COLUMNS``)."""
    return typed_events(pd.DataFrame.from_records([event_row(e) for e in events], columns=list(EVENT_COLUMNS)))
