"""GKE audit adapter: Cloud Audit Logs entries of service k8s.io.

Fixtures (tests/data/formats/gke.jsonl) follow Google's documentation: the ``LogEntry``
(``insertId``, ``timestamp``, ``labels``, ``operation``, ``resource`` ``k8s_cluster``) with an
``AuditLog`` ``protoPayload`` (``serviceName``, ``methodName``, ``resourceName``,
``authenticationInfo.principalEmail``, ``requestMetadata.callerIp``, ``status``, ``request``,
``response``), as "GKE audit logging information" and "Understand audit logs" describe.
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalizer
from schemas.events import Binding, CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, UnsupportedEventType, detect_format
from schemas.sources.k8s_gke import GkeAuditFormat
from tests.fuzzing import FUZZ, JSON_VALUES, NOW, assert_accounted_for, json_dumps, mutated_lines, normalize

LINES = (Path(__file__).resolve().parents[1] / "data" / "formats" / "gke.jsonl").read_bytes().splitlines()
UTC = timezone.utc
JTI = "JTI=9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
POD_UID = "8f7e6d5c-4b3a-4921-8877-665544332211"
SECRET = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.Z2tlLXNpZ25hdHVyZQ"  # in the fixture


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def token_request() -> dict[str, Any]:
    return orjson.loads(LINES[0])


# A pod's request with its service-account token: GKE names the principal, not the token.
# (Kept out of the fixture file, whose lines all map to events.)
SA_USE = orjson.dumps({
    "protoPayload": {
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalEmail": "system:serviceaccount:billing:invoicer"},
        "authorizationInfo": [{"granted": True, "permission": "io.k8s.core.v1.secrets.get",
                               "resource": "core/v1/namespaces/billing/secrets/invoicer-db"}],
        "methodName": "io.k8s.core.v1.secrets.get",
        "requestMetadata": {"callerIp": "10.4.2.9", "callerSuppliedUserAgent": "invoicer/1.8"},
        "resourceName": "core/v1/namespaces/billing/secrets/invoicer-db",
        "serviceName": "k8s.io",
        "status": {},
    },
    "insertId": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
    "resource": {"type": "k8s_cluster",
                 "labels": {"project_id": "shop-prod", "location": "europe-west1", "cluster_name": "prod"}},
    "timestamp": "2026-11-24T09:03:00.000000Z",
    "labels": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": "RBAC: allowed by RoleBinding"},
    "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Fdata_access",
    "operation": {"id": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d", "producer": "k8s.io", "first": True, "last": True},
    "receiveTimestamp": "2026-11-24T09:03:00.812345678Z",
})


def sa_use() -> dict[str, Any]:
    return orjson.loads(SA_USE)


def events(raw: dict[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
    return GkeAuditFormat().to_events(raw, ctx)


AT = datetime(2026, 11, 24, 9, 0, 0, 250000, tzinfo=UTC)
EXPECTED_ISSUED = CanonicalEvent(
    event_id="k8s:2f1e0d9c-8b7a-4654-a321-0fedcba98765@2026-11-24T09:00:00.250000Z",
    kind=EventKind.ISSUED, time=AT, source="gke", tenant="projects/shop-prod/locations/europe-west1/clusters/prod",
    token=TokenRef(
        id=JTI, type=TokenType.SERVICE_ACCOUNT, issued_at=AT,
        expires_at=datetime(2026, 11, 24, 10, 0, tzinfo=UTC),  # an explicit 3600 s: reported expiry
        audience=("https://container.googleapis.com/v1/projects/shop-prod/locations/europe-west1/clusters/prod",),
        binding=Binding(method="pod", value=POD_UID),
    ),
    subject=Subject(id="system:serviceaccount:billing:invoicer", kind="service"),
    client_id="system:node:gke-prod-default-pool-1a2b3c4d-x7k9",
    session_id=f"pod:{POD_UID}",
    network=Network(ip="10.128.0.12", user_agent="kubelet/v1.31.4 (linux/amd64) kubernetes/gke"),
    request=Request(id="2f1e0d9c-8b7a-4654-a321-0fedcba98765", method="create",
                    resource="core/v1/namespaces/billing/serviceaccounts/invoicer/token"),
    outcome=Outcome(result="success"),
)


def test_token_request_is_an_issued_pod_bound_token(ctx: AdapterContext) -> None:
    assert events(token_request(), ctx) == [EXPECTED_ISSUED]


def test_the_issued_token_string_is_never_kept(ctx: AdapterContext) -> None:
    [issued] = events(token_request(), ctx)
    assert SECRET not in issued.model_dump_json()


def test_without_the_request_body_the_token_is_unbound_and_its_reported_expiry_kept(ctx: AdapterContext) -> None:
    raw = token_request()
    del raw["protoPayload"]["request"]
    [issued] = events(raw, ctx)
    assert issued.token is not None and issued.token.binding is None and issued.session_id is None
    assert issued.token.expires_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_the_insert_id_names_the_request_when_operation_is_absent(ctx: AdapterContext) -> None:
    raw = token_request()
    del raw["operation"]
    assert events(raw, ctx)[0].event_id == EXPECTED_ISSUED.event_id


@pytest.mark.parametrize(("change", "label"), [
    (lambda r: r["protoPayload"].update(status={"code": 7, "message": "forbidden"}), "tokenrequest-failed"),
    (lambda r: r["labels"].pop("authentication.kubernetes.io/issued-credential-id"), "tokenrequest-without-credential-id"),
    (lambda r: r["protoPayload"].update(serviceName="iam.googleapis.com",
                                        methodName="google.iam.admin.v1.CreateServiceAccountKey"),
     "service:iam.googleapis.com"),
])
def test_unusable_entries_are_skipped_with_a_label(ctx: AdapterContext, change: Any, label: str) -> None:
    raw = token_request()
    change(raw)
    with pytest.raises(UnsupportedEventType) as info:
        events(raw, ctx)
    assert info.value.event_type == label


def test_a_service_account_request_names_no_token_and_is_skipped(ctx: AdapterContext) -> None:
    with pytest.raises(UnsupportedEventType) as info:
        events(sa_use(), ctx)
    assert info.value.event_type == "serviceaccount request without credential id"
    raw = sa_use()
    raw["protoPayload"]["authenticationInfo"]["principalEmail"] = "alice@example.org"
    with pytest.raises(UnsupportedEventType) as info:
        events(raw, ctx)
    assert info.value.event_type == "user or node request"


def test_only_audit_log_entries_match_and_only_as_gke() -> None:
    for raw in (token_request(), sa_use()):
        assert [name for name, fmt in FORMATS.items() if fmt.matches(raw)] == ["gke"]
        assert detect_format(raw).name == "gke"
    fmt = GkeAuditFormat()
    assert not fmt.matches({"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.Other"}})
    assert not fmt.matches({"jsonPayload": {"message": "x"}, "timestamp": "2026-11-24T09:00:00Z"})
    assert not fmt.matches({"protoPayload": "text"})


@pytest.mark.parametrize(("change", "reason"), [
    (lambda r: r["protoPayload"].update(resourceName="core/v1/namespaces/billing/pods/x"),
     r"gke: protoPayload.resourceName: not a service account's token subresource"),
    (lambda r: r.pop("timestamp"), r"gke: timestamp: Field required"),
    (lambda r: r.update(timestamp="2026-11-24T09:00:00"), r"gke: timestamp has no timezone"),
    (lambda r: (r.pop("operation"), r.pop("insertId")), r"gke: operation.id / insertId: missing"),
])
def test_malformed_entries_raise_invalid_record_with_reason(ctx: AdapterContext, change: Any, reason: str) -> None:
    raw = token_request()
    change(raw)
    with pytest.raises(InvalidRecord, match=reason):
        events(raw, ctx)


def test_a_too_long_user_agent_is_cut_not_fatal(hasher) -> None:
    raw = token_request()
    raw["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"] = "U" * 9000
    normalizer = Normalizer(hasher, clock=lambda: NOW)
    result = normalizer.normalize(orjson.dumps(raw), "x:1")
    assert result.dead_letter is None
    [issued] = result.events
    assert issued.network.user_agent is not None and len(issued.network.user_agent) == 2048
    assert normalizer.repairs == Counter({"gke.protoPayload.requestMetadata.callerSuppliedUserAgent: cut": 1})


def test_a_caller_that_is_no_ip_is_dropped_and_counted(ctx: AdapterContext) -> None:
    raw = token_request()
    raw["protoPayload"]["requestMetadata"]["callerIp"] = "gce-internal-ip"
    [issued] = events(raw, ctx)
    assert issued.network.ip is None and issued.token is not None
    assert ctx.repairs == Counter({"gke.sourceIPs: not an IP address (dropped)": 1})


def test_the_token_in_a_dead_lettered_entry_is_redacted(hasher) -> None:
    raw = token_request()
    raw["protoPayload"]["response"]["status"]["expirationTimestamp"] = "never"
    result = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(raw), "x:1")
    assert result.dead_letter is not None and "expirationTimestamp" in result.dead_letter["reason"]
    assert SECRET not in orjson.dumps(result.dead_letter).decode()


def test_a_pubsub_or_storage_line_is_the_entry_itself(hasher) -> None:
    normalizer = Normalizer(hasher, clock=lambda: NOW)
    results = [normalizer.normalize(line, f"sink:{n}") for n, line in enumerate([*LINES, SA_USE])]
    assert [r.events for r in results] == [[EXPECTED_ISSUED], []]
    assert [r.skipped_type for r in results] == [None, "serviceaccount request without credential id"]
    assert all(r.dead_letter is None and r.format == "gke" for r in results)


@FUZZ
@given(mutated_lines([*LINES, SA_USE], most=3, dumps=json_dumps, values=JSON_VALUES), st.booleans(), st.integers(0, 3000))
def test_mutated_and_truncated_samples_never_raise(line_: bytes, truncate: bool, cut: int) -> None:
    if truncate:
        line_ = line_[: cut % (len(line_) + 1)]
    assert_accounted_for(normalize(line_, InputConfig(max_line_bytes=100_000)))


def test_the_entry_is_never_rewritten(ctx: AdapterContext) -> None:
    raw = token_request()
    before = copy.deepcopy(raw)
    events(raw, ctx)
    assert raw == before  # the entry is read, never rewritten
