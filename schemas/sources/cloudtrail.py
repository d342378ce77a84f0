"""AWS CloudTrail records: STS issuance and use of temporary credentials.

A line is one record, or a CloudTrail log file ``{"Records": [...]}``. Two kinds
of record matter:

- ``sts.amazonaws.com`` AssumeRole / AssumeRoleWithWebIdentity /
  AssumeRoleWithSAML / GetSessionToken / GetFederationToken: ``issued`` of the
  temporary key ``responseElements.credentials.accessKeyId`` (``ASIA…``). When
  an AWS service asked for it (the EC2 instance-profile pattern), the key is
  bound to the AWS network: ``Binding(method="network", value="aws")``.
- any record signed with a temporary key (``userIdentity.accessKeyId`` ``ASIA…``):
  ``used`` of that key. An STS issuance signed with one (role chaining) is both.
  A use by EC2 instance credentials (``sessionContext.ec2RoleDelivery``, or a role
  session named "i-<instance id>") carries the same ``aws`` binding on its token: the
  use record alone says where the key belongs, issuance in the stream or not.

Records signed with long-term keys (``AKIA…``) or by AWS itself are not token
uses tokenwatch tracks: ``UnsupportedEventType("<eventSource>:<eventName>")``.
A failed issuance mints nothing: skipped as ``"<eventSource>:<eventName>:error"``
unless signed with a temporary key (then a failed use of that key).
``credentials.sessionToken`` is the secret half of the credential: it is never
read, kept or logged.

Issue and use agree on who holds a key, so lineage links them: subject = the
role session's ARN (use: ``userIdentity.arn``), ``family_id`` = the
assumed-role id "AROA…:<session name>" (use: ``principalId``); for
GetSessionToken the calling IAM user, for GetFederationToken the federated
user. An AssumeRole by an AWS service has no ``assumedRoleUser`` in its response: its
subject is the session ARN built from ``requestParameters.roleArn`` and
``roleSessionName``, which is also its ``family_id`` (role + session). ``client_id``
= the role session name (the instance id, function or person the caller named the
session after). ``grant_type`` = the STS API.
A use's ``request`` is (``requestID``, ``eventName``, "<eventSource>/<eventName>");
``sourceIPAddress`` is ``network.ip``, or ``network.service`` when an AWS service
made the call; a call through a VPC endpoint of the credentials' own account is
``network.provider = "aws"``. A record with a ``requestID`` has an event id made
from the call (``cloudtrail_aws.call_id``), so the copies an organisation trail
delivers to several accounts are one event; others keep ``cloudtrail:<eventID>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Network,
    Outcome,
    Request,
    Subject,
    SubjectKind,
    TokenRef,
    TokenType,
)
from schemas.sources.base import AdapterContext, InvalidFields, InvalidRecord, PartialRecord, UnsupportedEventType
from schemas.sources.cloudtrail_aws import (
    assumed_by_service,
    aws_service,
    call_id,
    instance_credentials,
    is_ip,
    own_endpoint,
    session_name,
)
from schemas.sources.common import Memo, content_id, epoch_to_utc, explain, invalid, iso_to_utc

STS = "sts.amazonaws.com"
ISSUING = frozenset(
    {"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML", "GetSessionToken", "GetFederationToken"}
)
TEMPORARY_KEY_PREFIX = "ASIA"
INSIGHT = "AwsCloudTrailInsight"
"""``eventType`` of a CloudTrail Insights record (AWS: "CloudTrail record contents for Insights
events"): its ``eventSource``/``eventName`` sit inside ``insightDetails``."""
AWS_NETWORK = Binding(method="network", value="aws")
_MAX_REASON = 300
_MAX_BAD_INDICES = 10
_EPOCH_MS_ABOVE = 1e11  # an expiry this many seconds after 1970 is in year 5138: it is milliseconds

_ID = Field(default=None, max_length=256)
_NAME = Field(default=None, max_length=512)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class SessionAttributes(_Lenient):
    creationDate: str | None = Field(default=None, max_length=64)  # vendor names


class SessionContext(_Lenient):
    attributes: SessionAttributes | None = None
    ec2RoleDelivery: str | None = Field(default=None, max_length=16)  # "1.0" IMDSv1, "2.0" IMDSv2


class UserIdentity(_Lenient):
    type: str | None = Field(default=None, max_length=64)
    principalId: str | None = _NAME
    arn: str | None = Field(default=None, max_length=2048)
    accountId: str | None = _ID
    accessKeyId: str | None = Field(default=None, max_length=128)
    invokedBy: str | None = _NAME
    sessionContext: SessionContext | None = None


class Credentials(BaseModel):
    """Only the key id and expiry: ``sessionToken`` is dropped at parse time."""

    model_config = ConfigDict(extra="ignore")

    accessKeyId: str = Field(min_length=1, max_length=128)
    expiration: StrictStr | StrictInt | StrictFloat | None = None


class AssumedRoleUser(_Lenient):
    assumedRoleId: str | None = _NAME
    arn: str | None = Field(default=None, max_length=2048)


class FederatedUser(_Lenient):
    federatedUserId: str | None = _NAME
    arn: str | None = Field(default=None, max_length=2048)


class StsResponse(_Lenient):
    credentials: Credentials | None = None
    assumedRoleUser: AssumedRoleUser | None = None
    federatedUser: FederatedUser | None = None


class CloudTrailRecord(_Lenient):
    eventTime: str = Field(max_length=64)
    eventSource: str = Field(min_length=1, max_length=256)
    eventName: str = Field(min_length=1, max_length=256)
    eventID: str | None = _ID
    requestID: str | None = _ID
    sourceIPAddress: str | None = _NAME
    userAgent: str | None = Field(default=None, max_length=4096)
    userIdentity: UserIdentity | None = None
    errorCode: str | None = _NAME
    errorMessage: str | None = None  # free text: truncated, not rejected
    recipientAccountId: str | None = _ID
    vpcEndpointId: str | None = _ID
    vpcEndpointAccountId: str | None = _ID  # the endpoint owner's account
    requestParameters: Any = None  # read only for an issuance by an AWS service
    responseElements: Any = None  # validated as StsResponse only for issuance


class CloudTrailFormat:
    name: ClassVar[str] = "cloudtrail"
    # A record (with eventName), a log file, an Insights event.
    match_keys: ClassVar[frozenset[str]] = frozenset({"eventSource", "Records", "eventType"})

    def __init__(self) -> None:
        self._tokens: Memo[tuple[str, str | None, str | None, bool], TokenRef] = Memo()
        self._subjects: Memo[tuple[str, SubjectKind], Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None, bool], Network] = Memo()

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return (("eventSource" in raw and "eventName" in raw) or isinstance(raw.get("Records"), list)
                or raw.get("eventType") == INSIGHT)

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        if raw.get("eventType") == INSIGHT:  # an unusual-volume finding, no API call: counted, skipped
            raise UnsupportedEventType(INSIGHT)
        if "Records" in raw and "eventSource" not in raw:
            return self._log_file(raw["Records"], ctx)
        try:
            return self._record(raw, ctx)
        except InvalidFields as exc:
            raise InvalidFields(f"cloudtrail: {exc.reason}", exc.errors) from None
        except InvalidRecord as exc:
            raise InvalidRecord(f"cloudtrail: {exc.reason}") from None

    def _log_file(self, records: Any, ctx: AdapterContext) -> list[CanonicalEvent]:
        """Events of every good record; bad records are named in a ``PartialRecord``.

        A log file holds hundreds of records: one malformed record must not hide the
        others, so the good records' events travel with the exception.
        """
        if not isinstance(records, list):
            raise InvalidRecord(f"cloudtrail: Records: expected a list, got {type(records).__name__}")
        events: list[CanonicalEvent] = []
        bad: list[tuple[int, str]] = []
        skipped: set[str] = set()
        for index, record in enumerate(records):
            if not isinstance(record, Mapping):
                bad.append((index, f"expected an object, got {type(record).__name__}"))
                continue
            try:
                events.extend(self._record(record, ctx))
            except UnsupportedEventType as exc:
                if len(skipped) < 2:
                    skipped.add(exc.event_type)
            except InvalidRecord as exc:
                bad.append((index, exc.reason))
        if bad:
            first, why = bad[0]
            indices = ", ".join(str(i) for i, _ in bad[:_MAX_BAD_INDICES])
            if len(bad) > _MAX_BAD_INDICES:
                indices += ", …"
            raise PartialRecord(
                f"cloudtrail: Records[{first}]: {why} ({len(bad)} of {len(records)} records invalid: {indices})",
                events,
            )
        if not events and skipped:
            raise UnsupportedEventType(skipped.pop() if len(skipped) == 1 else "Records")
        return events

    def _record(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        try:
            rec = CloudTrailRecord.model_validate(raw)
        except ValidationError as exc:
            raise invalid("", exc) from None
        time = iso_to_utc(rec.eventTime, "eventTime")
        ident = rec.userIdentity
        key = ident.accessKeyId if ident is not None else None
        caller_key = key if key and key.startswith(TEMPORARY_KEY_PREFIX) else None
        event_id = _event_id(rec, key, raw)
        try:
            if rec.eventSource == STS and rec.eventName in ISSUING:
                return self._issuance(rec, time, event_id, caller_key)
            if caller_key is None:
                raise UnsupportedEventType(f"{rec.eventSource}:{rec.eventName}")
            return [self._use(rec, time, event_id, caller_key)]
        except ValidationError as exc:
            raise InvalidRecord(explain(exc)) from None

    # -- issuance ----------------------------------------------------------------
    def _issuance(
        self, rec: CloudTrailRecord, time: datetime, event_id: str, caller_key: str | None
    ) -> list[CanonicalEvent]:
        """``issued`` of the minted key, after the ``used`` of the signing key when chained.

        A failed call mints nothing: it is only a (failed) use of the signing key, if
        that key is temporary, and otherwise skipped as ``<source>:<name>:error``.
        """
        if rec.errorCode:
            if caller_key is None:
                raise UnsupportedEventType(f"{rec.eventSource}:{rec.eventName}:error")
            return [self._use(rec, time, event_id, caller_key)]
        if not isinstance(rec.responseElements, Mapping):
            raise InvalidRecord("responseElements: a successful issuance carries the credentials")
        try:
            response = StsResponse.model_validate(rec.responseElements)
        except ValidationError as exc:
            raise InvalidRecord(f"responseElements.{explain(exc)}") from None
        creds = response.credentials
        if creds is None:
            raise InvalidRecord("responseElements.credentials: missing on a successful issuance")
        subject, family_id, client_id = self._issued_to(rec, response)
        ip_or_service = rec.sourceIPAddress
        issued = CanonicalEvent(
            event_id=event_id,
            kind=EventKind.ISSUED,
            time=time,
            source=self.name,
            tenant=_tenant(rec),
            token=TokenRef(
                id=creds.accessKeyId,
                type=TokenType.TEMPORARY_CREDENTIAL,
                family_id=family_id,
                parent_id=caller_key,
                issued_at=time,
                expires_at=parse_expiration(creds.expiration),
                binding=AWS_NETWORK if _invoked_by_aws(rec.userIdentity, ip_or_service) else None,
            ),
            subject=subject,
            client_id=client_id,
            grant_type=rec.eventName,
            network=self._network(ip_or_service, rec.userAgent, _via_own_endpoint(rec)),
            request=_request(rec),
        )
        if caller_key is None:
            return [issued]
        return [self._use(rec, time, f"{event_id}#caller", caller_key), issued]

    def _issued_to(self, rec: CloudTrailRecord, response: StsResponse) -> tuple[Subject | None, str | None, str | None]:
        """(subject, family id, client id) of the minted credentials.

        Chosen to equal what the key's later use records say: the use's
        ``userIdentity.arn`` / ``principalId`` are the role session's (or federated
        user's, or IAM user's) ARN and id.
        """
        name = rec.eventName
        if name == "GetSessionToken":
            ident = rec.userIdentity
            if ident is None:
                return None, None, None
            return self._subject(ident.arn or ident.principalId, "user"), ident.principalId, None
        if name == "GetFederationToken":
            fed = response.federatedUser
            if fed is None:
                return None, None, None
            return self._subject(fed.arn or fed.federatedUserId, "user"), fed.federatedUserId, None
        role = response.assumedRoleUser
        if role is None:  # an AssumeRole made by an AWS service: the request names the session
            arn, session = assumed_by_service(rec.requestParameters)
            return self._subject(arn, "service"), arn, session
        session = role.assumedRoleId
        return self._subject(role.arn or session, "service"), session, session_name(session)

    # -- use -----------------------------------------------------------------------
    def _use(self, rec: CloudTrailRecord, time: datetime, event_id: str, key: str) -> CanonicalEvent:
        ident = rec.userIdentity
        assert ident is not None
        attributes = ident.sessionContext.attributes if ident.sessionContext else None
        created = attributes.creationDate if attributes else None
        assumed = ident.type == "AssumedRole"
        error = rec.errorCode
        return CanonicalEvent(
            event_id=event_id,
            kind=EventKind.USED,
            time=time,
            source=self.name,
            tenant=_tenant(rec),
            token=self._token(key, ident.principalId, created, instance_credentials(ident)),
            subject=self._subject(ident.arn or ident.principalId, _USER_KINDS.get(ident.type or "", "unknown")),
            client_id=session_name(ident.principalId) if assumed else None,
            network=self._network(rec.sourceIPAddress, rec.userAgent, _via_own_endpoint(rec)),
            request=_request(rec),
            outcome=_SUCCESS if not error else Outcome(result="failure", reason=_reason(error, rec.errorMessage)),
        )

    # Sub-objects repeat across the records of one key / caller: build each once.
    def _token(self, key: str, principal: str | None, created: str | None, on_instance: bool) -> TokenRef:
        """The used key; EC2 instance credentials carry the ``aws`` binding of their issuance."""
        memo = (key, principal, created, on_instance)
        ref = self._tokens.get(memo)
        if ref is None:
            issued_at = iso_to_utc(created, "userIdentity.sessionContext.attributes.creationDate") if created else None
            ref = self._tokens.put(memo, TokenRef(
                id=key, type=TokenType.TEMPORARY_CREDENTIAL, family_id=principal, issued_at=issued_at,
                binding=AWS_NETWORK if on_instance else None,
            ))
        return ref

    def _subject(self, subject_id: str | None, kind: SubjectKind) -> Subject | None:
        if not subject_id:
            return None
        memo = (subject_id, kind)
        found = self._subjects.get(memo)
        if found is None:
            found = self._subjects.put(memo, Subject(id=subject_id, name=_arn_name(subject_id), kind=kind))
        return found

    def _network(self, source: str | None, user_agent: str | None, via_vpc_endpoint: bool) -> Network:
        """``sourceIPAddress`` is an IP, or the name of the AWS service that called.

        A call through a VPC endpoint of the credentials' own account comes from inside
        AWS whatever its (private) IP.
        """
        memo = (source, user_agent, via_vpc_endpoint)
        found = self._networks.get(memo)
        if found is None:
            provider = "aws" if via_vpc_endpoint else None
            if source is None or is_ip(source):
                net = Network(ip=source, user_agent=user_agent, provider=provider)
            else:
                net = Network(service=source, user_agent=user_agent, provider=provider)
            found = self._networks.put(memo, net)
        return found


_SUCCESS = Outcome(result="success")
# userIdentity.type of a key's holder. Assumed-role sessions count as services, also when
# a person federated into the role (SAML): use records cannot tell them apart.
_USER_KINDS: dict[str, SubjectKind] = {
    "AssumedRole": "service", "IAMUser": "user", "Root": "user", "FederatedUser": "user",
}
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
# "Oct 2, 2019 11:12:29 PM" (Java's US medium format, UTC); newer JDKs add a comma
# after the year and a narrow no-break space before PM.
_US_TIME = re.compile(
    r"\s*([A-Za-z]{3})[A-Za-z]*\.?\s+([0-9]{1,2}),?\s+([0-9]{4}),?\s+([0-9]{1,2}):([0-9]{2}):([0-9]{2})"
    r"\s*([AaPp])\.?[Mm]\.?(?:\s*(?:UTC|GMT|Z))?\s*"
)


def parse_expiration(value: str | int | float | None) -> datetime | None:
    """``credentials.expiration``: "Oct 2, 2019 11:12:29 PM" (UTC), ISO 8601, or epoch seconds / ms."""
    if value is None:
        return None
    where = "responseElements.credentials.expiration"
    if isinstance(value, (int, float)):
        try:
            return epoch_to_utc(value, millis=value > _EPOCH_MS_ABOVE)
        except InvalidRecord as exc:
            raise InvalidRecord(f"{where}: {exc.reason}") from None
    match = _US_TIME.fullmatch(value)
    if match is None:
        if value[:1].isdigit():
            return iso_to_utc(value, where)
        raise InvalidRecord(f"{where}: unrecognised time {value[:64]!r}")
    mon, day, year, hour, minute, second, half = match.groups()
    month = _MONTHS.get(mon.lower())
    if month is None or not 1 <= int(hour) <= 12:
        raise InvalidRecord(f"{where}: unrecognised time {value[:64]!r}")
    hour24 = int(hour) % 12 + (12 if half in "Pp" else 0)
    try:
        return datetime(int(year), month, int(day), hour24, int(minute), int(second), tzinfo=timezone.utc)
    except ValueError:
        raise InvalidRecord(f"{where}: not a valid date {value[:64]!r}") from None


def _invoked_by_aws(ident: UserIdentity | None, source: str | None) -> bool:
    """Did an AWS service (EC2 instance profile, Lambda, ECS task role…) ask for the credentials?"""
    if ident is not None and (ident.type == "AWSService" or aws_service(ident.invokedBy)):
        return True
    return source is not None and aws_service(source) and not is_ip(source)


def _event_id(rec: CloudTrailRecord, key: str | None, raw: Mapping[str, Any]) -> str:
    """The call's id when the record names its request, else ``eventID``, else a content hash."""
    if rec.requestID:
        return call_id(rec.requestID, rec.eventSource, rec.eventName, key, rec.eventTime, rec.sourceIPAddress)
    return f"cloudtrail:{rec.eventID}" if rec.eventID else content_id("cloudtrail", raw)


def _via_own_endpoint(rec: CloudTrailRecord) -> bool:
    ident = rec.userIdentity
    return own_endpoint(rec.vpcEndpointId, rec.vpcEndpointAccountId, rec.recipientAccountId,
                        ident.accountId if ident is not None else None)


def _arn_name(subject_id: str) -> str | None:
    """Readable name from an ARN: "assumed-role/app-role/i-0abc" -> "app-role/i-0abc", "user/alice" -> "alice"."""
    if not subject_id.startswith("arn:"):
        return None
    resource = subject_id.split(":", 5)[-1]
    _, _, name = resource.partition("/")
    return name or resource


def _tenant(rec: CloudTrailRecord) -> str | None:
    if rec.recipientAccountId:
        return rec.recipientAccountId
    return rec.userIdentity.accountId if rec.userIdentity is not None else None


def _request(rec: CloudTrailRecord) -> Request:
    return Request(id=rec.requestID, method=rec.eventName, resource=f"{rec.eventSource}/{rec.eventName}")


def _reason(code: str, message: str | None) -> str:
    text = f"{code}: {message}" if message else code
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"
