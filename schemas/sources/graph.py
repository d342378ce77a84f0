"""Microsoft Graph activity logs, in the two shapes Azure Monitor exports them.

Each entry is one request Graph handled: a ``used`` event of the token whose Entra
``uniqueTokenIdentifier`` equals ``SignInActivityId``, so an Entra sign-in and the Graph
calls made with its token meet in one token's state, whichever shape either came in.
``Scopes`` (delegated) and ``Roles`` (application permissions) are what the presented
token carries. ``Location`` is the Azure region of the Graph service that served the
request, not the caller's place, so it is ignored.

- **Log Analytics rows** of the table ``MicrosoftGraphActivityLogs`` (Microsoft's "Azure
  Monitor Logs reference - MicrosoftGraphActivityLogs"): ``TenantId`` there is the
  workspace, so the Entra tenant is ``AadTenantId``.
- **Diagnostic settings records** of category ``MicrosoftGraphActivityLogs`` (Event
  Hubs, storage account): Azure Monitor's top-level resource-log record ("Common and
  service-specific schemas for Azure resource logs": ``time``, ``category``,
  ``callerIpAddress``, ``properties``) with the same fields in ``properties`` under their
  camelCase names (``signInActivityId``, ``requestUri``, ``responseStatusCode``, …).

A caller address that is no IP address is refused field-wise (dropped and counted).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator

from schemas.events import CanonicalEvent, EventKind, Network, Request, Subject, SubjectKind, TokenRef, TokenType
from schemas.redaction import redact_url
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_RESOURCE, MAX_USER_AGENT, Memo, content_id, explain, http_outcome, invalid
from schemas.sources.entra_shapes import ID, TABLE_CATEGORIES, IPText, Lenient

TABLE = "MicrosoftGraphActivityLogs"
CATEGORY = "MicrosoftGraphActivityLogs"
_SCOPE_SEP = re.compile(r"[\s,]+")
_PERMISSIONS = Field(default=None, max_length=16_384)


def _empty_is_none(value: Any) -> Any:
    return None if value == "" else value


class GraphActivity(Lenient):
    """A Log Analytics row."""

    TimeGenerated: datetime
    RequestId: str | None = ID
    RequestMethod: str | None = Field(default=None, max_length=16)
    RequestUri: str | None = Field(default=None, max_length=MAX_RESOURCE)
    ResponseStatusCode: int = Field(ge=100, le=599)
    IPAddress: IPText | None = None
    UserAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    AppId: str | None = ID
    UserId: str | None = ID
    ServicePrincipalId: str | None = ID
    SignInActivityId: str | None = ID
    SessionId: str | None = ID
    Scopes: str | list[str] | None = _PERMISSIONS
    Roles: str | list[str] | None = _PERMISSIONS
    TokenIssuedAt: datetime | None = None
    DeviceId: str | None = ID
    AadTenantId: str | None = ID

    _issued = field_validator("TokenIssuedAt", mode="before")(_empty_is_none)


class GraphActivityProperties(Lenient):
    """``properties`` of a diagnostic record: the row's fields under camelCase names."""

    requestId: str | None = ID
    requestMethod: str | None = Field(default=None, max_length=16)
    requestUri: str | None = Field(default=None, max_length=MAX_RESOURCE)
    responseStatusCode: int = Field(ge=100, le=599)
    ipAddress: IPText | None = None
    userAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    appId: str | None = ID
    userId: str | None = ID
    servicePrincipalId: str | None = ID
    signInActivityId: str | None = ID
    sessionId: str | None = ID
    scopes: str | list[str] | None = _PERMISSIONS
    roles: str | list[str] | None = _PERMISSIONS
    tokenIssuedAt: datetime | None = None
    deviceId: str | None = ID
    tenantId: str | None = ID

    _issued = field_validator("tokenIssuedAt", mode="before")(_empty_is_none)


class GraphActivityRecord(Lenient):
    """A diagnostic-settings record."""

    time: datetime
    tenantId: str | None = ID
    callerIpAddress: IPText | None = None
    properties: GraphActivityProperties


@dataclass(frozen=True, slots=True)
class GraphRequest:
    """One Graph request, whichever shape it came in: what the mapping reads."""

    time: datetime
    tenant: str | None
    request_id: str | None
    method: str | None
    uri: str | None
    status: int
    ip: str | None
    user_agent: str | None
    app_id: str | None
    user_id: str | None
    principal_id: str | None
    token_id: str | None
    session_id: str | None
    scopes: str | list[str] | None
    roles: str | list[str] | None
    token_issued_at: datetime | None
    device_id: str | None


class GraphFormat:
    name: ClassVar[str] = "graph"
    match_keys: ClassVar[frozenset[str]] = frozenset({"category", "TimeGenerated"})  # a diagnostic record, a row

    def __init__(self) -> None:
        # Requests of one token / caller repeat their sub-objects: build each once.
        self._tokens: Memo[tuple[str, datetime | None], TokenRef] = Memo()
        self._subjects: Memo[tuple[str, SubjectKind], Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None, str | None], Network] = Memo()
        self._scope_sets: Memo[tuple[Any, Any], tuple[str, ...]] = Memo(4096)

    def matches(self, raw: Mapping[str, Any]) -> bool:
        if raw.get("category") == CATEGORY:
            return "properties" in raw
        if "TimeGenerated" not in raw or "UniqueTokenIdentifier" in raw:  # a sign-in row is entra's
            return False
        table = raw.get("Type")
        if table == TABLE or "SignInActivityId" in raw:  # AADGraphActivityLogs too: matched, then skipped
            return not (isinstance(table, str) and table in TABLE_CATEGORIES)
        # A row without its table name; another table's RequestUri (AKSAudit) is not Graph's.
        return table is None and "RequestUri" in raw and "AuditId" not in raw

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        found = _read_row(raw) if "TimeGenerated" in raw else _read_record(raw)
        if not found.token_id:
            raise InvalidRecord("graph: SignInActivityId missing: the request names no token")
        try:
            return [
                CanonicalEvent(
                    event_id=f"graph:{found.request_id}" if found.request_id else content_id(self.name, raw),
                    kind=EventKind.USED,
                    time=found.time,
                    source=self.name,
                    tenant=found.tenant,
                    token=self._token(found.token_id, found.token_issued_at),
                    subject=self._subject(found),
                    client_id=found.app_id,
                    session_id=found.session_id,
                    scopes=self._scopes(found.scopes, found.roles),
                    network=self._network(found.ip, found.user_agent, found.device_id),
                    request=Request(
                        id=found.request_id, method=found.method, status=found.status,
                        resource=redact_url(found.uri, ctx.hash_token) if found.uri else None,
                    ),
                    outcome=http_outcome(found.status),
                )
            ]
        except ValidationError as exc:
            raise InvalidRecord(f"graph: {explain(exc)}") from None

    def _token(self, token_id: str, issued_at: datetime | None) -> TokenRef:
        key = (token_id, issued_at)
        found = self._tokens.get(key)
        if found is None:
            found = self._tokens.put(key, TokenRef(id=token_id, type=TokenType.ACCESS, issued_at=issued_at))
        return found

    def _subject(self, found: GraphRequest) -> Subject | None:
        key: tuple[str, SubjectKind]
        if found.user_id:
            key = (found.user_id, "user")
        elif found.principal_id:
            key = (found.principal_id, "service")  # app-only token: no signed-in user
        else:
            return None
        subject = self._subjects.get(key)
        return subject if subject is not None else self._subjects.put(key, Subject(id=key[0], kind=key[1]))

    def _network(self, ip: str | None, user_agent: str | None, device_id: str | None) -> Network:
        key = (ip, user_agent, device_id)
        found = self._networks.get(key)
        if found is None:
            found = self._networks.put(key, Network(ip=ip, user_agent=user_agent, device_id=device_id))
        return found

    def _scopes(self, scopes: str | list[str] | None, roles: str | list[str] | None) -> tuple[str, ...]:
        key = (scopes if not isinstance(scopes, list) else tuple(scopes),
               roles if not isinstance(roles, list) else tuple(roles))
        found = self._scope_sets.get(key)
        if found is None:
            found = self._scope_sets.put(key, tuple(sorted(set(_split(scopes)) | set(_split(roles)))))
        return found


def _read_row(raw: Mapping[str, Any]) -> GraphRequest:
    table = raw.get("Type")
    if table is not None and table != TABLE:
        # Another Log Analytics table that happens to share the column names.
        raise UnsupportedEventType(str(table)[:100])
    try:
        row = GraphActivity.model_validate(raw)
    except ValidationError as exc:
        raise invalid("graph: ", exc) from None
    _aware(row.TimeGenerated, "TimeGenerated")
    _aware(row.TokenIssuedAt, "TokenIssuedAt")
    return GraphRequest(
        time=row.TimeGenerated, tenant=row.AadTenantId or None, request_id=row.RequestId or None,
        method=row.RequestMethod, uri=row.RequestUri, status=row.ResponseStatusCode, ip=row.IPAddress or None,
        user_agent=row.UserAgent or None, app_id=row.AppId or None, user_id=row.UserId or None,
        principal_id=row.ServicePrincipalId or None, token_id=row.SignInActivityId or None,
        session_id=row.SessionId or None, scopes=row.Scopes, roles=row.Roles, token_issued_at=row.TokenIssuedAt,
        device_id=row.DeviceId or None,
    )


def _read_record(raw: Mapping[str, Any]) -> GraphRequest:
    try:
        rec = GraphActivityRecord.model_validate(raw)
    except ValidationError as exc:
        raise invalid("graph: ", exc) from None
    _aware(rec.time, "time")
    props = rec.properties
    _aware(props.tokenIssuedAt, "properties.tokenIssuedAt")
    return GraphRequest(
        time=rec.time, tenant=props.tenantId or rec.tenantId or None, request_id=props.requestId or None,
        method=props.requestMethod, uri=props.requestUri, status=props.responseStatusCode,
        ip=props.ipAddress or rec.callerIpAddress or None, user_agent=props.userAgent or None,
        app_id=props.appId or None, user_id=props.userId or None, principal_id=props.servicePrincipalId or None,
        token_id=props.signInActivityId or None, session_id=props.sessionId or None, scopes=props.scopes,
        roles=props.roles, token_issued_at=props.tokenIssuedAt, device_id=props.deviceId or None,
    )


def _aware(value: datetime | None, field: str) -> None:
    if value is not None and value.tzinfo is None:
        raise InvalidRecord(f"graph: {field} has no timezone")


def _split(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Scopes and roles are space-separated; tolerate commas and pre-split lists."""
    if not value:
        return []
    parts = value if not isinstance(value, str) else _SCOPE_SEP.split(value)
    return [p.strip() for p in parts if p and p.strip()]
