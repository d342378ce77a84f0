"""The gateway layout's vendor record as msgspec Structs: the fields of
``schemas.sources.gateway.GatewayRecord`` with the same caps, at least as strict (no
string-to-number or number-to-bool coercion). Apart from ``schemas.fast.gateway``, which
builds events from them, because a Struct cannot live in a module the compiled build
compiles (mypyc rejects ``msgspec.field`` defaults)."""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.sources.common import MAX_ID, MAX_RESOURCE, MAX_USER_AGENT

_Id = Annotated[str, msgspec.Meta(max_length=MAX_ID)]
_Scopes = Annotated[str, msgspec.Meta(max_length=16_384)] | Annotated[list[str], msgspec.Meta(max_length=512)]


class JwtConfirmation(msgspec.Struct, frozen=True):
    jkt: _Id | None = None
    x5t_s256: _Id | None = msgspec.field(default=None, name="x5t#S256")


class JwtClaims(msgspec.Struct, frozen=True):
    jti: _Id | None = None
    sub: _Id | None = None
    client_id: _Id | None = None
    azp: _Id | None = None
    sid: _Id | None = None
    scope: _Scopes | None = None
    iss: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    aud: _Id | Annotated[list[_Id], msgspec.Meta(max_length=64)] | None = None
    exp: float | None = None
    iat: float | None = None
    cnf: JwtConfirmation | None = None


class GatewayRecord(msgspec.Struct, frozen=True):
    timestamp: str | float  # a datetime in the pydantic model: read by ``rfc3339`` here
    status: Annotated[int, msgspec.Meta(ge=100, le=599)]
    request_id: _Id | None = None
    client_ip: str | list[str] | None = None
    method: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    path: Annotated[str, msgspec.Meta(max_length=MAX_RESOURCE)] | None = None
    user_agent: Annotated[str, msgspec.Meta(max_length=MAX_USER_AGENT)] | None = None
    jwt: JwtClaims | None = None
    required_scope: _Scopes | None = None
    dpop_jkt: _Id | None = None
    client_cert_thumbprint: _Id | None = None
    token: str | None = None
    authorization: str | None = None
