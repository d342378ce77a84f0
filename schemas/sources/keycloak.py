"""Keycloak user events, as Keycloak's JSON event listener writes them, and the other shapes of one event.

One record is one Keycloak event: ``time`` (epoch ms), ``type``, ``realmId``
(the tenant), ``clientId``, ``userId``, ``sessionId``, ``ipAddress``,
``error`` and ``details`` (string → string). Wrapper keys some listeners add
(``timestamp``, ``eventType``, ``realmName``, ``loggerName``) are ignored.

The same event in its other shapes is brought to this one and mapped below:
flat third-party JSON (time in seconds or ISO, details at the top level:
``keycloak_flat``), the ``jboss-logging`` listener's text in a plain or JSON log
line (``keycloak_text``); admin events are mapped by ``keycloak_admin``. Other
log records of Keycloak's ``org.keycloak`` loggers in a JSON log stream are
skipped as ``log record``.

Keycloak's refresh chain is one client's part of a user session (its client
session): each client that joins an SSO session gets its own refresh tokens,
rotated and revoked on their own. So ``family_id`` is ``"<sessionId>/<clientId>"``
("session/client" below; None when either is missing) and ``session_id`` is
``sessionId``. Keycloak logs token ids (jti), never tokens.

type → canonical (family_id):

- LOGIN → session_started; plus ``issued`` tokens when the details name them
  (the password grant logs LOGIN with its token ids) (session/client). Keycloak
  gives every LOGIN its session, but ``jboss-logging`` before Keycloak 24 does not
  print it: without ``sessionId`` only the named tokens are mapped (family None),
  else the record is skipped as ``LOGIN without sessionId``.
- CODE_TO_TOKEN, OAUTH2_DEVICE_CODE_TO_TOKEN, AUTHREQID_TO_TOKEN → ``issued``
  access token (``token_id``) and refresh token (``refresh_token_id``;
  "Refresh" and "Offline" are both type refresh) (session/client). A grant whose
  record names no token id (a listener that drops the details) has nothing to
  follow: skipped as ``<type> without token id``, as are REFRESH_TOKEN and
  TOKEN_EXCHANGE records naming none.
- CLIENT_LOGIN → ``issued`` to the service account (session/client when the
  event has a session, else None: a sessionless client-credentials token is no
  refresh chain, and a made-up ``client:<id>`` family would lump every token of
  the service account into one grant).
- REFRESH_TOKEN → ``refreshed`` to the new refresh token
  (``updated_refresh_token_id``, parent = the presented ``refresh_token_id``)
  plus the ``issued`` access token; without a new refresh token id only the
  access token, as ``refreshed`` (the presented token was not rotated)
  (session/client).
- REFRESH_TOKEN_ERROR → a failed ``refreshed`` of the presented refresh token
  (session/client).
- TOKEN_EXCHANGE → ``issued`` (RFC 8693) with ``audience``;
  ``requested_subject`` becomes the subject, ``subject_token_id`` the parent
  when a listener logs it (session/client of the requesting client, which owns
  the minted token).
- INTROSPECT_TOKEN / INTROSPECT_TOKEN_ERROR → ``used`` (success / failure)
  (None: ``clientId`` is the resource server asking, not the token's client;
  the lineage state knows the family from the token's issuance).
- LOGOUT → session_ended: the whole SSO session, every client (skipped as
  ``LOGOUT without sessionId`` when the line does not print it).
- REVOKE_GRANT → ``revoked`` target token for each named token id (``#at``,
  ``#rt``), and target family (``#family``, family
  "<sessionId>/<revoked_client or clientId>") for the client's grant, unless
  the record is a lone access-token revocation, which Keycloak confines to
  that token.

The canonical model holds a family id only in ``token.family_id``, so the
``#family`` event carries the refresh (else access) token the record names, or,
when it names none, a placeholder ``TokenRef`` whose id is the family id (type
unknown). Without a session, a named token still carries the grant revocation
with family_id None and the lineage state resolves the family from the token's
issuance. With neither session nor token id (the account console revoking "all
of this user's tokens for this client", in every session) there is no canonical
target: skipped as ``REVOKE_GRANT without sessionId``.

Anything else (LOGIN_ERROR, UPDATE_PROFILE, REGISTER, …) is skipped as an
unsupported type. A record's own event keeps the id ``keycloak:<id>``;
events for one of several tokens it names carry the role as a suffix
(``#at``, ``#rt``, ``#family``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import (
    CanonicalEvent,
    EventKind,
    Network,
    Outcome,
    Revocation,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import Memo, client_address, content_id, explain, invalid
from schemas.sources.keycloak_admin import admin_events, is_admin_event
from schemas.sources.keycloak_flat import event_time, flat_details
from schemas.sources.keycloak_text import LOGGER_KEYS, event_record, is_event_message, logger_of, record_time

EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
_ISSUING_GRANTS = {
    "CODE_TO_TOKEN": "authorization_code",
    "CLIENT_LOGIN": "client_credentials",
    "OAUTH2_DEVICE_CODE_TO_TOKEN": "urn:ietf:params:oauth:grant-type:device_code",
    "AUTHREQID_TO_TOKEN": "urn:openid:params:grant-type:ciba",
}
_SERVICE_ACCOUNT_PREFIX = "service-account-"  # Keycloak's username for a client's service account
_MAX_TYPE = 64

_ID = Field(default=None, max_length=512)
_TEXT = Field(default=None, max_length=8192)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class KeycloakDetails(_Lenient):
    """The ``details`` keys the mapping reads; any other key is kept but unused."""

    token_id: str | None = _ID
    refresh_token_id: str | None = _ID
    updated_refresh_token_id: str | None = _ID
    refresh_token_type: str | None = _ID
    grant_type: str | None = _ID
    scope: str | None = _TEXT
    audience: str | None = _TEXT
    requested_subject: str | None = _ID
    subject_token_id: str | None = _ID
    revoked_client: str | None = _ID
    username: str | None = _ID
    reason: str | None = Field(default=None, max_length=2048)


class KeycloakEvent(_Lenient):
    """The record; its time is read by ``keycloak_flat.event_time`` (ms, s or ISO, or a wrapper's)."""

    id: str | None = _ID
    type: str = Field(min_length=1, max_length=_MAX_TYPE)
    realmId: str | None = _ID
    clientId: str | None = _ID
    userId: str | None = _ID
    sessionId: str | None = _ID
    ipAddress: str | None = None  # may be a forwarded-for chain: common.client_address reads its right end
    error: str | None = Field(default=None, max_length=512)
    details: KeycloakDetails | None = None


_NO_DETAILS = KeycloakDetails()
_DETAIL_KEYS = tuple(KeycloakDetails.model_fields)

# One planned event: (id suffix, kind, fields beyond the record's common ones).
Planned = tuple[str, EventKind, dict[str, Any]]


class KeycloakFormat:
    name: ClassVar[str] = "keycloak"
    # An event (realmId), an admin event (operationType), a JSON log record (its logger).
    match_keys: ClassVar[frozenset[str]] = frozenset({"realmId", "operationType", *LOGGER_KEYS})

    def __init__(self) -> None:
        self._handlers: dict[str, Callable[[KeycloakEvent, KeycloakDetails, datetime], list[Planned]]] = {
            "LOGIN": self._login,
            "REFRESH_TOKEN": self._refresh,
            "REFRESH_TOKEN_ERROR": self._refresh_error,
            "TOKEN_EXCHANGE": self._exchange,
            "INTROSPECT_TOKEN": self._introspect,
            "INTROSPECT_TOKEN_ERROR": self._introspect,
            "LOGOUT": self._logout,
            "REVOKE_GRANT": self._revoke,
            **{name: self._grant for name in _ISSUING_GRANTS},
        }
        # Sub-objects repeat across the events of one user, address and realm: build each once.
        self._subjects: Memo[tuple[str, str | None, str], Subject] = Memo()
        self._networks: Memo[str, Network] = Memo()
        self._outcomes: Memo[tuple[str, str | None], Outcome] = Memo(4096)
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)
        self._used_refs: Memo[str, TokenRef] = Memo()

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return ("realmId" in raw and "type" in raw) or is_admin_event(raw) or logger_of(raw) is not None

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        logger = logger_of(raw) if "message" in raw else None
        if logger is not None:  # a JSON log record (or a plain log line read as one)
            message = raw["message"]
            if not is_event_message(logger, message):
                raise UnsupportedEventType("log record")
            raw = event_record(message, record_time(raw), ctx)
        if is_admin_event(raw):
            return admin_events(self.name, raw, event_time(raw))
        return self._user_events(raw, ctx)

    def _user_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        kind = raw.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None and isinstance(kind, str) and 0 < len(kind) <= _MAX_TYPE:
            raise UnsupportedEventType(kind)  # skipped before validating: most realm events are these
        try:
            rec = KeycloakEvent.model_validate(raw)
        except ValidationError as exc:
            raise invalid("keycloak: ", exc) from None
        if handler is None:  # unreachable: validation rejects every type the table lacks
            raise UnsupportedEventType(rec.type)
        time = event_time(raw)
        details = _details(rec.details, raw, ctx)
        planned = handler(rec, details, time)
        base_id = f"{self.name}:{rec.id}" if rec.id else _content_id(self.name, raw)
        common = {
            "time": time,
            "source": self.name,
            "tenant": rec.realmId,
            "client_id": rec.clientId,
            "session_id": rec.sessionId,
            "network": self._network(rec.ipAddress, ctx),
            "outcome": self._outcome(rec, details),
        }
        subject = self._subject(rec, details)
        try:
            return [
                CanonicalEvent(event_id=base_id + suffix, kind=event_kind, **{"subject": subject, **common, **fields})
                for suffix, event_kind, fields in planned
            ]
        except ValidationError as exc:
            raise InvalidRecord(f"keycloak: {explain(exc)}") from None

    # -- per event type -----------------------------------------------------------
    def _login(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """A login starts the SSO session; a password grant also names the tokens it minted."""
        planned: list[Planned] = [("", EventKind.SESSION_STARTED, {})] if rec.sessionId else []
        if d.token_id or d.refresh_token_id:
            planned += self._minted(rec, d, time, d.grant_type or "password")
        if not planned:
            raise UnsupportedEventType("LOGIN without sessionId")
        return planned

    def _grant(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        planned = self._minted(rec, d, time, d.grant_type or _ISSUING_GRANTS[rec.type])
        if not planned:
            raise UnsupportedEventType(f"{rec.type} without token id")
        return planned

    def _exchange(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """RFC 8693: the subject token is the parent only if the listener logs its id
        (``subject_token_id``; stock Keycloak does not), else grant widening cannot be judged."""
        extra: dict[str, Any] = {}
        if d.requested_subject:  # impersonation: the minted token acts for the requested subject
            extra["subject"] = Subject(id=d.requested_subject, kind=_subject_kind(rec.type, d.requested_subject))
        audience = tuple(a for a in d.audience.replace(",", " ").split() if a) if d.audience else ()
        planned = self._minted(rec, d, time, EXCHANGE_GRANT, parent=d.subject_token_id, audience=audience)
        if not planned:
            raise UnsupportedEventType("TOKEN_EXCHANGE without token id")
        return [(suffix, kind, {**fields, **extra}) for suffix, kind, fields in planned]

    def _refresh(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """A new refresh token id means the presented one was rotated; without one (or with the
        same id) only an access token was minted and the presented token stays current."""
        presented = d.refresh_token_id
        if not presented:
            raise UnsupportedEventType("REFRESH_TOKEN without refresh_token_id")
        family, scopes = _family(rec.sessionId, rec.clientId), self._scopes(d.scope)
        fields = {"grant_type": "refresh_token", "scopes": scopes}
        rotated = d.updated_refresh_token_id if d.updated_refresh_token_id != presented else None
        planned: list[Planned] = []
        if rotated:
            ref = TokenRef(id=rotated, type=TokenType.REFRESH, family_id=family, parent_id=presented, issued_at=time)
            planned.append(("#rt", EventKind.REFRESHED, {**fields, "token": ref}))
        if d.token_id:
            ref = TokenRef(id=d.token_id, type=TokenType.ACCESS, family_id=family, parent_id=presented, issued_at=time)
            planned.append(("#at", EventKind.ISSUED if rotated else EventKind.REFRESHED, {**fields, "token": ref}))
        if not planned:
            raise UnsupportedEventType("REFRESH_TOKEN without token id")
        return planned

    def _refresh_error(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """A refused refresh names only the presented token; the replay detector reads a refused
        redemption of an already-rotated token as reuse (someone still holds the old one)."""
        if not d.refresh_token_id:
            raise UnsupportedEventType("REFRESH_TOKEN_ERROR without refresh_token_id")
        family = _family(rec.sessionId, rec.clientId)
        ref = TokenRef(id=d.refresh_token_id, type=TokenType.REFRESH, family_id=family)
        return [("", EventKind.REFRESHED, {"token": ref, "grant_type": "refresh_token"})]

    def _introspect(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """A resource server asked whether the token is active: the closest Keycloak gets to a use.

        The caller is the resource server, so ``client_id`` and ``network.ip`` are the RS's, and
        geo / concurrent-use rules compare the RS address with the user's (allowlist RS egress
        ranges). Keycloak logs an inactive answer as INTROSPECT_TOKEN_ERROR, so a success says
        Keycloak vouched for the token and the RS will accept it. No family: ``clientId`` is
        the RS, not the client the token was issued to; state knows the family from issuance.
        """
        if not d.token_id:
            raise UnsupportedEventType(f"{rec.type} without token_id")
        ref = self._used_refs.get(d.token_id) or self._used_refs.put(
            d.token_id, TokenRef(id=d.token_id, type=TokenType.ACCESS)
        )
        return [("", EventKind.USED, {"token": ref})]

    def _logout(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        if not rec.sessionId:
            raise UnsupportedEventType("LOGOUT without sessionId")
        return [("", EventKind.SESSION_ENDED, {})]

    def _revoke(self, rec: KeycloakEvent, d: KeycloakDetails, time: datetime) -> list[Planned]:
        """RFC 7009 revocation or a client's grant revoked in one session.

        Revoking a refresh token (or naming ``revoked_client``) ends that client's grant: its
        family, not the SSO session, whose other clients keep theirs. A lone access-token
        revocation (``token_id`` only) Keycloak confines to that token.
        """
        family = _family(rec.sessionId, d.revoked_client or rec.clientId)
        actor = rec.clientId
        revocation = Revocation(target="token", actor=actor)
        planned: list[Planned] = []
        named: list[TokenRef] = []
        for suffix, token_id, token_type in (
            ("#at", d.token_id, TokenType.ACCESS),
            ("#rt", d.refresh_token_id, TokenType.REFRESH),
        ):
            if token_id:
                ref = TokenRef(id=token_id, type=token_type, family_id=family)
                named.append(ref)
                planned.append((suffix, EventKind.REVOKED, {"token": ref, "revocation": revocation}))
        if d.refresh_token_id or d.revoked_client or not d.token_id:
            # The family id travels on a token: the named refresh (else access) token, whose
            # family state can also resolve from issuance when the record has no session.
            carrier = named[-1] if named else _grant_placeholder(family)
            if carrier is not None:
                whole = Revocation(target="family", actor=actor)
                planned.append(("#family", EventKind.REVOKED, {"token": carrier, "revocation": whole}))
        if not planned:
            # The account console / admin revoking a client for a user: every session, no
            # token id. No canonical target covers "this user's tokens for this client".
            raise UnsupportedEventType(
                "REVOKE_GRANT without sessionId" if not rec.sessionId else "REVOKE_GRANT without clientId"
            )
        return planned

    # -- shared pieces --------------------------------------------------------------
    def _minted(
        self,
        rec: KeycloakEvent,
        d: KeycloakDetails,
        time: datetime,
        grant_type: str,
        parent: str | None = None,
        audience: tuple[str, ...] = (),
    ) -> list[Planned]:
        """``issued`` events for the access and refresh token a grant names ("Offline" refresh
        tokens are refresh tokens too: they rotate and can be reused the same way)."""
        fields = {"grant_type": grant_type, "scopes": self._scopes(d.scope)}
        family = _family(rec.sessionId, rec.clientId)
        planned: list[Planned] = []
        for suffix, token_id, token_type in (
            ("#at", d.token_id, TokenType.ACCESS),
            ("#rt", d.refresh_token_id, TokenType.REFRESH),
        ):
            if token_id:
                ref = TokenRef(
                    id=token_id, type=token_type, family_id=family, parent_id=parent,
                    issued_at=time, audience=audience,
                )
                planned.append((suffix, EventKind.ISSUED, {**fields, "token": ref}))
        return planned

    def _subject(self, rec: KeycloakEvent, d: KeycloakDetails) -> Subject | None:
        if not rec.userId:
            return None
        name = d.username
        kind = _subject_kind(rec.type, name)
        key = (rec.userId, name, kind)
        return self._subjects.get(key) or self._subjects.put(key, Subject(id=rec.userId, name=name, kind=kind))

    def _network(self, address: str | None, ctx: AdapterContext) -> Network:
        if not address:
            return _NO_NETWORK
        ip = client_address(address, ctx, "keycloak.ipAddress")
        if ip is None:
            return _NO_NETWORK
        return self._networks.get(ip) or self._networks.put(ip, Network(ip=ip))

    def _outcome(self, rec: KeycloakEvent, d: KeycloakDetails) -> Outcome:
        failed = rec.error is not None or rec.type.endswith("_ERROR")
        if not failed:
            return _SUCCESS
        key = (rec.error or rec.type.lower(), d.reason)
        found = self._outcomes.get(key)
        if found is None:
            text = "; ".join(part for part in key if part)
            found = self._outcomes.put(key, Outcome(result="failure", reason=text[:2048]))
        return found

    def _scopes(self, value: str | None) -> tuple[str, ...]:
        if not value:
            return ()
        found = self._scope_sets.get(value)
        if found is None:
            found = self._scope_sets.put(value, tuple(sorted(set(value.split()))))
        return found


_SUCCESS = Outcome()
_NO_NETWORK = Network()


def _details(nested: KeycloakDetails | None, raw: Mapping[str, Any], ctx: AdapterContext) -> KeycloakDetails:
    """The ``details`` object, completed by the detail keys a flat listener puts at the top
    level (``keycloak_flat``); a key in ``details`` wins."""
    missing = _DETAIL_KEYS if nested is None else [k for k in _DETAIL_KEYS if getattr(nested, k) is None]
    flat = flat_details(raw, missing, ctx)
    if not flat:
        return nested or _NO_DETAILS
    return KeycloakDetails(**{**flat, **(nested.model_dump(exclude_none=True) if nested else {})})


def _family(session_id: str | None, client_id: str | None) -> str | None:
    """A token's refresh chain: the client's part of the SSO session."""
    return f"{session_id}/{client_id}" if session_id and client_id else None


def _grant_placeholder(family: str | None) -> TokenRef | None:
    """Stands in for the token of a family revocation that names none (state reads
    the family from ``token.family_id`` only); its id is the family id."""
    return TokenRef(id=family, family_id=family) if family else None


def _subject_kind(event_type: str, name: str | None) -> Literal["user", "service"]:
    if event_type == "CLIENT_LOGIN" or (name is not None and name.startswith(_SERVICE_ACCOUNT_PREFIX)):
        return "service"
    return "user"


def _content_id(name: str, raw: Mapping[str, Any]) -> str:
    try:
        return content_id(name, raw)
    except TypeError as exc:  # e.g. an integer beyond 64 bits in a hand-built record
        raise InvalidRecord(f"keycloak: record without id cannot be hashed: {exc}") from None
