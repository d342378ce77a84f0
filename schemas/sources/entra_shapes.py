"""The two shapes Azure Monitor exports Entra sign-ins in, read into one ``SignIn`` view.

- **Diagnostic settings** (streamed to Event Hubs, or archived to a storage account):
  Azure Monitor's top-level resource-log record (``time``, ``category``,
  ``operationName``, ``tenantId``, ``resultType``, ``callerIpAddress``; Microsoft's
  "Common and service-specific schemas for Azure resource logs") with the sign-in in
  ``properties`` under the names of Graph's ``signIn`` resource (beta; its
  ``managedServiceIdentity`` names the Azure resource of a managed identity).
- **Log Analytics rows** (query results, the Logs API, a workspace data export rule):
  the columns of the tables ``SigninLogs``, ``AADNonInteractiveUserSignInLogs``,
  ``AADServicePrincipalSignInLogs`` and ``AADManagedIdentitySignInLogs`` (Microsoft's
  "Azure Monitor Logs reference" page of each table), named by ``Type``. Dynamic columns
  (``Status``, ``LocationDetails``, ``DeviceDetail``, ``AuthenticationProcessingDetails``)
  arrive as objects or as JSON text; ``AutonomousSystemNumber`` is a string; ``TenantId``
  is the Log Analytics workspace, so the Entra tenant is ``AADTenantId``; the audience is
  ``ResourceIdentity`` (``ResourceId`` names the Azure resource that logged the row).

Addresses are validated here for Graph too (``IPText``): an address that is no IP
address is refused field-wise, so the normalizer drops the field and counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from ipaddress import ip_address
from typing import Annotated, Any

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from schemas.sources.base import InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_RESOURCE, MAX_USER_AGENT, invalid

# Diagnostic category -> who signs in.
CATEGORY_KINDS: dict[str, str] = {
    "SignInLogs": "user",
    "NonInteractiveUserSignInLogs": "user",
    "ServicePrincipalSignInLogs": "service",
    "ManagedIdentitySignInLogs": "managed_identity",
}
# Log Analytics table (a row's ``Type``) -> the diagnostic category it stores.
TABLE_CATEGORIES: dict[str, str] = {
    "SigninLogs": "SignInLogs",
    "AADNonInteractiveUserSignInLogs": "NonInteractiveUserSignInLogs",
    "AADServicePrincipalSignInLogs": "ServicePrincipalSignInLogs",
    "AADManagedIdentitySignInLogs": "ManagedIdentitySignInLogs",
}
# Diagnostic categories other formats map: Graph activity (``graph``), AKS audit (``k8s``).
OTHER_FORMAT_CATEGORIES = frozenset({"MicrosoftGraphActivityLogs", "kube-audit", "kube-audit-admin"})
MAX_JSON_TEXT = 65_536  # a dynamic column handed out as JSON text

ID = Field(default=None, max_length=512)
_MAX_TYPE_CHARS = 100



def _an_ip(value: str) -> str:
    """The caller's address as Microsoft saw it (one address, never a chain); anything
    else is refused, so the normalizer drops the field and counts it."""
    if not value:
        return value
    try:
        return str(ip_address(value.strip()))
    except ValueError:
        raise ValueError("not an IP address") from None


def _json_text(value: Any) -> Any:
    """Log Analytics hands dynamic columns out as JSON text; objects pass through. Text
    that is not JSON, or too long to parse, is refused (the optional field is dropped)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    if len(value) > MAX_JSON_TEXT:
        raise ValueError(f"JSON text longer than {MAX_JSON_TEXT} characters")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ValueError("not JSON text") from None


IPText = Annotated[str, Field(max_length=64), AfterValidator(_an_ip)]
Dynamic = BeforeValidator(_json_text)


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Coordinates(Lenient):
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class SignInLocation(Lenient):
    city: str | None = Field(default=None, max_length=256)
    countryOrRegion: str | None = Field(default=None, max_length=64)
    geoCoordinates: Coordinates | None = None


class SignInStatus(Lenient):
    errorCode: int | None = None


class Device(Lenient):
    deviceId: str | None = ID


class ManagedIdentityDetail(Lenient):
    associatedResourceId: str | None = Field(default=None, max_length=MAX_RESOURCE)


class SignInProperties(Lenient):
    id: str | None = ID
    userPrincipalName: str | None = ID
    userId: str | None = ID
    servicePrincipalId: str | None = ID
    servicePrincipalName: str | None = ID
    appId: str | None = ID
    ipAddress: IPText | None = None
    userAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    location: SignInLocation | None = None
    status: SignInStatus | None = None
    deviceDetail: Device | None = None
    sessionId: str | None = ID
    uniqueTokenIdentifier: str | None = ID
    incomingTokenType: str | None = Field(default=None, max_length=128)
    authenticationProtocol: str | None = Field(default=None, max_length=128)
    resourceId: str | None = ID
    resourceDisplayName: str | None = ID
    autonomousSystemNumber: int | None = Field(default=None, ge=0, le=4_294_967_295)
    # {key, value} pairs; only "Oauth Scope Info" is read, so other entries are not validated.
    authenticationProcessingDetails: list[Any] | None = Field(default=None, max_length=256)
    managedServiceIdentity: ManagedIdentityDetail | None = None


class SignInRecord(Lenient):
    """A diagnostic-settings record (Event Hubs, storage account)."""

    time: datetime
    category: str
    tenantId: str | None = ID
    resultType: Annotated[str, Field(max_length=32)] | int | None = None
    callerIpAddress: IPText | None = None
    properties: SignInProperties


class SignInRow(Lenient):
    """A Log Analytics row of one of the four sign-in tables."""

    TimeGenerated: datetime
    Type: str | None = Field(default=None, max_length=128)
    Category: str | None = Field(default=None, max_length=128)
    Id: str | None = ID
    AADTenantId: str | None = ID
    ResultType: Annotated[str, Field(max_length=32)] | int | None = None
    Status: Annotated[SignInStatus | None, Dynamic] = None
    UserPrincipalName: str | None = ID
    UserId: str | None = ID
    ServicePrincipalId: str | None = ID
    ServicePrincipalName: str | None = ID
    AppId: str | None = ID
    IPAddress: IPText | None = None
    UserAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    LocationDetails: Annotated[SignInLocation | None, Dynamic] = None
    DeviceDetail: Annotated[Device | None, Dynamic] = None
    SessionId: str | None = ID
    UniqueTokenIdentifier: str | None = ID
    IncomingTokenType: str | None = Field(default=None, max_length=128)
    AuthenticationProtocol: str | None = Field(default=None, max_length=128)
    ResourceIdentity: str | None = ID
    ResourceDisplayName: str | None = ID
    AutonomousSystemNumber: int | None = Field(default=None, ge=0, le=4_294_967_295)
    # Parsed when read, not here: bad scope info must dead-letter, not be dropped (module doc).
    AuthenticationProcessingDetails: list[Any] | Annotated[str, Field(max_length=MAX_JSON_TEXT)] | None = None


@dataclass(frozen=True, slots=True)
class SignIn:
    """One sign-in, whichever shape it came in: what the mapping reads."""

    category: str
    time: datetime
    tenant: str | None
    record_id: str | None
    code: int
    user_id: str | None
    user_name: str | None
    principal_id: str | None
    principal_name: str | None
    app_id: str | None
    ip: str | None
    user_agent: str | None
    location: SignInLocation | None
    device_id: str | None
    session_id: str | None
    token_id: str | None
    incoming_token_type: str | None
    protocol: str | None
    audience: str | None
    asn: int | None
    details: list[Any] | None


def _category(value: object) -> str:
    """A sign-in category, else ``UnsupportedEventType`` (another Entra log) or ``InvalidRecord``."""
    if not isinstance(value, str):
        raise InvalidRecord(f"entra: category: expected a string, got {type(value).__name__}")
    if not value.strip():
        raise InvalidRecord("entra: category: empty")
    if value not in CATEGORY_KINDS:
        raise UnsupportedEventType(value[:_MAX_TYPE_CHARS])
    return value


def read_record(raw: Mapping[str, Any]) -> SignIn:
    """A diagnostic-settings record."""
    category = _category(raw.get("category"))
    try:
        rec = SignInRecord.model_validate(raw)
    except ValidationError as exc:
        raise invalid("entra: ", exc) from None
    if rec.time.tzinfo is None:
        raise InvalidRecord("entra: time has no timezone")
    props = rec.properties
    identity = props.managedServiceIdentity
    device = props.deviceDetail.deviceId if props.deviceDetail else None
    return SignIn(
        category=category, time=rec.time, tenant=rec.tenantId or None, record_id=props.id or None,
        code=_error_code(props.status, rec.resultType, "properties.status.errorCode", "resultType"),
        user_id=props.userId or None, user_name=props.userPrincipalName or None,
        principal_id=props.servicePrincipalId or None, principal_name=props.servicePrincipalName or None,
        app_id=props.appId or None, ip=props.ipAddress or rec.callerIpAddress or None,
        user_agent=props.userAgent or None, location=props.location,
        device_id=device or (identity.associatedResourceId if identity else None) or None,
        session_id=props.sessionId or None, token_id=props.uniqueTokenIdentifier or None,
        incoming_token_type=props.incomingTokenType, protocol=props.authenticationProtocol,
        audience=props.resourceId or props.resourceDisplayName or None,
        asn=props.autonomousSystemNumber or None, details=props.authenticationProcessingDetails,
    )


def read_row(raw: Mapping[str, Any]) -> SignIn:
    """A Log Analytics row: the table (``Type``) names the category; a row exported
    without it (a query that projected columns) is known by its ``Category`` column."""
    table = raw.get("Type")
    if table is not None:
        if not isinstance(table, str) or table not in TABLE_CATEGORIES:
            raise UnsupportedEventType(str(table)[:_MAX_TYPE_CHARS])  # another table with a token column
        category = TABLE_CATEGORIES[table]
    else:
        category = _category(raw.get("Category"))
    try:
        row = SignInRow.model_validate(raw)
    except ValidationError as exc:
        raise invalid("entra: ", exc) from None
    if row.TimeGenerated.tzinfo is None:
        raise InvalidRecord("entra: TimeGenerated has no timezone")
    details = row.AuthenticationProcessingDetails
    if isinstance(details, str):
        details = _detail_list(details)
    return SignIn(
        category=category, time=row.TimeGenerated, tenant=row.AADTenantId or None, record_id=row.Id or None,
        code=_error_code(row.Status, row.ResultType, "Status.errorCode", "ResultType"),
        user_id=row.UserId or None, user_name=row.UserPrincipalName or None,
        principal_id=row.ServicePrincipalId or None, principal_name=row.ServicePrincipalName or None,
        app_id=row.AppId or None, ip=row.IPAddress or None, user_agent=row.UserAgent or None,
        location=row.LocationDetails, device_id=(row.DeviceDetail.deviceId if row.DeviceDetail else None) or None,
        session_id=row.SessionId or None, token_id=row.UniqueTokenIdentifier or None,
        incoming_token_type=row.IncomingTokenType, protocol=row.AuthenticationProtocol,
        audience=row.ResourceIdentity or row.ResourceDisplayName or None,
        asn=row.AutonomousSystemNumber or None, details=details,
    )


def _error_code(status: SignInStatus | None, result: str | int | None, status_name: str, result_name: str) -> int:
    """The status's ``errorCode``, else the result type (the same code as text)."""
    if status is not None and status.errorCode is not None:
        return status.errorCode
    if isinstance(result, int):
        return result
    if result is not None:
        try:
            return int(result)
        except ValueError:
            pass
    raise InvalidRecord(f"entra: no result: {status_name} missing and {result_name} is {result!r}")


def _detail_list(text: str) -> list[Any] | None:
    """``AuthenticationProcessingDetails`` handed out as JSON text."""
    if not text.strip():
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list):
        raise InvalidRecord("entra: AuthenticationProcessingDetails: not a JSON array")
    return parsed[:256]


