"""Microsoft Entra ID sign-in logs, as Azure Monitor diagnostic settings export them.

A sign-in record names the token it produced by ``uniqueTokenIdentifier``
(UTI); Graph activity logs name the token they accepted by the same value
(``SignInActivityId``), which is what links issue to use across the two
formats. A sign-in that redeemed a refresh token (``incomingTokenType``
``refreshToken`` / ``primaryRefreshToken``) is a ``refreshed`` event; Entra
does not log which refresh token was presented, so the new access token has
no ``parent_id`` and its family is the session (``sessionId``). Entra does not
log the token's expiry either, so ``expires_at`` stays unknown.

Granted scopes sit in ``authenticationProcessingDetails`` under
``"Oauth Scope Info"`` as a JSON array inside a string. A value that is not
such an array makes the record invalid (dead-lettered) rather than a sign-in
with no scopes: silently empty scopes would switch off the scope check for
every use of the token, and a changed vendor layout should be loud.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import (
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_USER_AGENT, Memo, client_address, content_id, explain, invalid

SIGN_IN_CATEGORIES = frozenset({"SignInLogs", "NonInteractiveUserSignInLogs", "ServicePrincipalSignInLogs"})
SERVICE_CATEGORY = "ServicePrincipalSignInLogs"
REFRESH_TOKEN_TYPES = frozenset({"refreshtoken", "primaryrefreshtoken"})
SCOPE_INFO_KEY = "oauth scope info"
# authenticationProtocol values that name an OAuth grant (others: "none", "saml20", "wsFederation", …).
GRANT_TYPES = {
    "ropc": "password",
    "devicecode": "urn:ietf:params:oauth:grant-type:device_code",
}

_ID = Field(default=None, max_length=512)
_MAX_TYPE_CHARS = 100


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Coordinates(_Lenient):
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SignInLocation(_Lenient):
    city: str | None = Field(default=None, max_length=256)
    countryOrRegion: str | None = Field(default=None, max_length=64)
    geoCoordinates: Coordinates | None = None


class SignInStatus(_Lenient):
    errorCode: int | None = None


class DeviceDetail(_Lenient):
    deviceId: str | None = _ID


class SignInProperties(_Lenient):
    id: str | None = _ID
    userPrincipalName: str | None = _ID
    userId: str | None = _ID
    servicePrincipalId: str | None = _ID
    servicePrincipalName: str | None = _ID
    appId: str | None = _ID
    ipAddress: str | None = Field(default=None, max_length=64)
    userAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    location: SignInLocation | None = None
    status: SignInStatus | None = None
    deviceDetail: DeviceDetail | None = None
    sessionId: str | None = _ID
    uniqueTokenIdentifier: str | None = _ID
    incomingTokenType: str | None = Field(default=None, max_length=128)
    authenticationProtocol: str | None = Field(default=None, max_length=128)
    resourceId: str | None = _ID
    resourceDisplayName: str | None = _ID
    autonomousSystemNumber: int | None = Field(default=None, ge=0, le=4_294_967_295)
    # {key, value} pairs; only "Oauth Scope Info" is read, so other entries are not validated.
    authenticationProcessingDetails: list[Any] | None = Field(default=None, max_length=256)


class SignInRecord(_Lenient):
    time: datetime
    category: str
    tenantId: str | None = _ID
    resultType: Annotated[str, Field(max_length=32)] | int | None = None
    callerIpAddress: str | None = Field(default=None, max_length=64)
    properties: SignInProperties


class EntraFormat:
    name: ClassVar[str] = "entra"

    def __init__(self) -> None:
        # Users, places and scope lists repeat across sign-ins: build each once.
        self._subjects: Memo[tuple[str, str | None, str], Subject] = Memo()
        self._networks: Memo[tuple[Any, ...], Network] = Memo()
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)
        self._outcomes: dict[int, Outcome] = {}

    def matches(self, raw: Mapping[str, Any]) -> bool:
        # The Azure Monitor diagnostic envelope; other Entra categories match too and are skipped.
        return "category" in raw and "properties" in raw and "operationName" in raw

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        category = raw.get("category")
        if not isinstance(category, str):
            raise InvalidRecord(f"entra: category: expected a string, got {type(category).__name__}")
        if not category.strip():
            raise InvalidRecord("entra: category: empty")
        if category not in SIGN_IN_CATEGORIES:
            raise UnsupportedEventType(category[:_MAX_TYPE_CHARS])
        try:
            rec = SignInRecord.model_validate(raw)
        except ValidationError as exc:
            raise invalid("entra: ", exc) from None
        if rec.time.tzinfo is None:
            raise InvalidRecord("entra: time has no timezone")
        props = rec.properties
        code = _error_code(rec)
        ok = code == 0
        refresh = (props.incomingTokenType or "").casefold() in REFRESH_TOKEN_TYPES
        service = category == SERVICE_CATEGORY
        token_id = props.uniqueTokenIdentifier or None
        if token_id is None and ok:
            raise InvalidRecord("entra: properties.uniqueTokenIdentifier missing on a successful sign-in")
        try:
            return [
                CanonicalEvent(
                    event_id=f"entra:{props.id}" if props.id else content_id(self.name, raw),
                    kind=EventKind.REFRESHED if refresh else EventKind.ISSUED,
                    time=rec.time,
                    source=self.name,
                    tenant=rec.tenantId or None,
                    token=_token(token_id, props, rec.time if ok else None) if token_id else None,
                    subject=self._subject(props, service),
                    client_id=props.appId or None,
                    session_id=props.sessionId or None,
                    grant_type=_grant_type(props, refresh, service),
                    scopes=self._scopes(props.authenticationProcessingDetails),
                    network=self._network(props, rec.callerIpAddress, ctx),
                    outcome=self._outcome(code),
                )
            ]
        except ValidationError as exc:
            raise InvalidRecord(f"entra: {explain(exc)}") from None

    def _subject(self, props: SignInProperties, service: bool) -> Subject | None:
        if service:
            sid, name, kind = props.servicePrincipalId, props.servicePrincipalName, "service"
        else:
            sid, name, kind = props.userId, props.userPrincipalName, "user"
        sid = sid or name  # failed sign-ins of unknown users carry only the name typed
        if not sid:
            return None
        key = (sid, name or None, kind)
        return self._subjects.get(key) or self._subjects.put(key, Subject(id=sid, name=name or None, kind=kind))

    def _network(self, props: SignInProperties, caller_ip: str | None, ctx: AdapterContext) -> Network:
        device = props.deviceDetail.deviceId if props.deviceDetail else None
        loc = props.location
        coords = loc.geoCoordinates if loc else None
        key = (
            client_address(props.ipAddress or caller_ip, ctx, "entra.ipAddress"), props.userAgent,
            props.autonomousSystemNumber or None, device or None,
            loc.countryOrRegion if loc else None, loc.city if loc else None,
            coords.latitude if coords else None, coords.longitude if coords else None,
        )
        found = self._networks.get(key)
        if found is None:
            ip, agent, asn, device_id, country, city, lat, lon = key
            found = self._networks.put(key, Network(
                ip=ip or None, user_agent=agent or None, geo=_geo(country, city, lat, lon), asn=asn,
                device_id=device_id,
            ))
        return found

    def _scopes(self, details: list[Any] | None) -> tuple[str, ...]:
        for detail in details or ():
            key = detail.get("key") if isinstance(detail, dict) else None
            if isinstance(key, str) and key.casefold() == SCOPE_INFO_KEY:
                value = detail.get("value")
                if isinstance(value, str):
                    found = self._scope_sets.get(value)
                    return found if found is not None else self._scope_sets.put(value, _parse_scopes(value))
                return _scope_list(value)
        return ()

    def _outcome(self, code: int) -> Outcome:
        found = self._outcomes.get(code)
        if found is None:
            if len(self._outcomes) > 4096:
                self._outcomes.clear()
            found = self._outcomes[code] = (
                Outcome(result="success") if code == 0 else Outcome(result="failure", reason=str(code))
            )
        return found


def _error_code(rec: SignInRecord) -> int:
    """``properties.status.errorCode``, else the envelope's ``resultType`` (the same code as text)."""
    status = rec.properties.status
    if status is not None and status.errorCode is not None:
        return status.errorCode
    result = rec.resultType
    if isinstance(result, int):
        return result
    if result is not None:
        try:
            return int(result)
        except ValueError:
            pass
    raise InvalidRecord(f"entra: no result: properties.status.errorCode missing and resultType is {result!r}")


def _token(token_id: str, props: SignInProperties, issued: datetime | None) -> TokenRef:
    audience = props.resourceId or props.resourceDisplayName
    return TokenRef(
        id=token_id,
        type=TokenType.ACCESS,
        family_id=props.sessionId or None,
        issued_at=issued,
        audience=(audience,) if audience else (),
    )


def _grant_type(props: SignInProperties, refresh: bool, service: bool) -> str | None:
    if refresh:
        return "refresh_token"
    if service:
        return "client_credentials"
    return GRANT_TYPES.get((props.authenticationProtocol or "").casefold())


def _geo(country: str | None, city: str | None, lat: float | None, lon: float | None) -> Geo | None:
    if lat is None or lon is None or (lat == 0 and lon == 0):  # (0, 0) is how unknown often reads
        lat = lon = None
    if not (country or city or lat is not None):
        return None
    return Geo(country=country or None, city=city or None, lat=lat, lon=lon, source="event")


def _parse_scopes(value: str) -> tuple[str, ...]:
    if not value.strip():
        return ()
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        raise InvalidRecord(
            "entra: properties.authenticationProcessingDetails['Oauth Scope Info']: not a JSON array"
        ) from None
    return _scope_list(parsed)


def _scope_list(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(s, str) and len(s) <= 512 for s in value):
        raise InvalidRecord(
            "entra: properties.authenticationProcessingDetails['Oauth Scope Info']: "
            "expected a JSON array of scope strings"
        )
    return tuple(sorted({s.strip() for s in value if s.strip()}))
