"""Kubernetes audit adapter: exact canonical events from audit.k8s.io/v1 Events."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalizer
from schemas.events import Binding, CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.k8s import K8sAuditFormat
from tests.fuzzing import FUZZ, JSON_VALUES, NOW, assert_accounted_for, json_dumps, mutated_lines, normalize

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats" / "k8s.jsonl"
LINES = SAMPLES.read_bytes().splitlines()
UTC = timezone.utc
JTI = "JTI=e5cc2810-ba79-41cc-9034-ebd1215a7941"
SECRET = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkszIn0.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMifQ.c2lnbmF0dXJlLXNlY3JldA"
ISSUED = "authentication.kubernetes.io/issued-credential-id"
CRED = "authentication.kubernetes.io/credential-id"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _issue() -> dict[str, Any]:
    return orjson.loads(LINES[0])


def _use() -> dict[str, Any]:
    return orjson.loads(LINES[1])


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = K8sAuditFormat().to_events(raw, ctx)
    return event


# -- the two documented records ---------------------------------------------------------
def test_token_request_maps_to_an_issued_pod_bound_service_account_token(ctx: AdapterContext) -> None:
    t = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    assert _one(_issue(), ctx) == CanonicalEvent(
        event_id="k8s:a-1@2026-11-24T09:00:00.000000Z",
        kind=EventKind.ISSUED,
        time=t,
        source="k8s",
        token=TokenRef(
            id=JTI,
            type=TokenType.SERVICE_ACCOUNT,
            issued_at=t,
            # 3607 s is the kubelet's default, which the apiserver extends up to a year:
            # the reported 10:00:07 is only the stale-token warning threshold.
            expires_at=t + timedelta(days=365),
            binding=Binding(method="pod", value="pod-uid-1"),
        ),
        subject=Subject(id="system:serviceaccount:payments:ledger", kind="service"),
        client_id="system:node:node-7",
        session_id="pod:pod-uid-1",
        network=Network(ip="10.20.0.7", user_agent="kubelet/v1.31.2"),
        request=Request(
            id="a-1", method="create", resource="/api/v1/namespaces/payments/serviceaccounts/ledger/token", status=201
        ),
        outcome=Outcome(result="success"),
    )


def test_request_with_the_token_maps_to_a_used_event(ctx: AdapterContext) -> None:
    assert _one(_use(), ctx) == CanonicalEvent(
        event_id="k8s:a-2@2026-11-24T09:01:00.000000Z",
        kind=EventKind.USED,
        time=datetime(2026, 11, 24, 9, 1, tzinfo=UTC),
        source="k8s",
        token=TokenRef(id=JTI, type=TokenType.SERVICE_ACCOUNT, binding=Binding(method="pod", value="pod-uid-1")),
        subject=Subject(id="system:serviceaccount:payments:ledger", kind="service"),
        client_id="pod:payments/ledger-6f9c7d-x2x4q",
        session_id="pod:pod-uid-1",
        network=Network(ip="10.20.3.41", user_agent="ledger/1.4"),
        request=Request(id="a-2", method="list", resource="/api/v1/namespaces/payments/secrets", status=200),
        outcome=Outcome(result="success"),
    )


def test_issued_and_used_name_the_token_alike(ctx: AdapterContext) -> None:
    issued, used = _one(_issue(), ctx), _one(_use(), ctx)
    assert issued.token is not None and used.token is not None
    assert issued.token.id == used.token.id == JTI
    assert issued.session_id == used.session_id and issued.token.binding == used.token.binding
    assert issued.subject == used.subject


def test_issued_token_string_is_never_kept(ctx: AdapterContext) -> None:
    raw = _issue()
    raw["level"] = "RequestResponse"
    raw["responseObject"]["status"]["token"] = SECRET
    adapter = K8sAuditFormat()
    [event] = adapter.to_events(raw, ctx)
    assert SECRET not in event.model_dump_json()
    assert SECRET not in repr(adapter.__dict__)


# -- expiry -----------------------------------------------------------------------------
def _token_request(seconds: int | None, *, bound: str | None = "Pod", audiences: list[str] | None = None,
                   status: str | None = None) -> dict[str, Any]:
    raw = _issue()
    spec = raw["requestObject"]["spec"]
    spec["audiences"] = audiences
    if seconds is None:
        del spec["expirationSeconds"]
    else:
        spec["expirationSeconds"] = seconds
    if bound is None:
        del spec["boundObjectRef"]
    else:
        spec["boundObjectRef"]["kind"] = bound
    if status is None:
        del raw["responseObject"]
    else:
        raw["responseObject"]["status"]["expirationTimestamp"] = status
    return raw


@pytest.mark.parametrize(
    ("raw", "expires"),
    [
        # An explicit projected token (or `kubectl create token`): the reported expiry is the real one.
        (_token_request(3600, audiences=["vault"], status="2026-11-24T10:00:00Z"), datetime(2026, 11, 24, 10, tzinfo=UTC)),
        # No response body (Request level): request time + the requested lifetime.
        (_token_request(7200), datetime(2026, 11, 24, 11, tzinfo=UTC)),
        # 3607 s but not pod-bound: the apiserver does not extend it.
        (_token_request(3607, bound=None, status="2026-11-24T10:00:07Z"), datetime(2026, 11, 24, 10, 0, 7, tzinfo=UTC)),
        (_token_request(3607, bound="Secret"), datetime(2026, 11, 24, 10, 0, 7, tzinfo=UTC)),
        # 3607 s, pod-bound, bodies partly missing: the one-year upper bound.
        (_token_request(3607), datetime(2027, 11, 24, 9, tzinfo=UTC)),
        # No lifetime known at all.
        (_token_request(None, bound=None), None),
    ],
)
def test_expiry_is_the_real_one_or_a_sound_upper_bound(ctx: AdapterContext, raw: dict, expires: datetime | None) -> None:
    event = _one(raw, ctx)
    assert event.token is not None and event.token.expires_at == expires


def test_metadata_level_token_request_keeps_id_and_upper_bound_from_reported_lifetime(ctx: AdapterContext) -> None:
    raw = _issue()
    del raw["requestObject"]
    raw["responseObject"]["status"]["expirationTimestamp"] = "2026-11-24T10:00:07.004Z"
    event = _one(raw, ctx)
    assert event.token is not None
    assert event.token.expires_at == datetime(2027, 11, 24, 9, tzinfo=UTC)
    assert event.token.binding is None and event.session_id is None
    raw = _issue()
    del raw["requestObject"], raw["responseObject"]
    event = _one(raw, ctx)
    assert event.token == TokenRef(
        id=JTI, type=TokenType.SERVICE_ACCOUNT, issued_at=datetime(2026, 11, 24, 9, tzinfo=UTC)
    )


def test_audiences_are_kept(ctx: AdapterContext) -> None:
    event = _one(_token_request(3600, audiences=["vault", "sts.amazonaws.com"]), ctx)
    assert event.token is not None and event.token.audience == ("vault", "sts.amazonaws.com")


# -- what is skipped ----------------------------------------------------------------------
@pytest.mark.parametrize("stage", ["RequestReceived", "ResponseStarted"])
def test_non_terminal_stages_are_skipped(ctx: AdapterContext, stage: str) -> None:
    for raw in (_issue(), _use()):
        raw["stage"] = stage
        with pytest.raises(UnsupportedEventType) as exc:
            K8sAuditFormat().to_events(raw, ctx)
        assert exc.value.event_type == f"stage:{stage}"


def test_panic_stage_is_a_failed_use(ctx: AdapterContext) -> None:
    raw = {**_use(), "stage": "Panic"}
    del raw["responseStatus"]
    event = _one(raw, ctx)
    assert event.kind is EventKind.USED
    assert event.outcome == Outcome(result="failure", reason="apiserver panic (HTTP 500)")
    assert event.request is not None and event.request.status == 500


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"annotations": {"authorization.k8s.io/decision": "allow"}}, "tokenrequest-without-credential-id"),
        ({"responseStatus": {"code": 403}, "annotations": {"authorization.k8s.io/decision": "forbid"}},
         "tokenrequest-failed"),
        ({"stage": "Panic"}, "tokenrequest-failed"),
    ],
)
def test_unusable_token_requests_are_skipped(ctx: AdapterContext, change: dict, label: str) -> None:
    with pytest.raises(UnsupportedEventType) as exc:
        K8sAuditFormat().to_events({**_issue(), **change}, ctx)
    assert exc.value.event_type == label


def _node_get_pods() -> dict[str, Any]:
    raw = _use()
    raw.update(
        verb="get", requestURI="/api/v1/namespaces/payments/pods/ledger-6f9c7d-x2x4q",
        objectRef={"resource": "pods", "namespace": "payments", "name": "ledger-6f9c7d-x2x4q", "apiVersion": "v1"},
        user={"username": "system:node:node-7", "groups": ["system:nodes", "system:authenticated"]},
        sourceIPs=["10.20.0.7"], userAgent="kubelet/v1.31.2",
    )
    return raw


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({}, "get pods"),
        ({"objectRef": {"resource": "pods", "subresource": "status", "namespace": "payments"}}, "get pods/status"),
        ({"user": {"username": "system:anonymous"}, "responseStatus": {"code": 403},
          "objectRef": {"resource": "x9f3k2", "namespace": "kube-system"}}, "get rejected"),
        ({"objectRef": None, "requestURI": "/healthz"}, "get non-resource"),
        ({"verb": "BREW"}, "other pods"),
        # An x509 client certificate's credential id is not a token.
        ({"user": {"username": "system:node:node-7", "extra": {CRED: ["X509SHA256=9f8e7d"]}}}, "get pods"),
        # A legacy secret-based token: no credential id.
        ({"user": {"username": "system:serviceaccount:payments:ledger", "extra": {}}}, "get pods"),
    ],
)
def test_requests_without_a_token_credential_id_are_skipped_with_a_bounded_label(
    ctx: AdapterContext, change: dict, label: str
) -> None:
    with pytest.raises(UnsupportedEventType) as exc:
        K8sAuditFormat().to_events({**_node_get_pods(), **change}, ctx)
    assert exc.value.event_type == label


def test_older_audit_api_versions_are_skipped(ctx: AdapterContext) -> None:
    raw = {**_use(), "apiVersion": "audit.k8s.io/v1beta1"}
    assert K8sAuditFormat().matches(raw)
    with pytest.raises(UnsupportedEventType, match="apiVersion:audit.k8s.io/v1beta1"):
        K8sAuditFormat().to_events(raw, ctx)


# -- uses: outcome, address, ids ---------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "outcome"),
    [
        ({"responseStatus": {"code": 403}, "annotations": {"authorization.k8s.io/decision": "forbid"}},
         Outcome(result="failure", reason="authorization forbid (HTTP 403)")),
        ({"responseStatus": {"code": 404}}, Outcome(result="failure", reason="HTTP 404")),
        ({"responseStatus": None}, Outcome(result="unknown", reason="no responseStatus")),
        ({"annotations": {"authentication.k8s.io/stale-token":
                          "subject: system:serviceaccount:payments:ledger, seconds after warning threshold: 3593"}},
         Outcome(result="success", reason="stale token (past its warn-after time)")),
    ],
)
def test_use_outcome(ctx: AdapterContext, change: dict, outcome: Outcome) -> None:
    assert _one({**_use(), **change}, ctx).outcome == outcome


def test_caller_address_is_the_connection_peer_not_a_forwarded_header(ctx: AdapterContext) -> None:
    # X-Forwarded-For: 10.20.3.41 sent by a client connecting from 88.198.10.10.
    event = _one({**_use(), "sourceIPs": ["10.20.3.41", "88.198.10.10"]}, ctx)
    assert event.network.ip == "88.198.10.10"


def test_event_id_is_stable_for_redelivery_but_a_reused_audit_id_is_a_new_event(ctx: AdapterContext) -> None:
    adapter = K8sAuditFormat()
    first = adapter.to_events(_use(), ctx)[0]
    again = adapter.to_events(orjson.loads(orjson.dumps(_use())), ctx)[0]
    # A client may send the same Audit-ID header on every request.
    later = adapter.to_events({**_use(), "requestReceivedTimestamp": "2026-11-24T09:05:00.000000Z"}, ctx)[0]
    assert first.event_id == again.event_id
    assert later.event_id != first.event_id
    assert later.request is not None and later.request.id == "a-2"


def test_long_client_chosen_audit_id_is_hashed(ctx: AdapterContext) -> None:
    event = _one({**_use(), "auditID": "x" * 3000}, ctx)
    assert event.request is not None and event.request.id is not None
    assert event.request.id.startswith("h:") and len(event.event_id) < 100


def test_non_utc_offsets_are_normalised(ctx: AdapterContext) -> None:
    event = _one({**_use(), "requestReceivedTimestamp": "2026-11-24T10:01:00.000000+01:00"}, ctx)
    assert event.time == datetime(2026, 11, 24, 9, 1, tzinfo=UTC)
    assert event.event_id == "k8s:a-2@2026-11-24T09:01:00.000000Z"


def test_token_request_made_with_a_tracked_token_is_a_use_and_an_issuance(ctx: AdapterContext) -> None:
    raw = _issue()
    raw["user"] = {"username": "system:serviceaccount:ci:deployer",
                   "extra": {CRED: ["JTI=11111111-2222-3333-4444-555555555555"]}}
    raw["sourceIPs"] = ["10.20.5.9"]
    used, issued = K8sAuditFormat().to_events(raw, ctx)
    assert (used.kind, issued.kind) == (EventKind.USED, EventKind.ISSUED)
    assert used.event_id == "k8s:a-1@2026-11-24T09:00:00.000000Z#used"
    assert issued.event_id == "k8s:a-1@2026-11-24T09:00:00.000000Z"
    assert used.token == TokenRef(id="JTI=11111111-2222-3333-4444-555555555555", type=TokenType.SERVICE_ACCOUNT)
    assert used.client_id is None and used.session_id is None
    assert issued.token is not None and issued.token.id == JTI
    assert issued.client_id == "system:serviceaccount:ci:deployer"


def test_denied_token_request_made_with_a_tracked_token_is_still_a_use(ctx: AdapterContext) -> None:
    raw = {**_issue(), "responseStatus": {"code": 403}, "annotations": {"authorization.k8s.io/decision": "forbid"}}
    raw["user"] = {"username": "system:serviceaccount:payments:ledger", "extra": {CRED: [JTI]}}
    [used] = K8sAuditFormat().to_events(raw, ctx)
    assert used.kind is EventKind.USED and used.event_id.endswith("#used")
    assert used.outcome == Outcome(result="failure", reason="authorization forbid (HTTP 403)")


def test_external_jwt_user_with_jti_is_an_access_token_use(ctx: AdapterContext) -> None:
    raw = _use()
    raw["user"] = {"username": "oidc:alice@example.org", "extra": {CRED: ["JTI=0b7c1d2e"]}}
    event = _one(raw, ctx)
    assert event.token == TokenRef(id="JTI=0b7c1d2e", type=TokenType.ACCESS)
    assert event.subject == Subject(id="oidc:alice@example.org", kind="user")
    assert event.client_id is None


# -- detection ------------------------------------------------------------------------------
def test_matches_only_audit_events() -> None:
    adapter = K8sAuditFormat()
    assert all(adapter.matches(orjson.loads(line)) for line in LINES)
    assert not adapter.matches({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": []})
    assert not adapter.matches({"kind": "Event", "apiVersion": "v1", "reason": "Scheduled"})  # core/v1 Event
    assert not adapter.matches({"kind": "Event", "apiVersion": 1})
    assert FORMATS["k8s"] is not None and isinstance(FORMATS["k8s"], K8sAuditFormat)


# -- malformed ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({**_use(), "stage": "Whenever"}, "stage"),
        ({**_use(), "requestReceivedTimestamp": "yesterday"}, "requestReceivedTimestamp"),
        ({**_use(), "requestReceivedTimestamp": "2026-11-24T09:01:00"}, "no timezone"),
        ({k: v for k, v in _use().items() if k != "requestReceivedTimestamp"}, "requestReceivedTimestamp"),
        ({k: v for k, v in _use().items() if k != "auditID"}, "auditID"),
        ({**_use(), "verb": 7}, "verb"),
        ({**_use(), "user": {"username": "x", "extra": {CRED: "JTI=not-a-list"}}}, "user.extra"),
        ({**_use(), "sourceIPs": "10.0.0.1"}, "sourceIPs"),
        ({**_use(), "responseStatus": {"code": "ok"}}, "responseStatus.code"),
        ({**_use(), "annotations": {"authorization.k8s.io/decision": 1}}, "annotations"),
        ({**_use(), "user": {"extra": {CRED: [JTI]}}}, "user.username"),
        ({**_issue(), "objectRef": {"resource": "serviceaccounts", "subresource": "token"}}, "objectRef.namespace"),
        ({**_issue(), "requestObject": {"spec": {"expirationSeconds": "an hour"}}}, "requestObject.spec.expirationSeconds"),
        ({**_issue(), "responseObject": {"status": {"expirationTimestamp": "soon"}}},
         "responseObject.status.expirationTimestamp"),
        ({**_issue(), "responseObject": {"status": {"expirationTimestamp": "2026-11-24T08:00:00Z"}}},
         "before the request"),
        ({**_issue(), "annotations": {ISSUED: "JTI=" + "9" * 600}}, "longer than 512"),
    ],
)
def test_malformed_records_raise_invalid_record_with_reason(ctx: AdapterContext, record: dict, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        K8sAuditFormat().to_events(record, ctx)


# -- hostile input through the normalizer -------------------------------------------------------
@FUZZ
@given(mutated_lines(LINES, most=3, dumps=json_dumps, values=JSON_VALUES), st.booleans(), st.integers(0, 2000))
def test_mutated_and_truncated_samples_never_raise(line: bytes, truncate: bool, cut: int) -> None:
    if truncate:
        line = line[: cut % (len(line) + 1)]
    assert_accounted_for(normalize(line, InputConfig(max_line_bytes=100_000)))


def test_secret_in_a_dead_lettered_token_request_is_redacted(hasher) -> None:
    raw = copy.deepcopy(_issue())
    raw["responseObject"]["status"]["token"] = SECRET
    raw["responseObject"]["status"]["expirationTimestamp"] = "never"
    record = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(raw), "x:1").dead_letter
    assert record is not None and "expirationTimestamp" in record["reason"]
    assert SECRET not in orjson.dumps(record).decode()


def test_a_caller_address_that_is_no_ip_is_dropped_and_counted_not_fatal(ctx: AdapterContext) -> None:
    event = _one({**_use(), "sourceIPs": ["not-an-ip"]}, ctx)
    assert event.network.ip is None and event.token is not None
    assert ctx.repairs["k8s.sourceIPs: not an IP address (dropped)"] == 1
