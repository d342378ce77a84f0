"""Entra ID audit log: the activities that revoke a user's tokens or disable the user.

Read in both Azure Monitor export shapes, as the sign-ins are (``entra_shapes``):

- **Diagnostic settings** record of category ``AuditLogs`` (Event Hubs, storage account):
  the resource-log envelope (``time``, ``operationName``, ``tenantId``, ``resultType``)
  with the activity in ``properties`` under the names of Graph's ``directoryAudit``
  (``id``, ``activityDisplayName``, ``activityDateTime``, ``result``, ``initiatedBy``,
  ``targetResources``; Microsoft's "Interpret the Microsoft Entra audit logs schema in
  Azure Monitor" sample, where ``result`` is the enum's number, 0 for success).
- **Log Analytics** row of table ``AuditLogs`` (Azure Monitor Logs reference "AuditLogs":
  ``TimeGenerated``, ``ActivityDateTime``, ``ActivityDisplayName``, ``Result``
  ``success``/``failure``/``timeout``, dynamic ``InitiatedBy`` and ``TargetResources``).

Activities (Microsoft Entra "audit log activity reference", Core Directory, category
UserManagement), each about the ``User`` in ``targetResources`` (Graph ``targetResource``:
``id`` is the user's object id, the ``userId`` of the sign-in logs):

- ``Update StsRefreshTokenValidFrom Timestamp``: what Graph ``revokeSignInSessions`` and
  the portal's "Revoke sessions" log → ``revoked`` of the subject (refresh tokens and
  session cookies die; access tokens live to ``exp``: ``revocation_policy.REVOCATION_POLICY``);
- ``Disable account``, ``Delete user``, ``Hard Delete user``, and ``Update user`` whose
  ``modifiedProperties`` set ``AccountEnabled`` to false (its values are JSON text,
  ``"[false]"``) → ``principal_disabled``.

Any other activity is skipped, before validation, and counted as ``AuditLogs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, Field, ValidationError

from schemas.events import CanonicalEvent, EventKind, Outcome, Revocation, Subject
from schemas.sources.base import InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_NAME, content_id, cut, explain, invalid
from schemas.sources.entra_shapes import ID, Dynamic, Lenient

CATEGORY = "AuditLogs"  # the diagnostic category and the Log Analytics table
REVOKE_SESSIONS = "Update StsRefreshTokenValidFrom Timestamp"
DISABLING = frozenset({"Disable account", "Delete user", "Hard Delete user"})
UPDATE_USER = "Update user"
MAPPED = frozenset({REVOKE_SESSIONS, UPDATE_USER, *DISABLING})
ACCOUNT_ENABLED = "accountenabled"
MAX_TARGETS = 64
MAX_PROPERTIES = 256
MAX_VALUE = 4096  # a modified property's value as read (JSON text)
# Graph's operationResult enum, which the diagnostic record writes as its number.
_RESULTS = {0: "success", 1: "failure", 2: "timeout"}


class ModifiedProperty(Lenient):
    displayName: str | None = Field(default=None, max_length=MAX_NAME)
    newValue: str | None = Field(default=None, max_length=MAX_VALUE)


class Target(Lenient):
    id: str | None = ID
    type: str | None = Field(default=None, max_length=128)
    userPrincipalName: str | None = ID
    modifiedProperties: list[ModifiedProperty] | None = Field(default=None, max_length=MAX_PROPERTIES)


class Actor(Lenient):
    userPrincipalName: str | None = ID
    displayName: str | None = Field(default=None, max_length=MAX_NAME)


class Initiator(Lenient):
    user: Actor | None = None
    app: Actor | None = None


class AuditProperties(Lenient):
    id: str | None = ID
    activityDisplayName: str = Field(max_length=MAX_NAME)
    activityDateTime: datetime | None = None
    result: Annotated[str, Field(max_length=32)] | int | None = None
    initiatedBy: Initiator | None = None
    targetResources: list[Target] | None = Field(default=None, max_length=MAX_TARGETS)


class AuditRecord(Lenient):
    """A diagnostic-settings record of category ``AuditLogs``."""

    time: datetime
    tenantId: str | None = ID
    resultType: str | None = Field(default=None, max_length=32)
    properties: AuditProperties


class AuditRow(Lenient):
    """A Log Analytics ``AuditLogs`` row."""

    TimeGenerated: datetime
    ActivityDateTime: datetime | None = None
    Id: str | None = ID
    AADTenantId: str | None = ID
    ActivityDisplayName: str = Field(max_length=MAX_NAME)
    Result: str | None = Field(default=None, max_length=32)
    InitiatedBy: Annotated[Initiator | None, Dynamic] = None
    # The bound on the list alone: on the union it is applied to null as well (a TypeError).
    TargetResources: Annotated[Annotated[list[Target], Field(max_length=MAX_TARGETS)] | None, Dynamic] = None


class Activity(BaseModel):
    """One audit activity, whichever shape it came in."""

    name: str
    time: datetime
    tenant: str | None
    record_id: str | None
    result: str | None
    initiator: Initiator | None
    targets: list[Target]


def is_audit_row(raw: Mapping[str, Any]) -> bool:
    """A Log Analytics ``AuditLogs`` row, by its table or, projected without it, by its columns."""
    table = raw.get("Type")
    if table is not None:
        return bool(table == CATEGORY)
    return "ActivityDisplayName" in raw and "TargetResources" in raw


def _name(raw: Mapping[str, Any], row: bool) -> object:
    """The activity's name, read before validation: most activities are skipped unvalidated."""
    if row:
        return raw.get("ActivityDisplayName", raw.get("OperationName"))
    props = raw.get("properties")
    name = props.get("activityDisplayName") if isinstance(props, dict) else None
    return name if name is not None else raw.get("operationName")


def read_activity(raw: Mapping[str, Any], row: bool) -> Activity:
    try:
        if row:
            r = AuditRow.model_validate(raw)
            activity = Activity(
                name=r.ActivityDisplayName, time=r.ActivityDateTime or r.TimeGenerated, tenant=r.AADTenantId,
                record_id=r.Id, result=r.Result, initiator=r.InitiatedBy, targets=r.TargetResources or [],
            )
        else:
            rec = AuditRecord.model_validate(raw)
            p = rec.properties
            result = _RESULTS.get(p.result, str(p.result)) if isinstance(p.result, int) else p.result
            activity = Activity(
                name=p.activityDisplayName, time=p.activityDateTime or rec.time, tenant=rec.tenantId,
                record_id=p.id, result=result or rec.resultType, initiator=p.initiatedBy,
                targets=p.targetResources or [],
            )
    except ValidationError as exc:
        raise invalid("entra: ", exc) from None
    if activity.time.tzinfo is None:
        raise InvalidRecord("entra: audit activity time has no timezone")
    return activity


def activity_events(raw: Mapping[str, Any], row: bool, source: str) -> list[CanonicalEvent]:
    """The ``revoked``/``principal_disabled`` event an activity is, else ``UnsupportedEventType``
    (counted as ``AuditLogs``: one label, however many activity names Microsoft adds)."""
    name = _name(raw, row)
    if not isinstance(name, str) or name not in MAPPED:
        raise UnsupportedEventType(CATEGORY)
    activity = read_activity(raw, row)
    name = activity.name
    user = next((t for t in activity.targets if (t.type or "").casefold() == "user"), None)
    if name == REVOKE_SESSIONS:
        kind = EventKind.REVOKED
    elif name in DISABLING or (name == UPDATE_USER and user is not None and _disables(user)):
        kind = EventKind.PRINCIPAL_DISABLED
    else:
        raise UnsupportedEventType(CATEGORY)
    if user is None or not user.id:
        raise InvalidRecord(f"entra: {name}: no User with an id in targetResources")
    actor = _actor(activity.initiator)
    try:
        return [
            CanonicalEvent(
                event_id=f"{source}:{activity.record_id}" if activity.record_id else content_id(source, raw),
                kind=kind,
                time=activity.time,
                source=source,
                tenant=activity.tenant or None,
                subject=Subject(id=user.id, name=user.userPrincipalName or None, kind="user"),
                revocation=Revocation(target="subject", actor=actor) if kind is EventKind.REVOKED else None,
                outcome=_outcome(activity.result),
            )
        ]
    except ValidationError as exc:
        raise InvalidRecord(f"entra: {explain(exc)}") from None


def _disables(user: Target) -> bool:
    """Whether an ``Update user`` set ``AccountEnabled`` to false (values are JSON text, ``"[false]"``)."""
    for prop in user.modifiedProperties or ():
        if (prop.displayName or "").casefold() != ACCOUNT_ENABLED or prop.newValue is None:
            continue
        try:
            value = orjson.loads(prop.newValue)
        except orjson.JSONDecodeError:
            value = prop.newValue.strip().strip("[]\"").casefold()
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        return value is False or value == "false"
    return False


def _actor(initiator: Initiator | None) -> str | None:
    """Who did it: a user's UPN or an app's name. Not where from: the event is about the
    target user, and the admin's address is not the user's (detectors would place it)."""
    if initiator is None:
        return None
    user, app = initiator.user, initiator.app
    if user is not None and (user.userPrincipalName or user.displayName):
        return user.userPrincipalName or user.displayName
    return app.displayName if app is not None and app.displayName else None


def _outcome(result: str | None) -> Outcome:
    value = (result or "").casefold()
    if value == "success":
        return Outcome(result="success")
    if value in ("failure", "timeout"):
        return Outcome(result="failure", reason=value)
    return Outcome(result="unknown", reason=cut(result, 64) if result else None)
