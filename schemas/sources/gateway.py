"""API-gateway access logs with JWT claims, in tokenwatch's documented layout.

Each line is one request a resource server handled: a ``used`` event of the
token named by ``jwt.jti``. ``status`` < 400 is an accepted use. ``jwt.cnf``
is the key the token is bound to; ``dpop_jkt`` is the key the request proved.
A gateway that logs the raw token (``token`` or ``authorization``) instead of
claims gets a keyed hash as the token id; the raw value is never kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import Annotated, TypedDict

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Network,
    Request,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.redaction import redact_text, redact_url
from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import (
    MAX_ID,
    MAX_RESOURCE,
    MAX_USER_AGENT,
    Memo,
    client_address,
    content_id,
    epoch_to_utc,
    explain,
    http_outcome,
    invalid,
    split_scopes,
)

# The vendor layout as TypedDicts validated by pydantic: unknown keys are
# ignored, and validating into plain dicts costs a third of nested models on a
# log where every line is validated.
_Id = Annotated[str, StringConstraints(max_length=MAX_ID)]
_Scopes = Annotated[str, StringConstraints(max_length=16_384)] | Annotated[list[str], Field(max_length=512)]


class JwtConfirmation(TypedDict, total=False):
    jkt: _Id | None
    x5t_s256: Annotated[_Id | None, Field(alias="x5t#S256")]


class JwtClaims(TypedDict, total=False):
    jti: _Id | None
    sub: _Id | None
    client_id: _Id | None
    azp: _Id | None
    sid: _Id | None
    scope: _Scopes | None
    iss: Annotated[str, StringConstraints(max_length=2048)] | None
    aud: _Id | Annotated[list[_Id], Field(max_length=64)] | None
    exp: float | None
    iat: float | None
    cnf: JwtConfirmation | None


class GatewayRecord(TypedDict, total=False):
    timestamp: datetime | float
    request_id: _Id | None
    # One address, or a forwarded-for chain ("client, proxy1, proxy2" or a list).
    # (Not capped here: common.client_address reads a chain from its right end.)
    client_ip: str | list[str] | None
    method: Annotated[str, StringConstraints(max_length=16)] | None
    path: Annotated[str, StringConstraints(max_length=MAX_RESOURCE)] | None
    status: Annotated[int, Field(ge=100, le=599)]
    user_agent: Annotated[str, StringConstraints(max_length=MAX_USER_AGENT)] | None
    jwt: JwtClaims | None
    required_scope: _Scopes | None
    dpop_jkt: _Id | None
    client_cert_thumbprint: _Id | None
    token: str | None
    authorization: str | None


_REQUIRED = ("timestamp", "status")
_VALIDATE = TypeAdapter(GatewayRecord).validate_python
_NONE: dict[str, Any] = {}


class GatewayFormat:
    name: ClassVar[str] = "gateway"
    match_keys: ClassVar[frozenset[str]] = frozenset({"client_ip"})  # with status, and jwt or request_id

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return "client_ip" in raw and "status" in raw and ("jwt" in raw or "request_id" in raw)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        try:
            rec = _VALIDATE(raw)
        except ValidationError as exc:
            raise invalid("gateway: ", exc) from None
        for key in _REQUIRED:
            if key not in rec:
                raise InvalidRecord(f"gateway: {key}: Field required")
        claims = rec.get("jwt") or _NONE
        token_id = claims.get("jti") or hashed_raw_token(rec, ctx)
        if not token_id:
            raise InvalidRecord("gateway: no token identifier (jwt.jti) and no token to hash")
        time = _to_utc(rec["timestamp"])
        status = rec["status"]
        try:
            return [
                CanonicalEvent(
                    event_id=content_id(self.name, raw),
                    kind=EventKind.USED,
                    time=time,
                    source=self.name,
                    tenant=claims.get("iss"),
                    token=self._token(token_id, claims),
                    subject=self._subject(claims.get("sub")),
                    client_id=claims.get("client_id") or claims.get("azp"),
                    session_id=claims.get("sid"),
                    scopes=self._scopes(claims.get("scope")),
                    required_scopes=self._scopes(rec.get("required_scope")),
                    network=self._network(rec.get("client_ip"), rec.get("user_agent"), ctx),
                    request=Request(
                        id=request_id(rec.get("request_id"), ctx),
                        method=rec.get("method"),
                        resource=resource(rec.get("path"), ctx),
                        status=status,
                        proof=proof(rec),
                    ),
                    outcome=http_outcome(status),
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

    def _token(self, token_id: str, claims: Mapping[str, Any]) -> TokenRef:
        cnf = claims.get("cnf") or _NONE
        aud, iat, exp = claims.get("aud"), claims.get("iat"), claims.get("exp")
        key = (token_id, iat, exp, tuple(aud) if isinstance(aud, list) else aud,
               cnf.get("jkt"), cnf.get("x5t_s256"))
        ref = self._tokens.get(key)
        if ref is None:
            ref = self._tokens.put(key, TokenRef(
                id=token_id,
                type=TokenType.ACCESS,
                issued_at=epoch_to_utc(iat) if iat is not None else None,
                expires_at=epoch_to_utc(exp) if exp is not None else None,
                audience=audience(aud),
                binding=bound_key(cnf),
            ))
        return ref

    def _subject(self, sub: str | None) -> Subject | None:
        if not sub:
            return None
        return self._subjects.get(sub) or self._subjects.put(sub, Subject(id=sub))

    def _network(self, address: str | list[str] | None, user_agent: str | None, ctx: AdapterContext) -> Network:
        key = (client_address(address, ctx, "gateway.client_ip"), user_agent)
        found = self._networks.get(key)
        if found is None:
            agent = redact_text(user_agent, ctx.hash_token) if user_agent else user_agent
            found = self._networks.put(key, Network(ip=key[0], user_agent=agent))
        return found

    def _scopes(self, value: str | list[str] | None) -> tuple[str, ...]:
        if not isinstance(value, str):
            return split_scopes(value)
        found = self._scope_sets.get(value)
        if found is None:
            found = self._scope_sets.put(value, tuple(sorted(set(split_scopes(value)))))
        return found



def request_id(value: str | None, ctx: AdapterContext) -> str | None:
    """A client may choose its request id (``X-Request-Id``): a credential written there is
    hashed like anywhere else, since the id is quoted in evidence."""
    if not value or _PLAIN_ID.fullmatch(value):  # the usual uuid or hex id: nothing to look for
        return value
    return redact_text(value, ctx.hash_token)


_PLAIN_ID = re.compile(r"[\w-]{0,128}")


def resource(path: str | None, ctx: AdapterContext) -> str | None:
    """The request path without credentials in its query string (RFC 6750 §2.3 allows
    ``?access_token=``): they would otherwise reach alerts, the store and Elasticsearch."""
    return redact_url(path, ctx.hash_token) if path else path


def _to_utc(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidRecord("gateway: timestamp has no timezone")
        return value
    return epoch_to_utc(value)


def audience(aud: str | list[str] | None) -> tuple[str, ...]:
    if aud is None:
        return ()
    return (aud,) if isinstance(aud, str) else tuple(aud)


def bound_key(cnf: Mapping[str, Any]) -> Binding | None:
    if cnf.get("jkt"):
        return Binding(method="dpop", value=cnf["jkt"])
    if cnf.get("x5t_s256"):
        return Binding(method="mtls", value=cnf["x5t_s256"])
    return None


def proof(rec: Mapping[str, Any]) -> Binding | None:
    if rec.get("dpop_jkt"):
        return Binding(method="dpop", value=rec["dpop_jkt"])
    if rec.get("client_cert_thumbprint"):
        return Binding(method="mtls", value=rec["client_cert_thumbprint"])
    return None


def hashed_raw_token(rec: Mapping[str, Any], ctx: AdapterContext) -> str | None:
    raw = rec.get("token") or rec.get("authorization")
    if not raw:
        return None
    parts = raw.split(None, 1)
    if len(parts) == 2 and parts[0].lower() in ("bearer", "dpop"):
        raw = parts[1]
    return ctx.hash_token(raw.strip())
