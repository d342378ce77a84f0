"""Kubernetes deletions of pods and service accounts: the events that end their tokens.

Records are ``audit.k8s.io/v1`` ``Event``s as the Kubernetes API reference documents
them (``objectRef`` an ``ObjectReference``: resource, namespace, name, uid, apiGroup,
apiVersion, subresource; ``responseStatus`` a ``Status``; ``requestObject`` /
``responseObject`` logged only at the ``Request``/``RequestResponse`` levels: Kubernetes
"Auditing", audit policy levels). A delete's response is the deleted object, a pod
marked with ``metadata.deletionTimestamp`` (request time + grace period) and
``deletionGracePeriodSeconds``, or a ``Status`` whose ``details`` name the object's uid.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given

from pipeline.synthetic.world import emit
from schemas.events import CanonicalEvent, EventKind, Outcome, Request, Revocation, Subject
from schemas.sources import AdapterContext, InvalidRecord, UnsupportedEventType, detect_format
from schemas.sources.k8s import K8sAuditFormat
from schemas.sources.k8s_aks import AksAuditFormat
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

T0 = 1795510800.0  # 2026-11-24T09:00:00Z
UTC = timezone.utc
POD_UID = "1f2e3d4c-5b6a-4798-8a7b-6c5d4e3f2a1b"
ADMIN = "alice@example.org"
POD_URI = "/api/v1/namespaces/payments/pods/ledger-6f9c7d-x2x4q"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _delete_pod(grace_s: float = 30.0, uid: str | None = POD_UID) -> dict[str, Any]:
    return emit.k8s_delete("d-1", T0, "payments", "pods", "ledger-6f9c7d-x2x4q", uid, ADMIN, "10.0.9.9", grace_s)


def _delete_account() -> dict[str, Any]:
    return emit.k8s_delete("d-2", T0, "payments", "serviceaccounts", "ledger", "sa-uid-1", ADMIN, "10.0.9.9")


def _events(raw: dict[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
    return K8sAuditFormat().to_events(raw, ctx)


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(T0 + seconds, tz=UTC)


def test_pod_deletion_revokes_the_pod_session_when_its_grace_period_ends(ctx: AdapterContext) -> None:
    assert _events(_delete_pod(), ctx) == [CanonicalEvent(
        event_id="k8s:d-1@2026-11-24T09:00:00.000000Z", kind=EventKind.REVOKED, time=_at(30), source="k8s",
        session_id=f"pod:{POD_UID}", revocation=Revocation(target="session", actor=ADMIN),
        request=Request(id="d-1", method="delete", resource=POD_URI, status=200), outcome=Outcome(result="success"),
    )]


def test_an_immediate_deletion_revokes_at_the_request(ctx: AdapterContext) -> None:
    """A deletionTimestamp not after the request (grace 0, or the kubelet's final delete)."""
    [event] = _events(_delete_pod(grace_s=0), ctx)
    assert event.time == _at(0)


def test_a_status_response_names_the_uid(ctx: AdapterContext) -> None:
    raw = _delete_pod()
    raw["responseObject"] = {"kind": "Status", "apiVersion": "v1", "status": "Success",
                             "details": {"name": "ledger-6f9c7d-x2x4q", "kind": "pods", "uid": POD_UID}}
    [event] = _events(raw, ctx)
    assert (event.session_id, event.time) == (f"pod:{POD_UID}", _at(0))


def test_object_ref_uid_is_used_when_no_body_is_logged(ctx: AdapterContext) -> None:
    raw = _delete_pod(uid=None)
    raw["objectRef"]["uid"] = POD_UID
    assert _events(raw, ctx)[0].session_id == f"pod:{POD_UID}"


@pytest.mark.parametrize("body", [None, "skipped-too-big-size-object"])
def test_a_metadata_level_pod_deletion_names_no_pod_and_is_skipped(ctx: AdapterContext, body: str | None) -> None:
    raw = _delete_pod(uid=None)
    if body is not None:
        raw["responseObject"] = body
    with pytest.raises(UnsupportedEventType) as exc:
        _events(raw, ctx)
    assert exc.value.event_type == "delete pods without uid"


def test_service_account_deletion_disables_its_subject(ctx: AdapterContext) -> None:
    assert _events(_delete_account(), ctx) == [CanonicalEvent(
        event_id="k8s:d-2@2026-11-24T09:00:00.000000Z", kind=EventKind.PRINCIPAL_DISABLED, time=_at(0),
        source="k8s", subject=Subject(id="system:serviceaccount:payments:ledger", kind="service"),
        request=Request(id="d-2", method="delete", resource="/api/v1/namespaces/payments/serviceaccounts/ledger",
                        status=200),
        outcome=Outcome(result="success"),
    )]


@pytest.mark.parametrize(
    ("change", "label"),
    [
        ({"responseStatus": {"code": 404}}, "delete rejected"),
        ({"responseStatus": {"code": 403}}, "delete rejected"),
        ({"verb": "deletecollection", "responseStatus": {"code": 200}}, "deletecollection pods"),
        ({"objectRef": {"resource": "pods", "subresource": "ephemeralcontainers", "namespace": "payments",
                        "name": "ledger-6f9c7d-x2x4q"}}, "delete pods/ephemeralcontainers"),
        ({"objectRef": {"resource": "pods", "apiGroup": "metrics.k8s.io", "namespace": "payments",
                        "name": "ledger-6f9c7d-x2x4q"}}, "delete pods"),
        ({"stage": "RequestReceived"}, "stage:RequestReceived"),
    ],
)
def test_deletions_that_did_not_happen_or_are_not_one_object_are_skipped(
    ctx: AdapterContext, change: dict, label: str
) -> None:
    with pytest.raises(UnsupportedEventType) as exc:
        _events({**_delete_pod(), **change}, ctx)
    assert exc.value.event_type == label


def test_a_deletion_made_with_a_service_account_token_is_also_its_use(ctx: AdapterContext) -> None:
    raw = _delete_pod()
    raw["user"] = {"username": "system:serviceaccount:ci:deployer", "extra": {
        "authentication.kubernetes.io/credential-id": ["JTI=0a1b2c3d-0000-4000-8000-00000000ci01"]}}
    used, revoked = _events(raw, ctx)
    assert (used.kind, used.event_id, used.token and used.token.id) == (
        EventKind.USED, "k8s:d-1@2026-11-24T09:00:00.000000Z#used", "JTI=0a1b2c3d-0000-4000-8000-00000000ci01")
    assert (revoked.kind, revoked.event_id, revoked.revocation) == (
        EventKind.REVOKED, "k8s:d-1@2026-11-24T09:00:00.000000Z",
        Revocation(target="session", actor="system:serviceaccount:ci:deployer"))
    raw["responseObject"] = None  # and at Metadata level, the use alone
    assert [e.kind for e in _events(raw, ctx)] == [EventKind.USED]


def test_a_malformed_deletion_mark_is_invalid(ctx: AdapterContext) -> None:
    raw = _delete_pod()
    raw["responseObject"]["metadata"]["deletionTimestamp"] = "2026-11-24T09:00:30"
    with pytest.raises(InvalidRecord, match="deletionTimestamp has no timezone"):
        _events(raw, ctx)
    raw["responseObject"]["metadata"]["deletionTimestamp"] = "soon"
    with pytest.raises(InvalidRecord, match="responseObject"):
        _events(raw, ctx)


def test_aks_diagnostic_record_of_a_pod_deletion_is_the_same_revocation(ctx: AdapterContext) -> None:
    cluster = "/SUBSCRIPTIONS/0B1F/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD"
    record = {"time": "2026-11-24T09:00:00.1000000Z", "resourceId": cluster, "category": "kube-audit",
              "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
              "properties": {"log": orjson.dumps(_delete_pod()).decode(), "pod": "kube-apiserver-7d9f",
                             "stream": "stdout"}}
    assert detect_format(record).name == "aks"
    [native] = _events(_delete_pod(), ctx)
    assert AksAuditFormat().to_events(record, ctx) == [
        native.model_copy(update={"source": "aks", "tenant": cluster.lower()})]


LINES = [orjson.dumps(_delete_pod()), orjson.dumps(_delete_account())]


@FUZZ
@given(mutated_lines(LINES))
def test_mutated_deletions_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)


@FUZZ
@given(cut_lines(LINES))
def test_truncated_deletions_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)
