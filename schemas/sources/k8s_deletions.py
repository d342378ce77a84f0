"""Kubernetes deletions that end service-account tokens: of a pod, of a service account.

A bound service-account token is valid only while the objects it names exist: the
apiserver's token authenticator looks up the service account and the pod (name and
uid) on every request and refuses the token once either is gone or was marked for
deletion more than a minute ago (Kubernetes "Managing Service Accounts", bound service
account tokens; the authenticator's ``jwt.DefaultLeeway``). So a completed
(``ResponseComplete``, 2xx) ``delete`` of

- ``pods`` → ``revoked`` of the session ``pod:<pod uid>``, the session every token
  bound to that pod carries (``k8s`` names it so at issuance and use). The uid is the
  deleted object's ``responseObject.metadata.uid`` (or a ``Status`` response's
  ``details.uid``), else ``objectRef.uid``. The apiserver fills ``objectRef`` from the
  request path, which has no uid, and logs ``responseObject`` only at the
  ``RequestResponse`` level: at ``Metadata`` level the pod is unknown and the delete is
  skipped and counted as ``delete pods without uid`` (README: log pod deletes at
  ``RequestResponse``). The time is when the pod stops existing for the authenticator:
  its ``metadata.deletionTimestamp`` (the request time plus the grace period) when later
  than the request; the detector's propagation lag covers the authenticator's minute.
- ``serviceaccounts`` → ``principal_disabled`` of ``system:serviceaccount:<ns>:<name>``,
  the subject every token of that account carries.

The deleting user is the revocation's actor; its address is not put on the event, which
is about the tokens' holder, not about the deleter.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import CanonicalEvent, EventKind, Outcome, Request, Revocation, Subject
from schemas.sources.base import InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_ID, explain

if TYPE_CHECKING:
    from schemas.sources.k8s import AuditEvent

SA_PREFIX = "system:serviceaccount:"
SKIPPED_BODY = "skipped-too-big-size-object"  # AKS logs this string for a body too big to keep
RESOURCES = frozenset({"pods", "serviceaccounts"})
_SUCCESS = Outcome(result="success")


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Meta(_Lenient):
    uid: str | None = Field(default=None, max_length=MAX_ID)
    deletionTimestamp: datetime | None = None


class _Details(_Lenient):
    uid: str | None = Field(default=None, max_length=MAX_ID)


class DeletedObject(_Lenient):
    """The delete's response: the object (with its deletion mark) or a ``Status``."""

    kind: str | None = Field(default=None, max_length=128)
    metadata: _Meta | None = None
    details: _Details | None = None


def is_deletion(rec: AuditEvent) -> bool:
    """A completed, successful delete of one pod or service account (core API group)."""
    obj = rec.objectRef
    code = rec.responseStatus.code if rec.responseStatus is not None else None
    return (
        rec.verb == "delete" and rec.stage == "ResponseComplete" and obj is not None
        and obj.resource in RESOURCES and not obj.subresource and not obj.apiGroup
        and code is not None and 200 <= code < 300
    )


def deletion_event(
    rec: AuditEvent, raw: Mapping[str, Any], event_id: str, time: datetime, source: str, request: Request
) -> CanonicalEvent:
    """The event a deletion (``is_deletion``) is; ``UnsupportedEventType`` when it names no pod uid."""
    obj = rec.objectRef
    assert obj is not None  # is_deletion checked it
    response = _deleted_object(raw.get("responseObject"))
    meta = response.metadata if response is not None else None
    marked = meta.deletionTimestamp if meta is not None else None
    if marked is not None:
        if marked.tzinfo is None:
            raise InvalidRecord("k8s: responseObject.metadata.deletionTimestamp has no timezone")
        time = max(time, marked.astimezone(timezone.utc))
    actor = rec.user.username if rec.user is not None else None
    if obj.resource == "serviceaccounts":
        if not obj.namespace or not obj.name:
            raise InvalidRecord("k8s: objectRef.namespace/name: missing on a service account delete")
        return CanonicalEvent(
            event_id=event_id, kind=EventKind.PRINCIPAL_DISABLED, time=time, source=source,
            subject=Subject(id=f"{SA_PREFIX}{obj.namespace}:{obj.name}", kind="service"),
            request=request, outcome=_SUCCESS,
        )
    details = response.details if response is not None else None
    uid = (meta.uid if meta else None) or (details.uid if details else None) or obj.uid
    if not uid:
        raise UnsupportedEventType("delete pods without uid")
    return CanonicalEvent(
        event_id=event_id, kind=EventKind.REVOKED, time=time, source=source, session_id=f"pod:{uid}",
        revocation=Revocation(target="session", actor=actor or None), request=request, outcome=_SUCCESS,
    )


def _deleted_object(value: Any) -> DeletedObject | None:
    if value is None or value == SKIPPED_BODY:
        return None  # logged at Metadata or Request level, or too big to log (AKS)
    try:
        return DeletedObject.model_validate(value)
    except ValidationError as exc:
        raise InvalidRecord(f"k8s: responseObject.{explain(exc)}") from None
