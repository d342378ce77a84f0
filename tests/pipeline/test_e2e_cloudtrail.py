"""CloudTrail end to end: raw records through normalize, real enrichment and every detector.

Two attacks on temporary credentials, each with its benign twin:
- EC2 instance-profile credentials (issued to ec2.amazonaws.com, so bound to the AWS
  network) used from an address outside AWS: the GuardDuty "credential exfiltration"
  pattern -> replay.binding_mismatch.
- credentials accepted after their expiration plus clock skew -> post_revocation_use.after_expiry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.detect_helpers import detect_lines

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "formats" / "cloudtrail.jsonl"
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
    assert "cloudtrail:ct-3" in {item["event_id"] for item in alert["evidence"]}
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
    assert "cloudtrail:ct-22" in {item["event_id"] for item in found.alerts[0]["evidence"]}
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
