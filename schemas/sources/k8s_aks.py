"""AKS control-plane audit (``aks``): Kubernetes audit events as Azure exports them.

AKS runs the apiserver; its audit events leave the cluster only through the cluster's
diagnostic settings, categories ``kube-audit`` (every request) and ``kube-audit-admin``
(the same without get and list). Three shapes carry the same ``audit.k8s.io/v1`` Event,
each mapped exactly as the ``k8s`` format maps a native one:

- **Diagnostic settings record** (to Event Hubs, alone or in a ``{"records": [...]}``
  message, or to a storage account): ``{time, resourceId, category, operationName,
  properties: {log, pod, stream, containerID}}`` with the event as JSON text in
  ``properties.log`` (Microsoft Learn, "Monitor and query AKS apiserver requests"; the
  Azure Monitor resource-log common schema).
- **AzureDiagnostics row** (Log Analytics, "Azure diagnostics" destination mode):
  ``Category`` and the same text in ``log_s``.
- **AKSAudit / AKSAuditAdmin row** (Log Analytics, "resource specific" mode; also
  ArcK8sAudit for Arc clusters): the event's fields as columns (Microsoft Learn, Azure
  Monitor table reference "AKSAudit": ``AuditId``, ``Stage``, ``Verb``, ``RequestUri``,
  ``User``, ``SourceIps``, ``UserAgent``, ``ObjectRef``, ``ResponseStatus``,
  ``RequestObject``, ``ResponseObject``, ``RequestReceivedTime``, ``Annotations``). The
  query API returns ``dynamic`` columns as JSON text; they are decoded like ``log``.

Embedded text is decoded bounded (``schemas.embedded_json``) and replaces the text in
the record, so the normalizer's field repairs reach the event's fields; a refused field
is reported at its place in the record (``properties.log.userAgent``, ``UserAgent``).
``event_id`` is the native one (``k8s:<auditID>@<received>``): a request logged under
both categories, or arriving by two shapes, is one event. ``requestObject`` logged as
``"skipped-too-big-size-object"`` counts as not logged. The cluster's resource id
(``resourceId``, ``ResourceId`` or ``_ResourceId``, lower-cased) is the events' ``tenant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from schemas.embedded_json import decode_in_place
from schemas.events import CanonicalEvent
from schemas.sources.base import AdapterContext, InvalidFields, InvalidRecord
from schemas.sources.common import MAX_ID
from schemas.sources.k8s import API_VERSION, K8sAuditFormat
from schemas.sources.k8s_deletions import SKIPPED_BODY

CATEGORIES = frozenset({"kube-audit", "kube-audit-admin"})

# Resource-specific table column -> audit event field (the columns hold the field as logged).
COLUMNS: dict[str, str] = {
    "AuditId": "auditID",
    "Level": "level",
    "Stage": "stage",
    "Verb": "verb",
    "RequestUri": "requestURI",
    "User": "user",
    "SourceIps": "sourceIPs",
    "UserAgent": "userAgent",
    "ObjectRef": "objectRef",
    "ResponseStatus": "responseStatus",
    "RequestObject": "requestObject",
    "ResponseObject": "responseObject",
    "RequestReceivedTime": "requestReceivedTimestamp",
    "Annotations": "annotations",
}
_FIELDS = {field: column for column, field in COLUMNS.items()}
_RESOURCE_IDS = ("resourceId", "ResourceId", "_ResourceId")  # the cluster: the events' tenant
_DYNAMIC = ("User", "SourceIps", "ObjectRef", "ResponseStatus", "RequestObject", "ResponseObject", "Annotations")


class AksAuditFormat(K8sAuditFormat):
    name: ClassVar[str] = "aks"
    # A diagnostic record, a Log Analytics row of either table shape.
    match_keys: ClassVar[frozenset[str]] = frozenset({"category", "Category", "AuditId"})

    def matches(self, raw: Mapping[str, Any]) -> bool:
        if _category(raw, "category"):
            return isinstance(raw.get("properties"), dict)
        if _category(raw, "Category"):
            return "log_s" in raw
        return "AuditId" in raw and "Stage" in raw and "TimeGenerated" in raw

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        event, where = self._audit_event(raw, ctx)
        try:
            events = super().to_events(event, ctx)
        except InvalidFields as exc:
            errors = [{**error, "loc": _locate(where, tuple(error["loc"]))} for error in exc.errors]
            raise InvalidFields(_reason(where, exc.reason), errors) from None
        except InvalidRecord as exc:
            raise InvalidRecord(_reason(where, exc.reason)) from None
        cluster = next((raw[key] for key in _RESOURCE_IDS if isinstance(raw.get(key), str) and raw[key]), None)
        if cluster is None:
            return events
        tenant = cluster.lower()[:MAX_ID]  # Azure writes resource ids in either case
        return [e.model_copy(update={"tenant": tenant}) for e in events]

    def _audit_event(self, raw: Mapping[str, Any], ctx: AdapterContext) -> tuple[Mapping[str, Any], str]:
        """The audit event the record carries, and where it sits ("" for table columns)."""
        if _category(raw, "category"):
            holder, key, where = raw["properties"], "log", "properties.log"
        elif _category(raw, "Category"):
            holder, key, where = raw, "log_s", "log_s"
        else:
            return self._from_columns(raw, ctx), ""
        if not isinstance(holder, dict):
            raise InvalidRecord("aks: properties: expected an object")
        event = decode_in_place(holder, key, self.name, where, ctx.repairs)
        if not isinstance(event, dict):
            raise InvalidRecord(f"aks: {where}: expected an audit event object, got {type(event).__name__}")
        api = event.get("apiVersion")
        if event.get("kind") != "Event" or not isinstance(api, str) or not api.startswith("audit.k8s.io/"):
            raise InvalidRecord(f"aks: {where}: not a Kubernetes audit event")
        return event, where

    def _from_columns(self, raw: Mapping[str, Any], ctx: AdapterContext) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise InvalidRecord("aks: expected an object")
        for column in _DYNAMIC:
            if raw.get(column) != SKIPPED_BODY:
                decode_in_place(raw, column, self.name, column, ctx.repairs)
        event: dict[str, Any] = {"kind": "Event", "apiVersion": API_VERSION}
        for column, field in COLUMNS.items():
            if column in raw and raw[column] is not None:
                event[field] = raw[column]
        return event


def _category(raw: Mapping[str, Any], key: str) -> bool:
    value = raw.get(key)
    return isinstance(value, str) and value in CATEGORIES


def _locate(where: str, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """An error's location in the audit event -> its location in the record."""
    if where == "properties.log":
        return ("properties", "log", *loc)
    if where:
        return (where, *loc)
    if loc and loc[0] in _FIELDS:
        return (_FIELDS[loc[0]], *loc[1:])
    return loc


def _reason(where: str, reason: str) -> str:
    rest = reason.removeprefix("k8s: ")
    return f"aks: {where}: {rest}" if where else f"aks: {rest}"
