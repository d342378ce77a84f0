"""Microsoft Entra ID sign-in logs: a sign-in issues the token it names.

A sign-in names the token it produced by ``uniqueTokenIdentifier`` (UTI); Graph
activity logs name the token they accepted by the same value (``SignInActivityId``),
which is what links issue to use across the two formats. All four sign-in logs
(interactive and non-interactive user, service principal, managed identity) are read
in both export shapes, diagnostic settings records and Log Analytics rows
(``entra_shapes``), into one view mapped here.

A sign-in that redeemed a refresh token (``incomingTokenType`` ``refreshToken`` /
``primaryRefreshToken``) is a ``refreshed`` event; Entra does not log which refresh
token was presented, so the new access token has no ``parent_id`` and its family is the
session (``sessionId``). Entra does not log the token's expiry either. A service
principal or managed identity signing in is a ``client_credentials`` issuance to a
service subject. A managed identity's token is bound to the Azure network (its
credential never leaves the Azure resource), so its use from outside Azure is a binding
mismatch, as for an EC2 instance profile's; the Azure resource it belongs to is the
sign-in's ``network.device_id``.

Granted scopes sit in ``authenticationProcessingDetails`` under ``"Oauth Scope Info"``
as a JSON array inside a string. A value that is not such an array makes the record
invalid (dead-lettered) rather than a sign-in with no scopes: silently empty scopes
would switch off the scope check for every use of the token, and a changed vendor
layout should be loud.

The audit log (category/table ``AuditLogs``) is read by ``entra_audit``: revoking a user's
sign-in sessions is a ``revoked`` event of the subject, disabling or deleting the user a
``principal_disabled`` one; other activities are skipped and counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

import orjson
from pydantic import ValidationError

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Subject,
    SubjectKind,
    TokenRef,
    TokenType,
)
from schemas.sources.base import AdapterContext, InvalidRecord
from schemas.sources.common import Memo, content_id, explain
from schemas.sources.entra_audit import CATEGORY as AUDIT_CATEGORY
from schemas.sources.entra_audit import activity_events, is_audit_row
from schemas.sources.entra_shapes import (
    CATEGORY_KINDS,
    OTHER_FORMAT_CATEGORIES,
    TABLE_CATEGORIES,
    SignIn,
    read_record,
    read_row,
)

AZURE_NETWORK = Binding(method="network", value="azure")
REFRESH_TOKEN_TYPES = frozenset({"refreshtoken", "primaryrefreshtoken"})
SCOPE_INFO_KEY = "oauth scope info"
# authenticationProtocol values that name an OAuth grant (others: "none", "saml20", "wsFederation", …).
GRANT_TYPES = {
    "ropc": "password",
    "devicecode": "urn:ietf:params:oauth:grant-type:device_code",
}

class EntraFormat:
    name: ClassVar[str] = "entra"
    match_keys: ClassVar[frozenset[str]] = frozenset({"TimeGenerated", "category"})  # a row, a diagnostic record

    def __init__(self) -> None:
        # Users, places and scope lists repeat across sign-ins: build each once.
        self._subjects: Memo[tuple[str, str | None, SubjectKind], Subject] = Memo()
        self._networks: Memo[tuple[Any, ...], Network] = Memo()
        self._scope_sets: Memo[str, tuple[str, ...]] = Memo(4096)
        self._outcomes: dict[int, Outcome] = {}

    def matches(self, raw: Mapping[str, Any]) -> bool:
        if "TimeGenerated" in raw:  # a Log Analytics row: named by its table, else by its token column
            table = raw.get("Type")
            if (isinstance(table, str) and table in TABLE_CATEGORIES) or is_audit_row(raw):
                return True
            return "UniqueTokenIdentifier" in raw and "SignInActivityId" not in raw and "RequestUri" not in raw
        # The diagnostic record; Entra categories other than sign-ins match too and are skipped.
        if not ("category" in raw and "properties" in raw and "operationName" in raw):
            return False
        category = raw["category"]
        return not (isinstance(category, str) and category in OTHER_FORMAT_CATEGORIES)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        row = "TimeGenerated" in raw
        audit = is_audit_row(raw) if row else raw.get("category") == AUDIT_CATEGORY
        if audit:  # a revocation or a disabled user, else skipped (entra_audit)
            return activity_events(raw, row, self.name)
        sign_in = read_row(raw) if row else read_record(raw)
        if sign_in.token_id is None and sign_in.code == 0:
            raise InvalidRecord("entra: uniqueTokenIdentifier missing on a successful sign-in")
        ok = sign_in.code == 0
        refresh = (sign_in.incoming_token_type or "").casefold() in REFRESH_TOKEN_TYPES
        kind = CATEGORY_KINDS[sign_in.category]
        try:
            return [
                CanonicalEvent(
                    event_id=f"entra:{sign_in.record_id}" if sign_in.record_id else content_id(self.name, raw),
                    kind=EventKind.REFRESHED if refresh else EventKind.ISSUED,
                    time=sign_in.time,
                    source=self.name,
                    tenant=sign_in.tenant,
                    token=_token(sign_in, kind, sign_in.time if ok else None) if sign_in.token_id else None,
                    subject=self._subject(sign_in, kind),
                    client_id=sign_in.app_id,
                    session_id=sign_in.session_id,
                    grant_type=_grant_type(sign_in, refresh, kind),
                    scopes=self._scopes(sign_in.details),
                    network=self._network(sign_in),
                    outcome=self._outcome(sign_in.code),
                )
            ]
        except ValidationError as exc:
            raise InvalidRecord(f"entra: {explain(exc)}") from None

    def _subject(self, sign_in: SignIn, kind: str) -> Subject | None:
        subject_kind: SubjectKind
        if kind == "user":
            sid, name, subject_kind = sign_in.user_id, sign_in.user_name, "user"
        else:
            sid, name, subject_kind = sign_in.principal_id, sign_in.principal_name, "service"
        sid = sid or name  # failed sign-ins of unknown users carry only the name typed
        if not sid:
            return None
        key = (sid, name or None, subject_kind)
        found = self._subjects.get(key)
        return found or self._subjects.put(key, Subject(id=sid, name=name or None, kind=subject_kind))

    def _network(self, sign_in: SignIn) -> Network:
        loc = sign_in.location
        coords = loc.geoCoordinates if loc else None
        key = (
            sign_in.ip, sign_in.user_agent, sign_in.asn, sign_in.device_id,
            loc.countryOrRegion if loc else None, loc.city if loc else None,
            coords.latitude if coords else None, coords.longitude if coords else None,
        )
        found = self._networks.get(key)
        if found is None:
            ip, agent, asn, device_id, country, city, lat, lon = key
            found = self._networks.put(key, Network(
                ip=ip, user_agent=agent, geo=_geo(country, city, lat, lon), asn=asn, device_id=device_id,
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


def _token(sign_in: SignIn, kind: str, issued: datetime | None) -> TokenRef:
    return TokenRef(
        id=sign_in.token_id or "",
        type=TokenType.ACCESS,
        family_id=sign_in.session_id,
        issued_at=issued,
        audience=(sign_in.audience,) if sign_in.audience else (),
        binding=AZURE_NETWORK if kind == "managed_identity" else None,
    )


def _grant_type(sign_in: SignIn, refresh: bool, kind: str) -> str | None:
    if refresh:
        return "refresh_token"
    if kind != "user":
        return "client_credentials"
    return GRANT_TYPES.get((sign_in.protocol or "").casefold())


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

