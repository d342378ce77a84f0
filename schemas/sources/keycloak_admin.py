"""Keycloak admin events: the few admin actions that end a user's tokens.

Read in the admin REST API's ``AdminEventRepresentation`` shape (Keycloak javadoc
``org.keycloak.representations.idm.AdminEventRepresentation``: ``id``, ``time``,
``realmId``, ``authDetails`` {``realmId``, ``clientId``, ``userId``, ``ipAddress``},
``operationType`` CREATE/UPDATE/DELETE/ACTION, ``resourceType``, ``resourcePath``,
``representation`` (the JSON sent, a string; only when the realm includes it), ``error``),
as JSON listeners write it and as ``keycloak_text`` rebuilds it from ``jboss-logging``.

Mapped (path relative to the realm, as Keycloak logs it):

- DELETE ``users/<id>`` → ``principal_disabled`` of the user (its sessions go with it);
- UPDATE ``users/<id>`` whose representation has ``"enabled": false`` → ``principal_disabled``
  (a disabled user's tokens fail introspection and refresh); without a representation the
  change cannot be read: skipped as ``admin UPDATE USER (no representation)``;
- ACTION ``users/<id>/logout`` (sign out all of the user's sessions) → ``revoked`` with
  target subject, as Okta's session clear;
- DELETE ``sessions/<id>`` (one session signed out, as tokenwatch's own Keycloak responder
  does) → ``session_ended``.

ACTION ``clients/<id>/client-secret`` (secret regenerated) has no canonical target:
Keycloak keeps the tokens already issued to the client, so nothing is revoked; skipped as
``admin client-secret regenerated``. Any other admin event, and a failed one (``error``), is
skipped as ``admin <operation> <resource type>``. The admin's own address and client are
not the user's: the events carry no network and no client. The admin (``authDetails.userId``)
is the revocation's actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.events import CanonicalEvent, EventKind, Revocation, Subject
from schemas.sources.base import InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_ID, MAX_RESOURCE, content_id, cut, explain, invalid

MAX_REPRESENTATION = 1_048_576
"""The whole representation a line can hold (``input.max_line_bytes``' default): it holds the
user's own attributes, so a user who pads them must not push ``"enabled": false`` out of what
is read. Only ``enabled`` is read, and nothing of it is kept."""
_ID = Field(default=None, max_length=MAX_ID)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class AuthDetails(_Lenient):
    realmId: str | None = _ID
    clientId: str | None = _ID
    userId: str | None = _ID
    ipAddress: str | None = Field(default=None, max_length=4096)


class KeycloakAdminEvent(_Lenient):
    id: str | None = _ID
    realmId: str | None = _ID
    authDetails: AuthDetails | None = None
    operationType: str = Field(min_length=1, max_length=32)
    resourceType: str | None = Field(default=None, max_length=64)
    resourcePath: str | None = Field(default=None, max_length=MAX_RESOURCE)
    # A string as Keycloak keeps it; a listener that embeds it as an object is read too.
    representation: Annotated[str, StringConstraints(max_length=MAX_REPRESENTATION)] | dict[str, Any] | None = None
    error: str | None = Field(default=None, max_length=512)


def is_admin_event(raw: Mapping[str, Any]) -> bool:
    return "operationType" in raw and ("resourcePath" in raw or "authDetails" in raw)


def admin_events(name: str, raw: Mapping[str, Any], time: datetime) -> list[CanonicalEvent]:
    """The canonical events of one admin event (see the module docstring)."""
    try:
        rec = KeycloakAdminEvent.model_validate(raw)
    except ValidationError as exc:
        raise invalid(f"{name}: ", exc) from None
    label = f"admin {rec.operationType} {rec.resourceType or '(no resource type)'}"
    if rec.error is not None:
        raise UnsupportedEventType(f"{label} (failed)")
    kind, fields = _target(rec, label)
    actor = rec.authDetails.userId if rec.authDetails else None
    if kind is EventKind.REVOKED:
        fields["revocation"] = Revocation(target="subject", actor=actor)
    event_id = f"{name}:{rec.id}" if rec.id else _content_id(name, raw)
    try:
        return [CanonicalEvent(event_id=event_id, kind=kind, time=time, source=name, tenant=rec.realmId, **fields)]
    except ValidationError as exc:
        raise InvalidRecord(f"{name}: {explain(exc)}") from None


def _target(rec: KeycloakAdminEvent, label: str) -> tuple[EventKind, dict[str, Any]]:
    parts = [part for part in (rec.resourcePath or "").split("/") if part]
    operation = rec.operationType
    if len(parts) >= 2 and parts[0] == "users":
        user = {"subject": Subject(id=cut(parts[1], MAX_ID), kind="user")}
        if len(parts) == 2 and operation == "DELETE":
            return EventKind.PRINCIPAL_DISABLED, user
        if len(parts) == 2 and operation == "UPDATE":
            if rec.representation is None:
                raise UnsupportedEventType(f"{label} (no representation)")
            if _disables(rec.representation):
                return EventKind.PRINCIPAL_DISABLED, user
        if len(parts) == 3 and parts[2] == "logout" and operation == "ACTION":
            return EventKind.REVOKED, user
    if len(parts) == 2 and parts[0] == "sessions" and operation == "DELETE":
        return EventKind.SESSION_ENDED, {"session_id": cut(parts[1], MAX_ID)}
    if len(parts) == 3 and parts[0] == "clients" and parts[2] == "client-secret" and operation == "ACTION":
        raise UnsupportedEventType("admin client-secret regenerated")
    raise UnsupportedEventType(label)


def _disables(representation: str | dict[str, Any]) -> bool:
    """Whether a user's representation sets ``"enabled": false`` (the JSON the admin sent)."""
    try:
        body = orjson.loads(representation) if isinstance(representation, str) else representation
    except orjson.JSONDecodeError:
        return False
    return isinstance(body, dict) and body.get("enabled") is False


def _content_id(name: str, raw: Mapping[str, Any]) -> str:
    try:
        return content_id(name, raw)
    except TypeError as exc:
        raise InvalidRecord(f"{name}: record without id cannot be hashed: {exc}") from None
