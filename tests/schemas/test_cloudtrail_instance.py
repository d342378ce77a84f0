"""CloudTrail: EC2 instance credentials from use records, VPC endpoints, issuance by an
AWS service, and one event id per call.

Fixture ``tests/data/formats/cloudtrail_instance.jsonl`` follows AWS's "CloudTrail
userIdentity element" (``sessionContext.ec2RoleDelivery``: "1.0" = IMDSv1, "2.0" =
IMDSv2) and "CloudTrail record contents" (``vpcEndpointId``, ``vpcEndpointAccountId``
= the endpoint owner's account). The AssumeRole by ec2.amazonaws.com has only
``credentials`` in its response and names the session in ``requestParameters``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.events import Binding, CanonicalEvent, EventKind, Network, Request, Subject, TokenRef, TokenType
from schemas.sources import AdapterContext
from schemas.sources.cloudtrail import CloudTrailFormat
from schemas.sources.cloudtrail_aws import call_id
from tests.fuzzing import normalize

SAMPLES = (Path(__file__).resolve().parents[1] / "data" / "formats" / "cloudtrail_instance.jsonl").read_bytes()
UTC = timezone.utc
ACCOUNT = "111122223333"
KEY, INSTANCE = "ASIAIMDSEXAMPLE00001", "i-0a1b2c3d4e5f60718"
SESSION_ARN = f"arn:aws:sts::{ACCOUNT}:assumed-role/web-role/{INSTANCE}"
ON_AWS = Binding(method="network", value="aws")


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _line(n: int, **changes: Any) -> dict[str, Any]:
    raw = orjson.loads(SAMPLES.splitlines()[n])
    raw.update(changes)
    return raw


def _id(raw: dict[str, Any], key: str | None = KEY) -> str:
    return call_id(raw["requestID"], raw["eventSource"], raw["eventName"], key, raw["eventTime"],
                   raw["sourceIPAddress"])


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = CloudTrailFormat().to_events(raw, ctx)
    return event


# -- instance credentials in use records -----------------------------------------------------


def test_imds_delivered_credentials_are_bound_to_aws_on_their_use(ctx: AdapterContext) -> None:
    raw = _line(3)
    assert _one(raw, ctx) == CanonicalEvent(
        event_id=_id(raw),
        kind=EventKind.USED,
        time=datetime(2026, 11, 24, 9, 40, tzinfo=UTC),
        source="cloudtrail",
        tenant=ACCOUNT,
        token=TokenRef(id=KEY, type=TokenType.TEMPORARY_CREDENTIAL, family_id=f"AROAWEBROLEEXAMPLE:{INSTANCE}",
                       issued_at=datetime(2026, 11, 24, 8, 55, tzinfo=UTC), binding=ON_AWS),
        subject=Subject(id=SESSION_ARN, name=f"web-role/{INSTANCE}", kind="service"),
        client_id=INSTANCE,
        network=Network(ip="5.255.255.5", user_agent="aws-cli/2.15.30"),
        request=Request(id="imds-req-4", method="ListBuckets", resource="s3.amazonaws.com/ListBuckets"),
    )


@pytest.mark.parametrize("delivery", ["1.0", "2.0"])
def test_either_imds_version_marks_instance_credentials(delivery: str, ctx: AdapterContext) -> None:
    raw = _line(3)
    raw["userIdentity"]["sessionContext"]["ec2RoleDelivery"] = delivery
    raw["userIdentity"]["principalId"] = "AROAWEBROLEEXAMPLE:web-worker"  # not named after the instance
    assert _one(raw, ctx).token == TokenRef(
        id=KEY, type=TokenType.TEMPORARY_CREDENTIAL, family_id="AROAWEBROLEEXAMPLE:web-worker",
        issued_at=datetime(2026, 11, 24, 8, 55, tzinfo=UTC), binding=ON_AWS,
    )


@pytest.mark.parametrize(
    ("session", "bound"),
    [(INSTANCE, True), ("i-0abc1234", True), ("i-0abc123", False), ("alice-deploy", False), ("I-0A1B2C3D", False)],
)
def test_an_instance_named_session_marks_instance_credentials(session: str, bound: bool, ctx: AdapterContext) -> None:
    raw = _line(3)
    del raw["userIdentity"]["sessionContext"]["ec2RoleDelivery"]
    raw["userIdentity"]["principalId"] = f"AROAWEBROLEEXAMPLE:{session}"
    event = _one(raw, ctx)
    assert event.token is not None and event.token.binding == (ON_AWS if bound else None)


def test_a_long_term_key_or_a_user_is_never_instance_bound(ctx: AdapterContext) -> None:
    raw = _line(3)
    raw["userIdentity"]["type"] = "FederatedUser"
    assert _one(raw, ctx).token.binding is None  # type: ignore[union-attr]  # this event carries a token: a None fails the test just the same


def test_an_overlong_ec2_role_delivery_is_cut_not_a_lost_record() -> None:
    raw = _line(3)
    raw["userIdentity"]["sessionContext"]["ec2RoleDelivery"] = "2" * 5000
    result = normalize(orjson.dumps(raw))
    [event] = result.events
    assert event.token is not None and event.token.binding == ON_AWS


# -- VPC endpoints ------------------------------------------------------------------------------


def test_own_vpc_endpoint_is_inside_aws(ctx: AdapterContext) -> None:
    assert _one(_line(1), ctx).network == Network(ip="10.0.3.7", user_agent="aws-sdk-go-v2/1.30.3", provider="aws")


def test_another_account_s_vpc_endpoint_is_not_inside_aws(ctx: AdapterContext) -> None:
    raw = _line(1, vpcEndpointAccountId="999988887777")
    assert _one(raw, ctx).network == Network(ip="10.0.3.7", user_agent="aws-sdk-go-v2/1.30.3")


def test_without_the_owner_field_the_recipient_account_decides(ctx: AdapterContext) -> None:
    raw = _line(1)
    del raw["vpcEndpointAccountId"]
    assert _one(raw, ctx).network.provider == "aws"
    assert _one({**raw, "recipientAccountId": "999988887777"}, ctx).network.provider is None


def test_an_aws_service_caller_is_a_service(ctx: AdapterContext) -> None:
    assert _one(_line(2), ctx).network == Network(service="s3.amazonaws.com", user_agent="s3.amazonaws.com")


# -- issuance by an AWS service ----------------------------------------------------------------------


def _ec2_assume_role(**parameters: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.08", "userIdentity": {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"},
        "eventTime": "2026-11-24T08:55:00Z", "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole",
        "awsRegion": "eu-central-1", "sourceIPAddress": "ec2.amazonaws.com", "userAgent": "ec2.amazonaws.com",
        "requestParameters": {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/web-role", "roleSessionName": INSTANCE,
                              **parameters},
        "responseElements": {"credentials": {"accessKeyId": KEY, "expiration": "Nov 24, 2026 3:00:00 PM",
                                             "sessionToken": "IQoJb3JpZ2luX2VjEXAMPLEsessiontoken"}},
        "requestID": "imds-req-0", "eventID": "imds-evt-0", "readOnly": True, "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT, "sharedEventID": "5c3f0d0e-0000-4000-8000-000000000000",
    }


def test_service_issuance_is_named_from_its_request(ctx: AdapterContext) -> None:
    raw = _ec2_assume_role()
    assert _one(raw, ctx) == CanonicalEvent(
        event_id=_id(raw, None),
        kind=EventKind.ISSUED,
        time=datetime(2026, 11, 24, 8, 55, tzinfo=UTC),
        source="cloudtrail",
        tenant=ACCOUNT,
        token=TokenRef(id=KEY, type=TokenType.TEMPORARY_CREDENTIAL, family_id=SESSION_ARN,
                       issued_at=datetime(2026, 11, 24, 8, 55, tzinfo=UTC),
                       expires_at=datetime(2026, 11, 24, 15, 0, tzinfo=UTC), binding=ON_AWS),
        subject=Subject(id=SESSION_ARN, name=f"web-role/{INSTANCE}", kind="service"),
        client_id=INSTANCE,
        grant_type="AssumeRole",
        network=Network(service="ec2.amazonaws.com", user_agent="ec2.amazonaws.com"),
        request=Request(id="imds-req-0", method="AssumeRole", resource="sts.amazonaws.com/AssumeRole"),
    )


def test_service_issuance_of_a_role_with_a_path_names_the_role(ctx: AdapterContext) -> None:
    event = _one(_ec2_assume_role(roleArn=f"arn:aws:iam::{ACCOUNT}:role/service-role/web-role"), ctx)
    assert event.subject == Subject(id=SESSION_ARN, name=f"web-role/{INSTANCE}", kind="service")


def test_service_issuance_with_odd_parameters_keeps_the_credentials(ctx: AdapterContext) -> None:
    event = _one(_ec2_assume_role(roleSessionName="s" * 5000, roleArn=42), ctx)
    assert event.token is not None and event.token.id == KEY and event.token.binding == ON_AWS
    assert event.subject is None and event.client_id is not None and len(event.client_id) == 128
    without = _ec2_assume_role()
    del without["requestParameters"]
    bare = _one(without, ctx)
    assert (bare.subject, bare.client_id, bare.token and bare.token.family_id) == (None, None, None)


# -- one event id per call ---------------------------------------------------------------------------------


def test_copies_of_one_call_for_two_accounts_are_one_event(ctx: AdapterContext) -> None:
    mine = _line(3)
    theirs = {**mine, "eventID": "imds-evt-4-copy", "recipientAccountId": "444455556666"}
    assert _one(mine, ctx).event_id == _one(theirs, ctx).event_id


@pytest.mark.parametrize(
    "change",
    [{"eventTime": "2026-11-24T09:41:00Z"}, {"sourceIPAddress": "5.255.255.6"}, {"eventName": "GetObject"},
     {"requestID": "imds-req-5"}],
)
def test_another_call_with_the_same_request_id_is_another_event(change: dict[str, Any], ctx: AdapterContext) -> None:
    assert _one(_line(3), ctx).event_id != _one(_line(3, **change), ctx).event_id
