"""GKE control-plane audit (``gke``): Cloud Audit Logs entries of service ``k8s.io``.

GKE writes its apiserver's audit events into Cloud Logging as ``LogEntry`` records
whose ``protoPayload`` is a ``google.cloud.audit.AuditLog`` (Google Cloud docs: "GKE
audit logging information", "Understand audit logs", and the ``AuditLog`` /
``LogEntry`` references). A Log Router sink to Pub/Sub (then Kafka) or to Cloud Storage
writes them as JSON, one entry per message or line. The fields used:

- ``protoPayload.serviceName`` ``k8s.io``; ``methodName``
  ``io.k8s.core.v1.serviceaccounts.token.create`` for a TokenRequest;
  ``resourceName`` ``core/v1/namespaces/<ns>/serviceaccounts/<name>/token``;
- ``authenticationInfo.principalEmail`` (the Kubernetes user name),
  ``requestMetadata.callerIp`` / ``callerSuppliedUserAgent``, ``status.code`` (a
  ``google.rpc.Code``: 0 is success), ``request`` / ``response`` (the TokenRequest
  bodies, when the audit level logs them);
- ``labels``: the audit event's annotations (``authorization.k8s.io/decision``,
  ``authentication.kubernetes.io/issued-credential-id``, …); ``operation.id`` the
  ``auditID``; ``timestamp``; ``resource.labels`` the cluster (the event's ``tenant``:
  ``projects/<project>/locations/<location>/clusters/<cluster>``).

A TokenRequest becomes the audit event it was and is mapped exactly as the ``k8s``
format maps a native one: ``issued`` of ``JTI=<uuid>``, pod-bound when the request body
names the pod, expiry as there (``responseObject.status.token`` is never read).

Not mapped, skipped and counted: **uses** of service-account tokens. An ``AuditLog``
carries the principal, not the user's ``extra`` where Kubernetes records the token's
credential id and pod, so a GKE request names no token (``serviceaccount request
without credential id``); other requests by type (``user or node request``).
TokenRequests without the credential-id label (Kubernetes < 1.30) or that failed, as
in ``k8s``. Entries of other Google Cloud services (a sink routing more than GKE) are
Cloud Audit Logs tokenwatch has no use for: skipped and counted as
``service:<serviceName>``, so a wide sink shows in the summary instead of as thousands
of dead letters. BigQuery sink tables (``protopayload_auditlog`` columns) are another
shape and are not read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import CanonicalEvent, Outcome
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_ID, MAX_RESOURCE, MAX_USER_AGENT, invalid
from schemas.sources.k8s import API_VERSION, K8sAuditFormat
from schemas.sources.k8s_deletions import SA_PREFIX

AUDIT_LOG_TYPE = "type.googleapis.com/google.cloud.audit.AuditLog"
SERVICE = "k8s.io"
TOKEN_REQUEST_METHOD = "io.k8s.core.v1.serviceaccounts.token.create"
_MAX_SERVICE_LABEL = 100
_SUCCESS = Outcome(result="success")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class AuthenticationInfo(_Lenient):
    principalEmail: str | None = Field(default=None, max_length=MAX_ID)  # the audit event's user.username cap


class RequestMetadata(_Lenient):
    callerIp: str | None = Field(default=None, max_length=256)
    callerSuppliedUserAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)


class RpcStatus(_Lenient):
    code: int | None = Field(default=None, ge=0, le=64)


class AuditLog(_Lenient):
    serviceName: str = Field(min_length=1, max_length=256)
    methodName: str = Field(min_length=1, max_length=1024)
    resourceName: str | None = Field(default=None, max_length=MAX_RESOURCE)
    authenticationInfo: AuthenticationInfo | None = None
    requestMetadata: RequestMetadata | None = None
    status: RpcStatus | None = None


class Operation(_Lenient):
    id: str | None = Field(default=None, max_length=4096)


class MonitoredResource(_Lenient):
    labels: dict[str, str] | None = None


class LogEntry(_Lenient):
    insertId: str | None = Field(default=None, max_length=MAX_ID)
    timestamp: datetime
    protoPayload: AuditLog
    operation: Operation | None = None
    resource: MonitoredResource | None = None
    labels: dict[str, str] | None = None


class GkeAuditFormat(K8sAuditFormat):
    name: ClassVar[str] = "gke"
    match_keys: ClassVar[frozenset[str]] = frozenset({"protoPayload"})

    def matches(self, raw: Mapping[str, Any]) -> bool:
        payload = raw.get("protoPayload")
        return isinstance(payload, dict) and payload.get("@type") == AUDIT_LOG_TYPE

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        service = raw["protoPayload"].get("serviceName")
        if isinstance(service, str) and service and service != SERVICE:
            raise UnsupportedEventType(f"service:{service[:_MAX_SERVICE_LABEL]}")  # before validating
        try:
            entry = LogEntry.model_validate(raw)
        except ValidationError as exc:
            raise invalid("gke: ", exc) from None
        if entry.timestamp.tzinfo is None:
            raise InvalidRecord("gke: timestamp has no timezone")
        payload = entry.protoPayload
        principal = payload.authenticationInfo.principalEmail if payload.authenticationInfo else None
        if payload.methodName != TOKEN_REQUEST_METHOD:
            if principal and principal.startswith(SA_PREFIX):
                raise UnsupportedEventType("serviceaccount request without credential id")
            raise UnsupportedEventType("user or node request")
        if payload.status is not None and payload.status.code:
            raise UnsupportedEventType("tokenrequest-failed")
        try:
            events = super().to_events(_audit_event(entry, raw["protoPayload"]), ctx)
        except InvalidRecord as exc:
            # Not InvalidFields: its locations would be in the rebuilt event, not in the entry the
            # normalizer repairs (LogEntry validation above has already bounded the entry's fields).
            raise InvalidRecord(f"gke: {exc.reason.removeprefix('k8s: ')}") from None
        # Only successful TokenRequests get here (status.code 0); GKE logs no HTTP code for them.
        update: dict[str, Any] = {"outcome": _SUCCESS}
        tenant = _cluster(entry)
        if tenant:
            update["tenant"] = tenant
        return [event.model_copy(update=update) for event in events]


def _audit_event(entry: LogEntry, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The ``audit.k8s.io/v1`` Event a TokenRequest entry records."""
    meta = entry.protoPayload.requestMetadata
    auth = entry.protoPayload.authenticationInfo
    audit_id = (entry.operation.id if entry.operation else None) or entry.insertId
    if not audit_id:
        raise InvalidRecord("gke: operation.id / insertId: missing, the request has no id")
    namespace, account = _service_account(entry.protoPayload.resourceName)
    return {
        "kind": "Event",
        "apiVersion": API_VERSION,
        "auditID": audit_id,
        "stage": "ResponseComplete",  # GKE writes one entry per request, once it completed
        "verb": "create",
        "requestURI": entry.protoPayload.resourceName,
        "user": {"username": auth.principalEmail} if auth and auth.principalEmail else None,
        "sourceIPs": [meta.callerIp] if meta and meta.callerIp else None,
        "userAgent": meta.callerSuppliedUserAgent if meta else None,
        "objectRef": {"resource": "serviceaccounts", "subresource": "token", "namespace": namespace, "name": account},
        "requestReceivedTimestamp": entry.timestamp,
        "annotations": entry.labels,
        "requestObject": payload.get("request"),
        "responseObject": payload.get("response"),
    }


def _service_account(resource_name: str | None) -> tuple[str, str]:
    """(namespace, service account) from ``…/namespaces/<ns>/serviceaccounts/<name>/token``."""
    parts = (resource_name or "").split("/")
    if len(parts) >= 5 and parts[-1] == "token" and parts[-3] == "serviceaccounts" and parts[-5] == "namespaces":
        if parts[-4] and parts[-2]:
            return parts[-4], parts[-2]
    raise InvalidRecord("gke: protoPayload.resourceName: not a service account's token subresource")


def _cluster(entry: LogEntry) -> str | None:
    labels = entry.resource.labels if entry.resource is not None else None
    if not labels or not labels.get("cluster_name"):
        return None
    tenant = (f"projects/{labels.get('project_id', '')}/locations/{labels.get('location', '')}"
              f"/clusters/{labels['cluster_name']}")
    return tenant[:MAX_ID]
