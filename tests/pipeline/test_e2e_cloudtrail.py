"""CloudTrail end to end: raw records through normalize, real enrichment and every detector.

Two attacks on temporary credentials, each with its benign twin:
- EC2 instance-profile credentials (issued to ec2.amazonaws.com, so bound to the AWS
  network) used from an address outside AWS: the GuardDuty "credential exfiltration"
  pattern -> replay.binding_mismatch. Also from the use records alone, without the
  AssumeRole: ``cloudtrail_instance.jsonl`` is built from AWS's "CloudTrail userIdentity
  element" (``sessionContext.ec2RoleDelivery``: "1.0" IMDSv1, "2.0" IMDSv2) and
  "CloudTrail record contents" (``vpcEndpointId``, ``vpcEndpointAccountId``) pages.
- credentials accepted after their expiration plus clock skew -> post_revocation_use.after_expiry.

And the copies of one call an organisation trail delivers to two accounts ("Example
sharedEventID": same call, own ``eventID`` and ``recipientAccountId`` each) are one request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.detect_helpers import detect_lines

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "formats" / "cloudtrail.jsonl"
INSTANCE_SAMPLE = SAMPLE.with_name("cloudtrail_instance.jsonl")
IMDS_KEY, INSTANCE = "ASIAIMDSEXAMPLE00001", "i-0a1b2c3d4e5f60718"
ACCOUNT = "111122223333"
EC2_KEY = "ASIAEXAMPLETEMP0001"
DEPLOY_KEY = "ASIADEPLOYALICE0001"
SECRET = "IQoJb3JpZ2luX2VjEJr//////////wEaDGV1LWNlbnRyYWwtMSJHMEUCIQDsecretsessiontoken"
AWS_DE, AWS_DE_2, YANDEX_RU, TELEKOM_DE = "3.120.5.5", "18.184.1.1", "5.255.255.5", "79.200.1.10"


def _issue(event_id: str, time: str, key: str, expiration: str, *, by_ec2: bool) -> dict[str, Any]:
    """An STS AssumeRole: by EC2 for an instance profile, or by IAM user alice from her office."""
    if by_ec2:
        caller: dict[str, Any] = {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}
        source, agent, role, session = "ec2.amazonaws.com", "ec2.amazonaws.com", "app-role", "i-0abc123"
    else:
        caller = {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER", "arn": f"arn:aws:iam::{ACCOUNT}:user/alice",
                  "accountId": ACCOUNT, "accessKeyId": "AKIAEXAMPLELONGTERM1", "userName": "alice"}
        source, agent, role, session = TELEKOM_DE, "aws-cli/2.15", "deploy", "alice-deploy"
    return {
        "eventVersion": "1.08", "userIdentity": caller, "eventTime": time, "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRole", "awsRegion": "eu-central-1", "sourceIPAddress": source, "userAgent": agent,
        "requestParameters": {"roleArn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "roleSessionName": session},
        "responseElements": {
            "credentials": {"accessKeyId": key, "expiration": expiration, "sessionToken": SECRET},
            "assumedRoleUser": {"assumedRoleId": f"AROA{role.upper()}ID:{session}",
                                "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}"},
        },
        "requestID": f"req-{event_id}", "eventID": event_id, "readOnly": True, "eventType": "AwsApiCall",
        "managementEvent": True, "recipientAccountId": ACCOUNT,
    }


def _call(event_id: str, time: str, key: str, source: str, **extra: Any) -> dict[str, Any]:
    """An S3 GetObject signed with temporary key ``key`` (role session as in ``_issue``)."""
    role, session, created = (
        ("app-role", "i-0abc123", "2026-11-24T09:00:00Z") if key == EC2_KEY
        else ("deploy", "alice-deploy", "2026-11-24T09:00:00Z")
    )
    record = {
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "AssumedRole", "principalId": f"AROA{role.upper()}ID:{session}",
            "arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}", "accountId": ACCOUNT,
            "accessKeyId": key,
            "sessionContext": {
                "attributes": {"mfaAuthenticated": "false", "creationDate": created},
                "sessionIssuer": {"type": "Role", "principalId": f"AROA{role.upper()}ID",
                                  "arn": f"arn:aws:iam::{ACCOUNT}:role/{role}", "accountId": ACCOUNT,
                                  "userName": role},
            },
        },
        "eventTime": time, "eventSource": "s3.amazonaws.com", "eventName": "GetObject",
        "awsRegion": "eu-central-1", "sourceIPAddress": source, "userAgent": "aws-sdk-go/1.44",
        "requestParameters": {"bucketName": "finance-exports", "key": "2026/11/ledger.csv"},
        "responseElements": None, "requestID": f"req-{event_id}", "eventID": event_id, "readOnly": True,
        "eventType": "AwsApiCall", "managementEvent": False, "recipientAccountId": ACCOUNT,
    }
    record.update(extra)
    return record


def _ec2_issue() -> dict[str, Any]:
    return _issue("ct-10", "2026-11-24T09:00:00Z", EC2_KEY, "Nov 24, 2026 3:00:00 PM", by_ec2=True)


def _deploy_issue() -> dict[str, Any]:
    return _issue("ct-20", "2026-11-24T09:00:00Z", DEPLOY_KEY, "Nov 24, 2026 10:00:00 AM", by_ec2=False)


def _no_secret(*docs: Any) -> None:
    assert SECRET not in orjson.dumps(docs).decode()


# -- instance credentials used outside AWS ------------------------------------------------------


def test_sample_instance_credentials_used_outside_aws_are_a_binding_mismatch() -> None:
    found = detect_lines(SAMPLE.read_bytes().splitlines())
    assert found.hits == [("replay.binding_mismatch", EC2_KEY)]
    [alert] = found.alerts
    assert alert["alert"]["count"] == 1  # the use from inside AWS (3.120.5.5) is not part of it
    assert YANDEX_RU in alert["alert"]["summary"]
    assert "r-3" in {item.get("request_id") for item in alert["evidence"]}
    assert found.dead_letters == []


def test_instance_credentials_used_inside_aws_raise_nothing() -> None:
    lines = [
        _ec2_issue(),
        _call("ct-11", "2026-11-24T09:10:00Z", EC2_KEY, AWS_DE),
        _call("ct-12", "2026-11-24T09:40:00Z", EC2_KEY, AWS_DE_2),
        _call("ct-13", "2026-11-24T10:15:00Z", EC2_KEY, "athena.amazonaws.com", userAgent="athena.amazonaws.com"),
        _call("ct-14", "2026-11-24T10:30:00Z", EC2_KEY, "10.0.3.7", vpcEndpointId="vpce-0a1b2c3d"),
    ]
    found = detect_lines(lines)
    assert found.alerts == []
    assert found.summary.events == 5


# -- credentials used after they expired ------------------------------------------------------------


def test_credentials_accepted_after_expiry_raise_after_expiry() -> None:
    lines = [
        _deploy_issue(),
        _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE),
        _call("ct-22", "2026-11-24T10:00:45Z", DEPLOY_KEY, TELEKOM_DE),  # 45 s past expiry, skew is 30 s
    ]
    found = detect_lines(lines)
    assert found.hits == [("post_revocation_use.after_expiry", DEPLOY_KEY)]
    assert "req-ct-22" in {item.get("request_id") for item in found.alerts[0]["evidence"]}
    _no_secret(found.alerts, found.dead_letters)


def test_credentials_used_before_expiry_or_refused_after_it_raise_nothing() -> None:
    lines = [
        _deploy_issue(),
        _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE),
        _call("ct-22", "2026-11-24T10:00:20Z", DEPLOY_KEY, TELEKOM_DE),  # inside the 30 s clock skew
        _call("ct-23", "2026-11-24T10:05:00Z", DEPLOY_KEY, TELEKOM_DE,
              errorCode="ExpiredToken", errorMessage="The provided token has expired."),
    ]
    assert detect_lines(lines).alerts == []


# -- log files -----------------------------------------------------------------------------------


def _log_file(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def _long_term_key_call() -> dict[str, Any]:
    record = _call("ct-30", "2026-11-24T09:15:00Z", EC2_KEY, TELEKOM_DE)
    record["userIdentity"] = {"type": "IAMUser", "principalId": "AIDAEXAMPLEUSER",
                              "arn": f"arn:aws:iam::{ACCOUNT}:user/alice", "accountId": ACCOUNT,
                              "accessKeyId": "AKIAEXAMPLELONGTERM1", "userName": "alice"}
    return record


def test_log_file_mixing_both_attacks_raises_both() -> None:
    lines = [
        _log_file(_ec2_issue(), _deploy_issue(), _long_term_key_call(),
                  _call("ct-11", "2026-11-24T09:10:00Z", EC2_KEY, AWS_DE),
                  _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE)),
        _log_file(_call("ct-12", "2026-11-24T09:45:00Z", EC2_KEY, YANDEX_RU),
                  _call("ct-22", "2026-11-24T10:01:00Z", DEPLOY_KEY, TELEKOM_DE)),
    ]
    found = detect_lines(lines)
    assert found.hits == [
        ("post_revocation_use.after_expiry", DEPLOY_KEY),
        ("replay.binding_mismatch", EC2_KEY),
    ]
    assert found.summary.events == 6 and found.dead_letters == []
    _no_secret(found.alerts)


def test_log_file_of_benign_records_raises_nothing() -> None:
    lines = [
        _log_file(_ec2_issue(), _deploy_issue(), _long_term_key_call(),
                  _call("ct-11", "2026-11-24T09:10:00Z", EC2_KEY, AWS_DE),
                  _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE)),
        _log_file(_call("ct-12", "2026-11-24T09:45:00Z", EC2_KEY, AWS_DE_2),
                  _call("ct-22", "2026-11-24T09:59:00Z", DEPLOY_KEY, TELEKOM_DE)),
    ]
    found = detect_lines(lines)
    assert found.alerts == []
    assert found.summary.events == 6


def test_log_file_with_a_malformed_record_is_dead_lettered_naming_it() -> None:
    bad = _call("ct-12", "2026-11-24 09:45", EC2_KEY, AWS_DE)
    found = detect_lines([_log_file(_ec2_issue(), bad)])
    [dead] = found.dead_letters
    assert dead["format"] == "cloudtrail"
    assert dead["reason"].startswith("cloudtrail: Records[1]: eventTime")
    assert "(1 of 2 records invalid: 1)" in dead["reason"]
    _no_secret(found.dead_letters)


def test_good_records_of_a_log_file_with_a_bad_one_still_raise_their_alerts() -> None:
    bad = _call("ct-12", "2026-11-24 09:45", EC2_KEY, AWS_DE)
    stolen = _call("ct-13", "2026-11-24T09:50:00Z", EC2_KEY, "5.255.255.5")
    found = detect_lines([_log_file(_ec2_issue(), bad, stolen)])
    assert found.hits == [("replay.binding_mismatch", EC2_KEY)]
    [dead] = found.dead_letters
    assert "(1 of 3 records invalid: 1)" in dead["reason"]
    assert found.summary.events == 2


# -- instance credentials recognised from their use records alone ----------------------------------


def _imds_lines() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in INSTANCE_SAMPLE.read_bytes().splitlines()]


def test_instance_credentials_used_outside_aws_alert_without_their_issuance() -> None:
    found = detect_lines(INSTANCE_SAMPLE.read_bytes().splitlines())
    assert found.hits == [("replay.binding_mismatch", IMDS_KEY)]
    [alert] = found.alerts
    assert alert["alert"]["count"] == 1  # inside AWS, own VPC endpoint, an AWS service: not part of it
    assert alert["alert"]["summary"].startswith(
        "Temporary credentials issued to an AWS service (bound to aws) were used from 5.255.255.5"
    )
    assert alert["alert"]["summary"].endswith(f"(credentials {IMDS_KEY}).")
    [evidence] = alert["evidence"]  # no issuance in the stream: the use itself
    assert (evidence["ip"], evidence["request_id"], evidence["binding"]) == ("5.255.255.5", "imds-req-4", "network:aws")
    assert alert["user"]["id"] == f"arn:aws:sts::111122223333:assumed-role/web-role/{INSTANCE}"
    assert alert["client"]["id"] == INSTANCE
    assert found.dead_letters == [] and found.summary.events == 4


def test_instance_credentials_used_only_inside_aws_raise_nothing() -> None:
    found = detect_lines(_imds_lines()[:3])
    assert found.alerts == [] and found.summary.events == 3


def test_a_lone_imds_credential_use_from_a_public_ip_alerts() -> None:
    stolen = _imds_lines()[3]
    assert detect_lines([stolen]).hits == [("replay.binding_mismatch", IMDS_KEY)]
    assert detect_lines([{**stolen, "sourceIPAddress": AWS_DE_2}]).alerts == []


def test_instance_session_name_alone_marks_instance_credentials() -> None:
    """Records without ``ec2RoleDelivery`` still name the role session after the instance."""
    stolen = _imds_lines()[3]
    del stolen["userIdentity"]["sessionContext"]["ec2RoleDelivery"]
    assert detect_lines([stolen]).hits == [("replay.binding_mismatch", IMDS_KEY)]
    assert detect_lines([{**stolen, "sourceIPAddress": AWS_DE}]).alerts == []


def test_a_role_session_not_on_an_instance_is_not_bound_to_aws() -> None:
    found = detect_lines([_call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, YANDEX_RU)])
    assert found.alerts == []


def test_own_vpc_endpoint_is_inside_aws_another_account_s_is_not() -> None:
    through_own = _imds_lines()[1]
    assert detect_lines([through_own]).alerts == []
    foreign = {**through_own, "vpcEndpointId": "vpce-0f0e0d0c0b0a09080", "vpcEndpointAccountId": "999988887777"}
    found = detect_lines([foreign])
    assert found.hits == [("replay.binding_mismatch", IMDS_KEY)]
    assert "10.0.3.7" in found.alerts[0]["alert"]["summary"]


# -- issuance by an AWS service names who ------------------------------------------------------


def _service_issue() -> dict[str, Any]:
    """EC2's AssumeRole for an instance profile as CloudTrail writes it: no assumedRoleUser."""
    record = _ec2_issue()
    del record["responseElements"]["assumedRoleUser"]
    return record


def test_service_issuance_names_role_session_and_instance_in_alerts() -> None:
    found = detect_lines([_service_issue(), _call("ct-12", "2026-11-24T09:45:00Z", EC2_KEY, YANDEX_RU)])
    assert found.hits == [("replay.binding_mismatch", EC2_KEY)]
    [alert] = found.alerts
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/app-role/i-0abc123"
    assert (alert["user"]["id"], alert["client"]["id"], alert["token"]["family_id"]) == (
        session, "i-0abc123", session
    )
    _no_secret(found.alerts)


# -- service callers stay out of ip ----------------------------------------------------------------


def test_evidence_names_a_service_caller_as_a_service_not_an_ip() -> None:
    found = detect_lines([_ec2_issue(), _call("ct-12", "2026-11-24T09:45:00Z", EC2_KEY, YANDEX_RU)])
    issue, use = found.alerts[0]["evidence"]
    assert issue["service"] == "ec2.amazonaws.com" and "ip" not in issue
    assert use["ip"] == YANDEX_RU and "service" not in use


# -- organisation trail copies are one request ----------------------------------------------------


def _copy_for(record: dict[str, Any], account: str, event_id: str) -> dict[str, Any]:
    """The copy of ``record`` delivered to ``account`` (own eventID and recipientAccountId)."""
    return {**record, "eventID": event_id, "recipientAccountId": account, "sharedEventID": "shared-7"}


def test_organisation_trail_copies_of_one_call_are_not_a_duplicate_request() -> None:
    call = _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE)
    lines = [_deploy_issue(), _copy_for(call, ACCOUNT, "ct-21a"), _copy_for(call, "444455556666", "ct-21b")]
    found = detect_lines(lines)
    assert found.alerts == []
    assert found.summary.engine["duplicates"] == 1  # the second copy is the same event


def test_a_request_id_accepted_again_later_is_still_a_duplicate_request() -> None:
    first = _call("ct-21", "2026-11-24T09:30:00Z", DEPLOY_KEY, TELEKOM_DE)
    again = {**_call("ct-22", "2026-11-24T09:32:00Z", DEPLOY_KEY, TELEKOM_DE), "requestID": first["requestID"]}
    found = detect_lines([_deploy_issue(), first, again])
    assert found.hits == [("replay.duplicate_request", DEPLOY_KEY)]
