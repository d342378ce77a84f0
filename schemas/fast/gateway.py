"""Fast path of the gateway layout (``schemas.sources.gateway``): the vendor record read
into the msgspec Structs of ``schemas.fast.gateway_records``, the canonical event built
without validating it again.

A record the Structs accept is one the pydantic model accepts with the same values;
anything else (a refused or odd field, a time outside plain RFC 3339, an epoch out of
range) returns None and the record goes the pydantic way, which writes the dead letter or
the repair.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from schemas.events import Binding, CanonicalEvent, EventKind, Network, Request, Subject, TokenRef, TokenType
from schemas.fast.build import construct, utc
from schemas.fast.gateway_records import GatewayRecord, JwtClaims, JwtConfirmation
from schemas.fast.times import rfc3339
from schemas.redaction import redact_text
from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import (
    Memo,
    client_address,
    content_id,
    epoch_to_utc,
    http_outcome,
    split_scopes,
)

# One definition of each mapping rule: the pydantic adapter's own helpers.
from schemas.sources.gateway import audience, bound_key, hashed_raw_token, proof, request_id, resource

_NO_CLAIMS = JwtClaims()
_NO_CONFIRMATION = JwtConfirmation()
_EVENT_FIELDS = frozenset({
    "event_id", "kind", "time", "source", "tenant", "token", "subject", "client_id", "session_id",
    "scopes", "required_scopes", "network", "request", "outcome",
})
"""The keywords ``GatewayFormat`` passes to ``CanonicalEvent``: a validated event's fields-set."""
_TOKEN_FIELDS = frozenset({"id", "type", "issued_at", "expires_at", "audience", "binding"})
_REQUEST_FIELDS = frozenset({"id", "method", "resource", "status", "proof"})
_SUBJECT_FIELDS = frozenset({"id"})
_NETWORK_FIELDS = frozenset({"ip", "user_agent"})


class FastGateway:
    """``GatewayFormat.to_events`` for the records msgspec accepts; None for the others."""

    name: ClassVar[str] = "gateway"

    def __init__(self) -> None:
        self._tokens: Memo[tuple[Any, ...], TokenRef] = Memo()
        self._subjects: Memo[str, Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None], Network] = Memo()
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent] | None:
        try:
            rec = msgspec.convert(raw, GatewayRecord)
        except msgspec.ValidationError:
            return None
        claims = rec.jwt or _NO_CLAIMS
        stamp = rec.timestamp
        if isinstance(stamp, str):
            moment = rfc3339(stamp)
            if moment is None:
                return None
        else:
            try:
                moment = epoch_to_utc(stamp)
            except InvalidRecord:
                return None
        # Validated: the raw record's token fields are the Struct's, read by the adapter's rule.
        token_id = claims.jti or hashed_raw_token(raw, ctx)
        if not token_id:
            return None
        try:
            return self._events(rec, claims, token_id, moment, raw, ctx)
        except InvalidRecord:  # an iat or exp out of range: the pydantic way words it
            return None

    def _events(self, rec: GatewayRecord, claims: JwtClaims, token_id: str, moment: datetime,
                raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        status = rec.status
        request = construct(Request, _REQUEST_FIELDS, {
            "id": request_id(rec.request_id, ctx),
            "method": rec.method,
            "resource": resource(rec.path, ctx),
            "status": status,
            "proof": proof(raw),
        })
        return [construct(CanonicalEvent, _EVENT_FIELDS, {
            "event_id": content_id(self.name, raw),
            "kind": EventKind.USED,
            "time": utc(moment),
            "source": self.name,
            "tenant": claims.iss,
            "token": self._token(token_id, claims),
            "subject": self._subject(claims.sub),
            "client_id": claims.client_id or claims.azp,
            "session_id": claims.sid,
            "scopes": self._scopes(claims.scope),
            "required_scopes": self._scopes(rec.required_scope),
            "network": self._network(rec.client_ip, rec.user_agent, ctx),
            "request": request,
            "outcome": http_outcome(status),
        })]

    def _token(self, token_id: str, claims: JwtClaims) -> TokenRef:
        cnf = claims.cnf or _NO_CONFIRMATION
        aud, iat, exp = claims.aud, claims.iat, claims.exp
        key = (token_id, iat, exp, tuple(aud) if isinstance(aud, list) else aud, cnf.jkt, cnf.x5t_s256)
        ref = self._tokens.get(key)
        if ref is None:
            ref = self._tokens.put(key, construct(TokenRef, _TOKEN_FIELDS, {
                "id": token_id,
                "type": TokenType.ACCESS,
                "issued_at": epoch_to_utc(iat) if iat is not None else None,
                "expires_at": epoch_to_utc(exp) if exp is not None else None,
                "audience": audience(aud),
                "binding": _binding(cnf),
            }))
        return ref

    def _subject(self, sub: str | None) -> Subject | None:
        if not sub:
            return None
        found = self._subjects.get(sub)
        return found or self._subjects.put(sub, construct(Subject, _SUBJECT_FIELDS, {"id": sub}))

    def _network(self, address: str | list[str] | None, user_agent: str | None, ctx: AdapterContext) -> Network:
        key = (client_address(address, ctx, "gateway.client_ip"), user_agent)
        found = self._networks.get(key)
        if found is None:
            agent = redact_text(user_agent, ctx.hash_token) if user_agent else user_agent
            found = self._networks.put(key, construct(Network, _NETWORK_FIELDS, {"ip": key[0], "user_agent": agent}))
        return found

    def _scopes(self, value: str | list[str] | None) -> tuple[str, ...]:
        """Sorted and unique, as the canonical event's validator leaves them."""
        if not isinstance(value, str):
            return tuple(sorted(set(split_scopes(value))))
        found = self._scope_sets.get(value)
        if found is None:
            found = self._scope_sets.put(value, tuple(sorted(set(split_scopes(value)))))
        return found


def _binding(cnf: JwtConfirmation) -> Binding | None:
    return bound_key({"jkt": cnf.jkt, "x5t_s256": cnf.x5t_s256}) if cnf.jkt or cnf.x5t_s256 else None
