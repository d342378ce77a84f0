"""Okta System Log (LogEvent): token grants, revocations, sessions, user lifecycle.

Okta logs the IdP side only. A grant names the token it minted (a target of
type ``access_token`` / ``refresh_token`` / ``id_token``) but, for a refresh,
not the refresh token presented, and it does not expose the refresh chain:

- a refresh is ``refreshed`` with no ``parent_id``, so state cannot mark the
  old refresh token rotated, nor compare a refresh's scopes with its parent's;
- ``family_id`` is the Okta session (``externalSessionId``), the nearest thing
  to a chain Okta names;
- reuse across Okta rotations is therefore Okta's own verdict: ``detect_reuse``
  becomes ``reuse_reported``.

Uses of Okta tokens come from resource-server logs (the gateway layout,
``jwt.jti`` = the token target's id). Events about a user done by someone else
(session clear, deactivation, password reset) name the User target, not the
admin, and carry no session (the admin's is not the user's). Okta writes
"unknown" for a missing session or actor id; it is treated as absent so that it
never links unrelated tokens. Okta geolocates the caller and names its AS: that
geo (country as Okta spells it, "Germany"), ASN and AS organisation are kept;
``isProxy`` marks an anonymising network.

Sessions and tokens are apart in Okta. ``user.session.end`` (sign-out, expiry,
and one per session when they are cleared, sharing the clear's transaction id:
Okta's event-type reference) ends a sign-on session and revokes no OAuth token,
so it is ``session_ended`` and ``detectors.post_revocation_use`` lets its tokens
live. ``user.session.clear`` ("Clear user sessions", ``DELETE
/api/v1/users/{id}/sessions``) "optionally revokes OpenID Connect and OAuth
refresh and access tokens issued to the user" (``oauthTokens``): it is a
subject-wide ``revoked`` unless the logged request says ``oauthTokens=false``,
then a ``session_ended`` of the user naming no session (the per-session ends
carry the sessions). A clear whose request is not logged counts as with
tokens: the Admin Console's clear revokes them (Okta "Universal Logout
revocations"), and a wrong guess the other way would silence a stolen token.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qsl, urlsplit

from pydantic import AwareDatetime, Field, StringConstraints, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict

from schemas.events import (
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Revocation,
    Subject,
    SubjectKind,
    TokenRef,
    TokenType,
)
from schemas.redaction import redact_url
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import (
    MAX_RESOURCE,
    MAX_USER_AGENT,
    Memo,
    client_address,
    invalid,
    iso_to_utc,
)

# The vendor schema as TypedDicts validated by pydantic: lenient (unknown keys are
# ignored, every part may be missing or null) and ~2.5x cheaper than nested
# models, which matters on a log where every line is validated.
_Id = Annotated[str, StringConstraints(max_length=512)]
_Name = Annotated[str, StringConstraints(max_length=1024)]
_Text = Annotated[str, StringConstraints(max_length=8192)]


class OktaActor(TypedDict, total=False):
    id: _Id | None
    type: _Name | None
    alternateId: _Name | None
    displayName: _Name | None


class OktaUserAgent(TypedDict, total=False):
    rawUserAgent: Annotated[str, StringConstraints(max_length=MAX_USER_AGENT)] | None


class OktaGeolocation(TypedDict, total=False):
    lat: Annotated[float, Field(ge=-90, le=90)] | None
    lon: Annotated[float, Field(ge=-180, le=180)] | None


class OktaGeoContext(TypedDict, total=False):
    city: _Name | None
    country: _Name | None
    geolocation: OktaGeolocation | None


class OktaClient(TypedDict, total=False):
    id: _Id | None
    ipAddress: Annotated[str, StringConstraints(max_length=64)] | None
    userAgent: OktaUserAgent | None
    geographicalContext: OktaGeoContext | None


class OktaAuthContext(TypedDict, total=False):
    externalSessionId: _Id | None


class OktaOutcome(TypedDict, total=False):
    result: Annotated[str, StringConstraints(max_length=64)] | None
    reason: _Text | None


class OktaDebugData(TypedDict, total=False):
    requestId: _Id | None
    grantType: _Name | None
    grantedScopes: _Text | Annotated[list[_Name], Field(max_length=512)] | None
    requestUri: Annotated[str, StringConstraints(max_length=MAX_RESOURCE)] | None
    url: Annotated[str, StringConstraints(max_length=MAX_RESOURCE)] | None


class OktaDebugContext(TypedDict, total=False):
    debugData: OktaDebugData | None


class OktaSecurityContext(TypedDict, total=False):
    asNumber: Annotated[int, Field(ge=0, le=4_294_967_295)] | None
    asOrg: _Name | None
    isProxy: bool | None


class OktaTarget(TypedDict, total=False):
    id: _Id | None
    type: _Name | None
    alternateId: _Name | None
    displayName: _Name | None
    detailEntry: dict[str, Any] | None


class OktaTransaction(TypedDict, total=False):
    id: _Id | None


class OktaLogEvent(TypedDict):
    uuid: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    published: AwareDatetime
    eventType: Annotated[str, StringConstraints(max_length=256)]
    actor: NotRequired[OktaActor | None]
    client: NotRequired[OktaClient | None]
    authenticationContext: NotRequired[OktaAuthContext | None]
    outcome: NotRequired[OktaOutcome | None]
    debugContext: NotRequired[OktaDebugContext | None]
    securityContext: NotRequired[OktaSecurityContext | None]
    target: NotRequired[Annotated[list[OktaTarget], Field(max_length=256)] | None]
    transaction: NotRequired[OktaTransaction | None]


_VALIDATE = TypeAdapter(OktaLogEvent).validate_python
_NONE: dict[str, Any] = {}  # stands in for a missing or null part
_NO_OUTCOME: OktaOutcome = {}


# eventType -> what it is. Custom authorization servers log "app.oauth2.as.*",
# the org authorization server "app.oauth2.*"; the bare ".grant" is a grant
# request (typically a failed one, naming no token).
_GRANT, _REVOKE, _REUSE = "grant", "revoke", "reuse"
_SESSION_START, _SESSION_END, _SESSION_CLEAR, _DISABLE = "session_start", "session_end", "session_clear", "disable"
_KINDS: dict[str, str] = {
    **{
        f"app.oauth2.{server}token.grant{suffix}": _GRANT
        for server in ("as.", "")
        for suffix in ("", ".access_token", ".refresh_token", ".id_token")
    },
    "app.oauth2.as.token.revoke": _REVOKE,
    "app.oauth2.token.revoke": _REVOKE,
    "app.oauth2.as.token.detect_reuse": _REUSE,
    "app.oauth2.token.detect_reuse": _REUSE,
    "user.session.start": _SESSION_START,
    "user.session.end": _SESSION_END,
    "user.session.clear": _SESSION_CLEAR,
    "user.lifecycle.deactivate": _DISABLE,
    "user.lifecycle.suspend": _DISABLE,
    "user.lifecycle.delete.initiated": _DISABLE,
    "user.account.reset_password": _DISABLE,
}
_TOKEN_TYPES: dict[str, TokenType] = {
    "access_token": TokenType.ACCESS,
    "refresh_token": TokenType.REFRESH,
    "id_token": TokenType.ID,
}
_SUCCESS = frozenset({"SUCCESS", "ALLOW"})
_FAILURE = frozenset({"FAILURE", "DENY"})
# Okta writes "unknown" where it has no session or actor id: never an id to link on.
_NO_ID = frozenset({"", "unknown"})
_USER_TYPES = frozenset({"user"})
_SERVICE_TYPES = frozenset({"publicclientapp", "appinstance", "client", "systemprincipal", "apptoken"})


class OktaFormat:
    name: ClassVar[str] = "okta"
    match_keys: ClassVar[frozenset[str]] = frozenset({"published"})  # with eventType, also CloudTrail's

    def __init__(self) -> None:
        # Callers, users and outcomes repeat across thousands of lines: build each once.
        self._networks: Memo[tuple[Any, ...], Network] = Memo()
        self._subjects: Memo[tuple[str, str | None, SubjectKind], Subject] = Memo()
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)
        self._outcomes: dict[tuple[str | None, str | None], Outcome] = {}

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return "eventType" in raw and "published" in raw

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        event_type = raw.get("eventType")
        if not isinstance(event_type, str):
            raise InvalidRecord("okta: eventType: must be a string")
        kind = _KINDS.get(event_type)
        if kind is None:
            if len(event_type) > 256:
                raise InvalidRecord("okta: eventType: longer than 256 characters")
            raise UnsupportedEventType(event_type)  # checked before validating: most Okta types are skipped
        try:
            rec = _VALIDATE(raw)
            return [self._map(kind, event_type, rec, ctx)]
        except ValidationError as exc:
            raise invalid("okta: ", exc) from None

    # -- per event type --------------------------------------------------------
    def _map(self, kind: str, event_type: str, rec: OktaLogEvent, ctx: AdapterContext) -> CanonicalEvent:
        common: dict[str, Any] = {
            "event_id": f"okta:{rec['uuid']}",
            "time": rec["published"],
            "source": self.name,
            "client_id": _id((rec.get("client") or _NONE).get("id")),
            "network": self._network(rec, ctx),
            "outcome": self._outcome(rec.get("outcome") or _NO_OUTCOME),
            "request": _request(rec, ctx),
        }
        session = _id((rec.get("authenticationContext") or _NONE).get("externalSessionId"))
        actor = self._actor(rec.get("actor"))
        if kind == _GRANT:
            return self._grant(event_type, rec, session, actor, common)
        if kind == _REVOKE:
            target = _token_target(rec, None)
            if target is None:
                raise InvalidRecord("okta: target: no access_token/refresh_token/id_token target to revoke")
            return CanonicalEvent(
                kind=EventKind.REVOKED,
                token=_token_ref(target, None),
                subject=self._user_target(rec),
                revocation=Revocation(target="token", actor=_actor_name(rec.get("actor"))),
                **common,
            )
        if kind == _REUSE:
            target = _token_target(rec, "refresh_token")
            return CanonicalEvent(
                kind=EventKind.REUSE_REPORTED,
                token=_token_ref(target, session) if target is not None else None,
                subject=self._user_target(rec) or actor,
                session_id=session,
                **common,
            )
        if kind == _SESSION_START:
            return CanonicalEvent(kind=EventKind.SESSION_STARTED, subject=actor, session_id=session, **common)
        if kind == _SESSION_END:
            if session is None:
                raise InvalidRecord("okta: authenticationContext.externalSessionId: user.session.end names no session")
            return CanonicalEvent(kind=EventKind.SESSION_ENDED, subject=actor, session_id=session, **common)
        # The rest act on the User target, often by an admin: the actor's session is not theirs.
        user = self._user_target(rec)
        if kind == _SESSION_CLEAR:
            subject = user or actor
            if subject is None:
                raise InvalidRecord("okta: target: user.session.clear names no User target or actor")
            if not _clears_tokens(rec):
                return CanonicalEvent(kind=EventKind.SESSION_ENDED, subject=subject, **common)
            return CanonicalEvent(
                kind=EventKind.REVOKED,
                subject=subject,
                revocation=Revocation(target="subject", actor=_actor_name(rec.get("actor"))),
                **common,
            )
        if user is None:
            raise InvalidRecord(f"okta: target: {event_type} names no User target")
        return CanonicalEvent(kind=EventKind.PRINCIPAL_DISABLED, subject=user, **common)

    def _grant(
        self, event_type: str, rec: OktaLogEvent, session: str | None, actor: Subject | None, common: dict[str, Any]
    ) -> CanonicalEvent:
        data = (rec.get("debugContext") or _NONE).get("debugData") or _NONE
        grant_type = data.get("grantType")
        wanted = event_type.rsplit(".", 1)[-1]
        target = _token_target(rec, wanted if wanted in _TOKEN_TYPES else None)
        outcome: Outcome = common["outcome"]
        if target is None and outcome.result == "success":
            raise InvalidRecord(f"okta: target: successful {event_type} names no token target")
        return CanonicalEvent(
            kind=EventKind.REFRESHED if grant_type == "refresh_token" else EventKind.ISSUED,
            token=_token_ref(target, session) if target is not None else None,
            subject=actor,
            session_id=session,
            grant_type=grant_type,
            scopes=self._scopes(data.get("grantedScopes")),
            **common,
        )

    # -- shared parts ------------------------------------------------------------
    def _actor(self, actor: OktaActor | None) -> Subject | None:
        if not actor:
            return None
        return self._subject(actor.get("id"), actor.get("alternateId") or actor.get("displayName"), actor.get("type"))

    def _user_target(self, rec: OktaLogEvent) -> Subject | None:
        for target in rec.get("target") or ():
            if target.get("type") == "User" and _id(target.get("id")) is not None:
                return self._subject(target.get("id"), target.get("alternateId") or target.get("displayName"), "User")
        return None

    def _subject(self, subject_id: str | None, name: str | None, okta_type: str | None) -> Subject | None:
        subject_id = _id(subject_id)
        if subject_id is None:
            return None
        kind = _subject_kind(okta_type)
        key = (subject_id, name, kind)
        found = self._subjects.get(key)
        if found is None:
            found = self._subjects.put(key, Subject(id=subject_id, name=name, kind=kind))
        return found

    def _network(self, rec: OktaLogEvent, ctx: AdapterContext) -> Network:
        client = rec.get("client") or _NONE
        sec = rec.get("securityContext") or _NONE
        place = client.get("geographicalContext") or _NONE
        point = place.get("geolocation") or _NONE
        ip = client_address(client.get("ipAddress"), ctx, "okta.client.ipAddress")
        key = (
            ip, (client.get("userAgent") or _NONE).get("rawUserAgent"),
            place.get("country"), place.get("city"), point.get("lat"), point.get("lon"),
            sec.get("asNumber"), sec.get("asOrg"), sec.get("isProxy"),
        )
        found = self._networks.get(key)
        if found is not None:
            return found
        agent, country, city, lat, lon, asn, org, proxy = key[1:]
        geo = None
        both = lat is not None and lon is not None
        if country or city or both:
            geo = Geo(country=country, city=city, lat=lat if both else None, lon=lon if both else None, source="event")
        return self._networks.put(key, Network(
            ip=ip,
            user_agent=agent,
            geo=geo,
            asn=asn or None,  # Okta writes 0 when it has no AS
            as_org=org or None,
            hosting=True if proxy else None,  # not a proxy says nothing about hosting: enrichment decides
        ))

    def _outcome(self, outcome: OktaOutcome) -> Outcome:
        result, reason = outcome.get("result"), outcome.get("reason")
        key = (result, reason)
        found = self._outcomes.get(key)
        if found is None:
            upper = (result or "").upper()
            if upper in _SUCCESS:
                found = Outcome(result="success")
            elif upper in _FAILURE:
                found = Outcome(result="failure", reason=reason or upper)
            else:
                found = Outcome(result="unknown", reason=reason or result)
            if len(self._outcomes) > 1024:
                self._outcomes.clear()
            self._outcomes[key] = found
        return found

    def _scopes(self, value: str | list[str] | None) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, list):
            return tuple(sorted({s.strip() for s in value if s.strip()}))
        found = self._scope_sets.get(value)
        if found is None:
            # "openid, profile" — commas, sometimes spaces as well: neither occurs inside an Okta scope name.
            found = self._scope_sets.put(value, tuple(sorted(set(value.replace(",", " ").split()))))
        return found


def _id(value: str | None) -> str | None:
    return None if value is None or value.strip().lower() in _NO_ID else value


def _subject_kind(okta_type: str | None) -> SubjectKind:
    """Okta actor types: "User" for people; apps and system principals are services."""
    if okta_type is None:
        return "user"
    folded = okta_type.casefold()
    if folded in _USER_TYPES:
        return "user"
    return "service" if folded in _SERVICE_TYPES else "unknown"


def _actor_name(actor: OktaActor | None) -> str | None:
    if not actor:
        return None
    return actor.get("alternateId") or _id(actor.get("id"))


def _token_target(rec: OktaLogEvent, wanted: str | None) -> OktaTarget | None:
    """The target of type ``wanted`` (else the first token target) that has an id."""
    first: OktaTarget | None = None
    for target in rec.get("target") or ():
        kind = target.get("type")
        if kind in _TOKEN_TYPES and _id(target.get("id")) is not None:
            if wanted is None or kind == wanted:
                return target
            first = first or target
    return first


def _token_ref(target: OktaTarget, family: str | None) -> TokenRef:
    token_id, kind = target.get("id"), target.get("type")
    assert token_id is not None and kind is not None  # a target _token_target chose has both
    return TokenRef(
        id=token_id,
        type=_TOKEN_TYPES[kind],
        family_id=family,
        expires_at=_expires(target.get("detailEntry")),
    )


def _expires(detail: dict[str, Any] | None) -> datetime | None:
    value = detail.get("expires") if detail else None
    return None if value is None else iso_to_utc(value, "okta: target.detailEntry.expires")


def _clears_tokens(rec: OktaLogEvent) -> bool:
    """Whether a session clear also revoked the user's OAuth tokens: yes unless the logged
    request (``url`` keeps the query, ``requestUri`` may) says ``oauthTokens=false``, and
    nothing in it says otherwise (a repeated parameter cannot talk a clear out of its tokens)."""
    data = (rec.get("debugContext") or _NONE).get("debugData") or _NONE
    said: set[str] = set()
    for logged in (data.get("url"), data.get("requestUri")):
        if logged and "?" in logged:
            query = parse_qsl(urlsplit(logged).query)
            said.update(value.strip().lower() for name, value in query if name == "oauthTokens")
    return said != {"false"}


def _request(rec: OktaLogEvent, ctx: AdapterContext) -> Request | None:
    data = (rec.get("debugContext") or _NONE).get("debugData") or _NONE
    request_id = data.get("requestId") or (rec.get("transaction") or _NONE).get("id")
    resource = data.get("requestUri")
    if resource:
        resource = redact_url(resource, ctx.hash_token)
    if request_id is None and resource is None:
        return None
    return Request(id=request_id, resource=resource)
