"""CloudTrail adapter: exact canonical events for STS issuance and temporary-key use."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

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
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.base import PartialRecord
from schemas.sources.cloudtrail import CloudTrailFormat, parse_expiration
from schemas.sources.cloudtrail_aws import call_id
from tests.fuzzing import FUZZ, cut_lines, mutated_lines, normalize

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"
SAMPLES = (FORMATS / "cloudtrail.jsonl").read_bytes().splitlines()
UTC = timezone.utc
SECRET = "IQoJb3JpZ2luX2VjEJr//////////wEaDGV1LWNlbnRyYWwtMSJHMEUCIQDsecretsessiontoken"
ROLE_ARN = "arn:aws:sts::111122223333:assumed-role/app-role/i-0abc123"
ROLE_ID = "AROAEXAMPLEID:i-0abc123"
KEY = "ASIAEXAMPLETEMP0001"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int) -> dict[str, Any]:
    return orjson.loads(SAMPLES[n])


def _assume_role(**changes: Any) -> dict[str, Any]:
    """Sample 0 (EC2 instance profile AssumeRole) with a realistic session token."""
    raw = _sample(0)
    raw["responseElements"]["credentials"]["sessionToken"] = SECRET
    raw.update(changes)
    return raw


def _use(**changes: Any) -> dict[str, Any]:
    raw = _sample(1)
    raw.update(changes)
    return raw


def _id(raw: dict[str, Any], key: str | None = None) -> str:
    """The event id of the call ``raw`` records (signed with ``key``)."""
    return call_id(raw["requestID"], raw["eventSource"], raw["eventName"], key, raw["eventTime"],
                   raw["sourceIPAddress"])


def _iam_user(key: str = "AKIAEXAMPLELONGTERM1") -> dict[str, Any]:
    return {
        "type": "IAMUser", "principalId": "AIDAEXAMPLEUSER", "arn": "arn:aws:iam::111122223333:user/alice",
        "accountId": "111122223333", "accessKeyId": key, "userName": "alice",
    }


# -- issuance ---------------------------------------------------------------------


def test_instance_profile_assume_role_is_a_network_bound_issue(ctx: AdapterContext) -> None:
    [event] = CloudTrailFormat().to_events(_assume_role(), ctx)
    assert event == CanonicalEvent(
        event_id=_id(_assume_role()),
        kind=EventKind.ISSUED,
        time=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
        source="cloudtrail",
        tenant="111122223333",
        token=TokenRef(
            id=KEY,
            type=TokenType.TEMPORARY_CREDENTIAL,
            family_id=ROLE_ID,
            issued_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
            expires_at=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
            binding=Binding(method="network", value="aws"),
        ),
        subject=Subject(id=ROLE_ARN, name="app-role/i-0abc123", kind="service"),
        client_id="i-0abc123",
        grant_type="AssumeRole",
        network=Network(service="ec2.amazonaws.com", user_agent="ec2.amazonaws.com"),
        request=Request(id="r-1", method="AssumeRole", resource="sts.amazonaws.com/AssumeRole"),
    )
    assert SECRET not in event.model_dump_json()


def test_assume_role_from_an_ip_is_not_network_bound(ctx: AdapterContext) -> None:
    raw = _assume_role(
        userIdentity=_iam_user(), sourceIPAddress="79.200.1.10", userAgent="aws-cli/2.15",
        requestParameters={"roleArn": "arn:aws:iam::111122223333:role/deploy", "roleSessionName": "alice-deploy"},
    )
    raw["responseElements"]["assumedRoleUser"] = {
        "assumedRoleId": "AROADEPLOYID:alice-deploy",
        "arn": "arn:aws:sts::111122223333:assumed-role/deploy/alice-deploy",
    }
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.token is not None and event.token.binding is None
    assert event.token.family_id == "AROADEPLOYID:alice-deploy"
    assert event.client_id == "alice-deploy"
    assert event.network == Network(ip="79.200.1.10", user_agent="aws-cli/2.15")
    assert SECRET not in event.model_dump_json()


@pytest.mark.parametrize(
    "identity",
    [
        {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"},
        {"type": "AssumedRole", "invokedBy": "ecs-tasks.amazonaws.com"},
    ],
)
def test_issue_invoked_by_an_aws_service_is_bound_to_aws(ctx: AdapterContext, identity: dict) -> None:
    raw = _assume_role(userIdentity=identity, sourceIPAddress="3.120.5.5")
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.token is not None and event.token.binding == Binding(method="network", value="aws")


def test_web_identity_issue(ctx: AdapterContext) -> None:
    raw = _assume_role(
        eventName="AssumeRoleWithWebIdentity",
        userIdentity={"type": "WebIdentityUser", "principalId": "arn:aws:iam::111122223333:oidc-provider/oidc.eks:sub",
                      "userName": "system:serviceaccount:shop:orders", "identityProvider": "oidc.eks"},
        sourceIPAddress="18.184.1.1", userAgent="aws-sdk-java/2.20",
        requestParameters={"roleArn": "arn:aws:iam::111122223333:role/orders", "roleSessionName": "botocore-1"},
    )
    raw["responseElements"] = {
        "credentials": {"accessKeyId": "ASIAWEBIDENTITY0001", "expiration": "Nov 24, 2026, 10:00:00\u202fAM",
                        "sessionToken": SECRET},
        "assumedRoleUser": {"assumedRoleId": "AROAORDERSID:botocore-1",
                            "arn": "arn:aws:sts::111122223333:assumed-role/orders/botocore-1"},
        "subjectFromWebIdentityToken": "system:serviceaccount:shop:orders",
        "audience": "sts.amazonaws.com",
    }
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.token == TokenRef(
        id="ASIAWEBIDENTITY0001", type=TokenType.TEMPORARY_CREDENTIAL, family_id="AROAORDERSID:botocore-1",
        issued_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC), expires_at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC),
    )
    assert event.subject == Subject(
        id="arn:aws:sts::111122223333:assumed-role/orders/botocore-1", name="orders/botocore-1", kind="service"
    )
    assert event.grant_type == "AssumeRoleWithWebIdentity"
    assert SECRET not in event.model_dump_json()


def test_get_session_token_is_issued_to_the_calling_iam_user(ctx: AdapterContext) -> None:
    raw = _assume_role(
        eventName="GetSessionToken", userIdentity=_iam_user(), sourceIPAddress="79.200.1.10",
        userAgent="aws-cli/2.15", requestParameters={"durationSeconds": 3600, "serialNumber": "arn:aws:iam::1:mfa/a"},
    )
    raw["responseElements"] = {"credentials": {
        "accessKeyId": "ASIASESSIONTOKEN001", "expiration": "2026-11-24T10:00:00Z", "sessionToken": SECRET,
    }}
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.token is not None
    assert (event.token.id, event.token.family_id) == ("ASIASESSIONTOKEN001", "AIDAEXAMPLEUSER")
    assert event.token.parent_id is None
    assert event.token.expires_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    assert event.subject == Subject(id="arn:aws:iam::111122223333:user/alice", name="alice", kind="user")
    assert event.client_id is None
    assert SECRET not in event.model_dump_json()


def test_get_federation_token_is_issued_to_the_federated_user(ctx: AdapterContext) -> None:
    raw = _assume_role(eventName="GetFederationToken", userIdentity=_iam_user(), sourceIPAddress="79.200.1.10")
    raw["responseElements"] = {
        "credentials": {"accessKeyId": "ASIAFEDERATED00001", "expiration": "Nov 24, 2026 9:15:00 PM",
                        "sessionToken": SECRET},
        "federatedUser": {"federatedUserId": "111122223333:bob", "arn": "arn:aws:sts::111122223333:federated-user/bob"},
        "packedPolicySize": 6,
    }
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.token is not None and event.token.family_id == "111122223333:bob"
    assert event.token.expires_at == datetime(2026, 11, 24, 21, 15, tzinfo=UTC)
    assert event.subject == Subject(id="arn:aws:sts::111122223333:federated-user/bob", name="bob", kind="user")


def test_role_chaining_is_a_use_of_the_caller_key_and_an_issue_derived_from_it(ctx: AdapterContext) -> None:
    caller = _sample(1)["userIdentity"]
    raw = _assume_role(userIdentity=caller, sourceIPAddress="3.120.5.5", userAgent="aws-sdk-go/1.44",
                       eventTime="2026-11-24T09:20:00Z")
    raw["responseElements"]["credentials"]["accessKeyId"] = "ASIACHAINED0000001"
    raw["responseElements"]["assumedRoleUser"] = {
        "assumedRoleId": "AROAAUDITID:chained", "arn": "arn:aws:sts::111122223333:assumed-role/audit/chained",
    }
    use, issued = CloudTrailFormat().to_events(raw, ctx)
    assert (use.kind, use.event_id, use.token and use.token.id) == (EventKind.USED, _id(raw, KEY) + "#caller", KEY)
    assert use.request == Request(id="r-1", method="AssumeRole", resource="sts.amazonaws.com/AssumeRole")
    assert (issued.kind, issued.event_id) == (EventKind.ISSUED, _id(raw, KEY))
    assert issued.token is not None
    assert (issued.token.id, issued.token.parent_id, issued.token.binding) == ("ASIACHAINED0000001", KEY, None)


def test_failed_issuance_mints_nothing_and_is_skipped(ctx: AdapterContext) -> None:
    raw = _assume_role(userIdentity=_iam_user(), sourceIPAddress="79.200.1.10", errorCode="AccessDenied",
                       errorMessage="not authorized to perform: sts:AssumeRole", responseElements=None)
    with pytest.raises(UnsupportedEventType) as caught:
        CloudTrailFormat().to_events(raw, ctx)
    assert caught.value.event_type == "sts.amazonaws.com:AssumeRole:error"


def test_failed_issuance_signed_with_a_temporary_key_is_a_failed_use_of_it(ctx: AdapterContext) -> None:
    raw = _assume_role(userIdentity=_sample(1)["userIdentity"], sourceIPAddress="5.255.255.5",
                       errorCode="AccessDenied", errorMessage="not authorized", responseElements=None)
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert (event.kind, event.event_id) == (EventKind.USED, _id(raw, KEY))
    assert event.token is not None and event.token.id == KEY
    assert event.outcome == Outcome(result="failure", reason="AccessDenied: not authorized")


# -- use ----------------------------------------------------------------------------


def _expected_use(**changes: Any) -> CanonicalEvent:
    base = CanonicalEvent(
        event_id=_id(_sample(1), KEY),
        kind=EventKind.USED,
        time=datetime(2026, 11, 24, 9, 10, tzinfo=UTC),
        source="cloudtrail",
        tenant="111122223333",
        token=TokenRef(id=KEY, type=TokenType.TEMPORARY_CREDENTIAL, family_id=ROLE_ID,
                       issued_at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC)),
        subject=Subject(id=ROLE_ARN, name="app-role/i-0abc123", kind="service"),
        client_id="i-0abc123",
        network=Network(ip="3.120.5.5", user_agent="aws-sdk-go/1.44"),
        request=Request(id="r-2", method="ListBuckets", resource="s3.amazonaws.com/ListBuckets"),
    )
    return base.model_copy(update=changes)


def test_api_call_with_a_temporary_key_is_a_use(ctx: AdapterContext) -> None:
    assert CloudTrailFormat().to_events(_sample(1), ctx) == [_expected_use()]


def test_log_file_records_are_events(ctx: AdapterContext) -> None:
    [event] = CloudTrailFormat().to_events(_sample(2), ctx)
    assert event == _expected_use(
        event_id=_id(_sample(2)["Records"][0], KEY),
        time=datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        network=Network(ip="5.255.255.5", user_agent="aws-cli/2.15"),
        request=Request(id="r-3", method="GetObject", resource="s3.amazonaws.com/GetObject"),
    )


def test_denied_call_is_a_failed_use_with_code_and_message(ctx: AdapterContext) -> None:
    message = "User: " + ROLE_ARN + " is not authorized to perform: s3:ListAllMyBuckets"
    [event] = CloudTrailFormat().to_events(_use(errorCode="AccessDenied", errorMessage=message), ctx)
    assert event.outcome == Outcome(result="failure", reason="AccessDenied: " + message)
    [long] = CloudTrailFormat().to_events(_use(errorCode="AccessDenied", errorMessage="x" * 5000), ctx)
    assert long.outcome.reason is not None and len(long.outcome.reason) == 300


def test_call_made_by_a_service_on_the_key_s_behalf_names_the_service(ctx: AdapterContext) -> None:
    raw = _use(sourceIPAddress="athena.amazonaws.com", userAgent="athena.amazonaws.com")
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.network == Network(service="athena.amazonaws.com", user_agent="athena.amazonaws.com")


def test_call_through_a_vpc_endpoint_is_inside_aws(ctx: AdapterContext) -> None:
    [event] = CloudTrailFormat().to_events(_use(sourceIPAddress="10.0.3.7", vpcEndpointId="vpce-0a1b2c3d"), ctx)
    assert event.network == Network(ip="10.0.3.7", user_agent="aws-sdk-go/1.44", provider="aws")


def test_ipv6_source_is_an_ip(ctx: AdapterContext) -> None:
    [event] = CloudTrailFormat().to_events(_use(sourceIPAddress="2a05:d014::1"), ctx)
    assert event.network.ip == "2a05:d014::1" and event.network.service is None


def test_sts_calls_that_mint_nothing_are_uses(ctx: AdapterContext) -> None:
    raw = _use(eventSource="sts.amazonaws.com", eventName="GetCallerIdentity")
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.kind is EventKind.USED
    resource = "sts.amazonaws.com/GetCallerIdentity"
    assert event.request == Request(id="r-2", method="GetCallerIdentity", resource=resource)


def test_event_id_of_a_call_names_its_request(ctx: AdapterContext) -> None:
    [event] = CloudTrailFormat().to_events(_use(), ctx)
    assert event.event_id.startswith("cloudtrail:r-2:") and len(event.event_id) == len("cloudtrail:r-2:") + 16


def test_event_id_without_a_request_id_is_the_event_id(ctx: AdapterContext) -> None:
    raw = _use()
    del raw["requestID"]
    [event] = CloudTrailFormat().to_events(raw, ctx)
    assert event.event_id == "cloudtrail:ct-2"


def test_event_id_falls_back_to_a_content_hash(ctx: AdapterContext) -> None:
    raw = _use()
    del raw["eventID"], raw["requestID"]
    [first] = CloudTrailFormat().to_events(raw, ctx)
    [again] = CloudTrailFormat().to_events(copy.deepcopy(raw), ctx)
    assert first.event_id == again.event_id and first.event_id.startswith("cloudtrail:")
    assert first.event_id != "cloudtrail:ct-2"


# -- skipped and malformed -------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "event_type"),
    [
        (_iam_user(), "s3.amazonaws.com:ListBuckets"),  # long-term key
        ({"type": "AWSService", "invokedBy": "cloudtrail.amazonaws.com"}, "s3.amazonaws.com:ListBuckets"),
        (None, "s3.amazonaws.com:ListBuckets"),
    ],
)
def test_calls_without_a_temporary_key_are_unsupported(ctx: AdapterContext, identity: Any, event_type: str) -> None:
    with pytest.raises(UnsupportedEventType) as caught:
        CloudTrailFormat().to_events(_use(userIdentity=identity), ctx)
    assert caught.value.event_type == event_type


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (_use(eventTime="yesterday"), "eventTime: not an ISO 8601 time"),
        (_use(eventTime="2026-11-24T09:10:00"), "eventTime: time has no timezone"),
        (_use(eventTime=1764000000), "eventTime"),
        (_use(eventSource=["s3"]), "eventSource"),
        (_use(userIdentity="AssumedRole"), "userIdentity"),
        (_use(userAgent="x" * 5000), "userAgent"),
        ({k: v for k, v in _use().items() if k != "eventName"}, "eventName: Field required"),
        (_use(userIdentity={**_sample(1)["userIdentity"], "sessionContext": {"attributes": {"creationDate": "soon"}}}),
         "userIdentity.sessionContext.attributes.creationDate"),
        (_assume_role(responseElements=None), "responseElements"),
        (_assume_role(responseElements={"assumedRoleUser": {}}), "responseElements.credentials: missing"),
        (_assume_role(responseElements={"credentials": {"expiration": "Nov 24, 2026 3:00:00 PM"}}),
         "responseElements.credentials.accessKeyId"),
        (_assume_role(responseElements={"credentials": {"accessKeyId": KEY, "expiration": "tomorrow"}}),
         "responseElements.credentials.expiration"),
        (_assume_role(responseElements={"credentials": {"accessKeyId": KEY, "expiration": True}}),
         "responseElements.credentials.expiration"),
        (_assume_role(responseElements={"credentials": {"accessKeyId": KEY, "expiration": -5}}),
         "responseElements.credentials.expiration: epoch time out of range"),
    ],
)
def test_malformed_records_raise_invalid_record_naming_the_field(ctx: AdapterContext, raw: dict, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason.replace(".", r"\.")) as caught:
        CloudTrailFormat().to_events(raw, ctx)
    assert caught.value.reason.startswith("cloudtrail: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Oct 2, 2019 11:12:29 PM", datetime(2019, 10, 2, 23, 12, 29, tzinfo=UTC)),
        ("Oct 2, 2019, 11:12:29\u202fPM", datetime(2019, 10, 2, 23, 12, 29, tzinfo=UTC)),  # JDK 20+ (CLDR 42)
        ("Dec 31, 2026 12:00:00 AM", datetime(2026, 12, 31, 0, 0, tzinfo=UTC)),
        ("Jan 1, 2027 12:30:00 PM", datetime(2027, 1, 1, 12, 30, tzinfo=UTC)),
        ("Sept 2, 2026 1:02:03 am", datetime(2026, 9, 2, 1, 2, 3, tzinfo=UTC)),
        ("2026-11-24T15:00:00Z", datetime(2026, 11, 24, 15, 0, tzinfo=UTC)),
        ("2026-11-24T16:00:00+01:00", datetime(2026, 11, 24, 15, 0, tzinfo=UTC)),
        (1764000000, datetime.fromtimestamp(1764000000, UTC)),
        (1764000000500, datetime.fromtimestamp(1764000000.5, UTC)),
        (None, None),
    ],
)
def test_expiration_formats(text: Any, expected: datetime | None) -> None:
    assert parse_expiration(text) == expected


@pytest.mark.parametrize(
    "text", ["Foo 2, 2019 11:12:29 PM", "Oct 2, 2019 13:12:29 PM", "Feb 30, 2026 1:00:00 AM", "2026-11-24T15:00:00", ""]
)
def test_bad_expirations_are_invalid(text: str) -> None:
    with pytest.raises(InvalidRecord, match="expiration"):
        parse_expiration(text)


# -- log files ---------------------------------------------------------------------------


def test_log_file_with_a_bad_record_keeps_the_good_events_and_names_the_bad_one(ctx: AdapterContext) -> None:
    records = [_assume_role(), _use(eventTime="garbage"), _use(eventID="ct-4"), 42]
    with pytest.raises(PartialRecord) as caught:
        CloudTrailFormat().to_events({"Records": records}, ctx)
    assert caught.value.reason == (
        "cloudtrail: Records[1]: eventTime: not an ISO 8601 time: 'garbage' (2 of 4 records invalid: 1, 3)"
    )
    assert [e.event_id for e in caught.value.events] == [_id(_assume_role()), _id(_use(), KEY)]
    assert isinstance(caught.value, InvalidRecord)  # callers unaware of partial results dead-letter the line
    assert SECRET not in caught.value.reason


def test_log_file_of_untracked_records_is_skipped(ctx: AdapterContext) -> None:
    akia = _use(userIdentity=_iam_user())
    with pytest.raises(UnsupportedEventType, match="s3.amazonaws.com:ListBuckets"):
        CloudTrailFormat().to_events({"Records": [akia, akia]}, ctx)
    with pytest.raises(UnsupportedEventType, match="^Records$"):
        CloudTrailFormat().to_events({"Records": [akia, {**akia, "eventName": "GetObject"}]}, ctx)
    assert CloudTrailFormat().to_events({"Records": [akia, _use()]}, ctx) == [_expected_use()]
    assert CloudTrailFormat().to_events({"Records": []}, ctx) == []


def test_matches_records_and_log_files_only() -> None:
    fmt = CloudTrailFormat()
    assert all(fmt.matches(orjson.loads(line)) for line in SAMPLES)
    assert not fmt.matches({"Records": "nope"})
    others = [p for p in sorted(FORMATS.glob("*.jsonl")) if not p.stem.startswith("cloudtrail")]
    assert not any(fmt.matches(orjson.loads(line)) for p in others for line in p.read_bytes().splitlines())


# -- property-based: mutated and truncated records never escape the normalizer --------------

_FUZZ_LINES = [
    *SAMPLES,
    orjson.dumps(_assume_role()),
    orjson.dumps({"Records": [_assume_role(), _use(), _use(errorCode="AccessDenied")]}),
]


def _check(line: bytes, *, dead_letter_redacted: bool = True) -> None:
    result = normalize(line)
    if result.dead_letter is not None:
        assert result.dead_letter["reason"]
        if dead_letter_redacted:
            assert SECRET not in orjson.dumps(result.dead_letter).decode()
        return
    if result.skipped_type is not None:
        assert result.skipped_type
        return
    for event in result.events:
        assert isinstance(event, CanonicalEvent)
        assert SECRET not in event.model_dump_json()
    if not result.events:  # only an empty log file maps to nothing
        assert orjson.loads(line).get("Records") == []


@FUZZ
@given(mutated_lines(_FUZZ_LINES))
def test_mutated_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    _check(line)


@FUZZ
@given(cut_lines(_FUZZ_LINES))
def test_truncated_records_are_events_skips_or_dead_letters(line: bytes) -> None:
    _check(line, dead_letter_redacted=False)  # see the test below


@pytest.mark.parametrize("cut", [0, 10])
def test_line_cut_inside_the_session_token_is_redacted_in_the_dead_letter(cut: int) -> None:
    line = orjson.dumps(_assume_role())
    end = line.index(SECRET.encode()) + len(SECRET) - cut
    result = normalize(line[:end])
    assert result.dead_letter is not None
    assert SECRET[:40] not in orjson.dumps(result.dead_letter).decode()


def test_an_insights_record_is_skipped_and_counted_in_a_log_file_too() -> None:
    """CloudTrail Insights records (the documented shape: eventType AwsCloudTrailInsight, the
    API's source and name inside insightDetails) are findings, not API calls."""
    insight = {
        "eventVersion": "1.08", "eventTime": "2026-11-24T09:40:00Z", "awsRegion": "eu-central-1",
        "eventID": "in-1", "eventType": "AwsCloudTrailInsight", "eventCategory": "Insight",
        "recipientAccountId": "111122223333", "sharedEventID": "sh-1",
        "insightDetails": {"state": "Start", "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
                           "insightType": "ApiCallRateInsight", "insightContext": {}},
    }
    alone = normalize(orjson.dumps(insight))
    assert (alone.format, alone.skipped_type, alone.dead_letter) == ("cloudtrail", "AwsCloudTrailInsight", None)
    in_file = normalize(orjson.dumps({"Records": [_use(), insight]}))
    assert len(in_file.events) == 1 and in_file.dead_letter is None
    assert in_file.skipped_entries == {"cloudtrail:AwsCloudTrailInsight": 1}
