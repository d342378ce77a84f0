"""Microsoft Graph activity logs (Log Analytics table ``MicrosoftGraphActivityLogs``, exported rows).

Each row is one request Graph handled: a ``used`` event of the token whose
Entra ``uniqueTokenIdentifier`` equals ``SignInActivityId``, so an Entra
sign-in and the Graph calls made with its token meet in one token's state.
``Scopes`` (delegated) and ``Roles`` (application permissions) are what the
presented token carries. ``Location`` is the Azure region of the Graph
service that served the request, not the caller's place, so it is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from schemas.events import CanonicalEvent, EventKind, Network, Request, Subject, TokenRef, TokenType
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.redaction import redact_url
from schemas.sources.common import (
    MAX_RESOURCE,
    MAX_USER_AGENT,
    Memo,
    client_address,
    content_id,
    explain,
    http_outcome,
    invalid,
)

TABLE = "MicrosoftGraphActivityLogs"
_ID = Field(default=None, max_length=512)
_SCOPE_SEP = re.compile(r"[\s,]+")


class GraphActivity(BaseModel):
    model_config = ConfigDict(extra="allow")

    TimeGenerated: datetime
    RequestId: str | None = _ID
    RequestMethod: str | None = Field(default=None, max_length=16)
    RequestUri: str | None = Field(default=None, max_length=MAX_RESOURCE)
    ResponseStatusCode: int = Field(ge=100, le=599)
    IPAddress: str | None = Field(default=None, max_length=64)
    UserAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    AppId: str | None = _ID
    UserId: str | None = _ID
    ServicePrincipalId: str | None = _ID
    SignInActivityId: str | None = _ID
    SessionId: str | None = _ID
    Scopes: str | list[str] | None = Field(default=None, max_length=16_384)
    Roles: str | list[str] | None = Field(default=None, max_length=16_384)
    TokenIssuedAt: datetime | None = None
    DeviceId: str | None = _ID
    TenantId: str | None = _ID
    AadTenantId: str | None = _ID

    @field_validator("TokenIssuedAt", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class GraphFormat:
    name: ClassVar[str] = "graph"

    def __init__(self) -> None:
        # Rows of one token / caller repeat their sub-objects: build each once.
        self._tokens: Memo[tuple[str, datetime | None], TokenRef] = Memo()
        self._subjects: Memo[tuple[str, str], Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None, str | None], Network] = Memo()
        self._scope_sets: Memo[tuple[Any, Any], tuple[str, ...]] = Memo(4096)

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return "TimeGenerated" in raw and ("SignInActivityId" in raw or "RequestUri" in raw)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        table = raw.get("Type")
        if table is not None and table != TABLE:
            # Another Log Analytics table that happens to share the column names.
            raise UnsupportedEventType(str(table)[:100])
        try:
            rec = GraphActivity.model_validate(raw)
        except ValidationError as exc:
            raise invalid("graph: ", exc) from None
        if rec.TimeGenerated.tzinfo is None:
            raise InvalidRecord("graph: TimeGenerated has no timezone")
        if rec.TokenIssuedAt is not None and rec.TokenIssuedAt.tzinfo is None:
            raise InvalidRecord("graph: TokenIssuedAt has no timezone")
        if not rec.SignInActivityId:
            raise InvalidRecord("graph: SignInActivityId missing: the request names no token")
        status = rec.ResponseStatusCode
        try:
            return [
                CanonicalEvent(
                    event_id=f"graph:{rec.RequestId}" if rec.RequestId else content_id(self.name, raw),
                    kind=EventKind.USED,
                    time=rec.TimeGenerated,
                    source=self.name,
                    tenant=rec.TenantId or rec.AadTenantId or None,
                    token=self._token(rec.SignInActivityId, rec.TokenIssuedAt),
                    subject=self._subject(rec),
                    client_id=rec.AppId or None,
                    session_id=rec.SessionId or None,
                    scopes=self._scopes(rec.Scopes, rec.Roles),
                    network=self._network(
                        client_address(rec.IPAddress, ctx, "graph.IPAddress"), rec.UserAgent, rec.DeviceId
                    ),
                    request=Request(
                        id=rec.RequestId or None, method=rec.RequestMethod, status=status,
                        resource=redact_url(rec.RequestUri, ctx.hash_token) if rec.RequestUri else None,
                    ),
                    outcome=http_outcome(status),
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

    def _subject(self, rec: GraphActivity) -> Subject | None:
        if rec.UserId:
            key = (rec.UserId, "user")
        elif rec.ServicePrincipalId:
            key = (rec.ServicePrincipalId, "service")  # app-only token: no signed-in user
        else:
            return None
        found = self._subjects.get(key)
        return found if found is not None else self._subjects.put(key, Subject(id=key[0], kind=key[1]))

    def _network(self, ip: str | None, user_agent: str | None, device_id: str | None) -> Network:
        key = (ip or None, user_agent or None, device_id or None)
        found = self._networks.get(key)
        if found is None:
            found = self._networks.put(key, Network(ip=key[0], user_agent=key[1], device_id=key[2]))
        return found

    def _scopes(self, scopes: str | list[str] | None, roles: str | list[str] | None) -> tuple[str, ...]:
        key = (scopes if not isinstance(scopes, list) else tuple(scopes),
               roles if not isinstance(roles, list) else tuple(roles))
        found = self._scope_sets.get(key)
        if found is None:
            found = self._scope_sets.put(key, tuple(sorted(set(_split(scopes)) | set(_split(roles)))))
        return found



def _split(value: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Scopes and roles are space-separated; tolerate commas and pre-split lists."""
    if not value:
        return []
    parts = value if not isinstance(value, str) else _SCOPE_SEP.split(value)
    return [p.strip() for p in parts if p and p.strip()]
