"""API-gateway access logs with JWT claims, in tokenwatch's documented layout.

Each line is one request a resource server handled: a ``used`` event of the
token named by ``jwt.jti``. ``status`` < 400 is an accepted use. ``jwt.cnf``
is the key the token is bound to; ``dpop_jkt`` is the key the request proved.
A gateway that logs the raw token (``token`` or ``authorization``) instead of
claims gets a keyed hash as the token id; the raw value is never kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Network,
    Outcome,
    Request,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import Memo, content_id, epoch_to_utc, explain, split_scopes

_ID = Field(default=None, max_length=512)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class JwtConfirmation(_Lenient):
    jkt: str | None = _ID
    x5t_s256: str | None = Field(default=None, alias="x5t#S256", max_length=512)


class JwtClaims(_Lenient):
    jti: str | None = _ID
    sub: str | None = _ID
    client_id: str | None = _ID
    azp: str | None = _ID
    sid: str | None = _ID
    scope: str | list[str] | None = None
    iss: str | None = Field(default=None, max_length=2048)
    aud: str | list[str] | None = None
    exp: float | None = None
    iat: float | None = None
    cnf: JwtConfirmation | None = None


class GatewayRecord(_Lenient):
    timestamp: datetime | float
    request_id: str | None = _ID
    client_ip: str | None = Field(default=None, max_length=64)
    method: str | None = Field(default=None, max_length=16)
    path: str | None = Field(default=None, max_length=8192)
    status: int = Field(ge=100, le=599)
    user_agent: str | None = Field(default=None, max_length=2048)
    jwt: JwtClaims | None = None
    required_scope: str | list[str] | None = None
    dpop_jkt: str | None = _ID
    client_cert_thumbprint: str | None = _ID
    token: str | None = None
    authorization: str | None = None


class GatewayFormat:
    name: ClassVar[str] = "gateway"

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return "client_ip" in raw and "status" in raw and ("jwt" in raw or "request_id" in raw)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        try:
            rec = GatewayRecord.model_validate(raw)
        except ValidationError as exc:
            raise InvalidRecord(f"gateway: {explain(exc)}") from None
        claims = rec.jwt or JwtClaims()
        token_id = claims.jti or _hashed_raw_token(rec, ctx)
        if not token_id:
            raise InvalidRecord("gateway: no token identifier (jwt.jti) and no token to hash")
        time = _to_utc(rec.timestamp)
        try:
            return [
                CanonicalEvent(
                    event_id=content_id(self.name, raw),
                    kind=EventKind.USED,
                    time=time,
                    source=self.name,
                    tenant=claims.iss,
                    token=self._token(token_id, claims),
                    subject=self._subject(claims.sub),
                    client_id=claims.client_id or claims.azp,
                    session_id=claims.sid,
                    scopes=self._scopes(claims.scope),
                    required_scopes=self._scopes(rec.required_scope),
                    network=self._network(rec.client_ip, rec.user_agent),
                    request=Request(
                        id=rec.request_id,
                        method=rec.method,
                        resource=rec.path,
                        status=rec.status,
                        proof=_proof(rec),
                    ),
                    outcome=self._outcome(rec.status),
                )
            ]
        except ValidationError as exc:
            raise InvalidRecord(f"gateway: {explain(exc)}") from None

    # Sub-objects repeat across the lines of one token / caller: build each once.
    def __init__(self) -> None:
        self._tokens: Memo[tuple[Any, ...], TokenRef] = Memo()
        self._subjects: Memo[str, Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None], Network] = Memo()
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)
        self._outcomes: dict[int, Outcome] = {}

    def _token(self, token_id: str, claims: JwtClaims) -> TokenRef:
        cnf = claims.cnf
        aud = claims.aud if not isinstance(claims.aud, list) else tuple(claims.aud)
        key = (token_id, claims.iat, claims.exp, aud, cnf.jkt if cnf else None, cnf.x5t_s256 if cnf else None)
        ref = self._tokens.get(key)
        if ref is None:
            ref = self._tokens.put(key, TokenRef(
                id=token_id,
                type=TokenType.ACCESS,
                issued_at=epoch_to_utc(claims.iat) if claims.iat is not None else None,
                expires_at=epoch_to_utc(claims.exp) if claims.exp is not None else None,
                audience=_audience(claims.aud),
                binding=_bound_key(cnf),
            ))
        return ref

    def _subject(self, sub: str | None) -> Subject | None:
        if not sub:
            return None
        return self._subjects.get(sub) or self._subjects.put(sub, Subject(id=sub))

    def _network(self, ip: str | None, user_agent: str | None) -> Network:
        key = (ip, user_agent)
        return self._networks.get(key) or self._networks.put(key, Network(ip=ip, user_agent=user_agent))

    def _scopes(self, value: str | list[str] | None) -> tuple[str, ...]:
        if not isinstance(value, str):
            return split_scopes(value)
        found = self._scope_sets.get(value)
        if found is None:
            found = self._scope_sets.put(value, tuple(sorted(set(split_scopes(value)))))
        return found

    def _outcome(self, status: int) -> Outcome:
        found = self._outcomes.get(status)
        if found is None:
            ok = status < 400
            found = self._outcomes[status] = Outcome(
                result="success" if ok else "failure", reason=None if ok else f"HTTP {status}"
            )
        return found


def _to_utc(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidRecord("gateway: timestamp has no timezone")
        return value
    return epoch_to_utc(value)


def _audience(aud: str | list[str] | None) -> tuple[str, ...]:
    if aud is None:
        return ()
    return (aud,) if isinstance(aud, str) else tuple(aud)


def _bound_key(cnf: JwtConfirmation | None) -> Binding | None:
    if cnf is None:
        return None
    if cnf.jkt:
        return Binding(method="dpop", value=cnf.jkt)
    if cnf.x5t_s256:
        return Binding(method="mtls", value=cnf.x5t_s256)
    return None


def _proof(rec: GatewayRecord) -> Binding | None:
    if rec.dpop_jkt:
        return Binding(method="dpop", value=rec.dpop_jkt)
    if rec.client_cert_thumbprint:
        return Binding(method="mtls", value=rec.client_cert_thumbprint)
    return None


def _hashed_raw_token(rec: GatewayRecord, ctx: AdapterContext) -> str | None:
    raw = rec.token or rec.authorization
    if not raw:
        return None
    parts = raw.split(None, 1)
    if len(parts) == 2 and parts[0].lower() in ("bearer", "dpop"):
        raw = parts[1]
    return ctx.hash_token(raw.strip())
