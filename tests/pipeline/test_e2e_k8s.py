"""Kubernetes audit lines end to end: a stolen pod token and an unchecked expiry alert, their twins do not."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.detect_helpers import detect_lines

JTI = "JTI=e5cc2810-ba79-41cc-9034-ebd1215a7941"
VAULT_JTI = "JTI=7d1f0b7e-3c55-4a8e-9b57-0c2f5f6e9a10"
POD_IP = "10.20.3.41"
NODE_IP = "10.20.0.7"
SECRET = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkszIn0.eyJpc3MiOiJodHRwczovL2t1YmVybmV0ZXMifQ.c2lnbmF0dXJlLXNlY3JldA"


def token_request(audit_id: str, at: str, jti: str, *, seconds: int = 3607, expires: str,
                  audiences: list[str] | None = None) -> dict[str, Any]:
    """The kubelet on node-7 requesting a token for pod ledger-6f9c7d-x2x4q (RequestResponse level)."""
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": "/api/v1/namespaces/payments/serviceaccounts/ledger/token",
        "verb": "create",
        "user": {"username": "system:node:node-7", "groups": ["system:nodes", "system:authenticated"]},
        "sourceIPs": [NODE_IP], "userAgent": "kubelet/v1.31.2",
        "objectRef": {"resource": "serviceaccounts", "namespace": "payments", "name": "ledger",
                      "apiVersion": "v1", "subresource": "token"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "spec": {
            "audiences": audiences, "expirationSeconds": seconds,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "ledger-6f9c7d-x2x4q", "uid": "pod-uid-1"},
        }},
        "responseObject": {"kind": "TokenRequest", "status": {"token": SECRET, "expirationTimestamp": expires}},
        "requestReceivedTimestamp": at, "stageTimestamp": at,
        "annotations": {"authentication.kubernetes.io/issued-credential-id": jti,
                        "authorization.k8s.io/decision": "allow"},
    }


def use(audit_id: str, at: str, jti: str = JTI, *, ip: str = POD_IP, stage: str = "ResponseComplete",
        code: int = 200, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The ledger workload (or whoever holds its token) listing secrets."""
    line: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": stage, "requestURI": "/api/v1/namespaces/payments/secrets", "verb": "list",
        "user": {"username": "system:serviceaccount:payments:ledger", "uid": "sa-uid-1",
                 "groups": ["system:serviceaccounts", "system:serviceaccounts:payments", "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/credential-id": [jti],
                           "authentication.kubernetes.io/node-name": ["node-7"],
                           "authentication.kubernetes.io/pod-name": ["ledger-6f9c7d-x2x4q"],
                           "authentication.kubernetes.io/pod-uid": ["pod-uid-1"]}},
        "sourceIPs": [ip], "userAgent": "ledger/1.4",
        "objectRef": {"resource": "secrets", "namespace": "payments", "apiVersion": "v1"},
        "requestReceivedTimestamp": at, "stageTimestamp": at,
        "annotations": {"authorization.k8s.io/decision": "allow", **(annotations or {})},
    }
    if stage != "RequestReceived":
        line["responseStatus"] = {"metadata": {}, "code": code}
    return line


def kubelet_token() -> dict[str, Any]:
    return token_request("a-1", "2026-11-24T09:00:00.000000Z", JTI, expires="2026-11-24T10:00:07Z")


def test_pod_token_used_from_its_pod_is_benign() -> None:
    run = detect_lines([
        kubelet_token(),
        use("a-2", "2026-11-24T09:01:00.000000Z"),
        use("a-3", "2026-11-24T09:06:00.000000Z"),
    ])
    assert run.alerts == []
    assert run.dead_letters == [] and run.summary.events == 3


@pytest.mark.parametrize("thief", ["10.99.0.5", "88.198.10.10"])
def test_pod_token_used_from_another_address_is_a_binding_mismatch(thief: str) -> None:
    run = detect_lines([
        kubelet_token(),
        use("a-2", "2026-11-24T09:01:00.000000Z"),
        use("a-3", "2026-11-24T09:06:00.000000Z"),
        use("a-4", "2026-11-24T09:20:00.000000Z", ip=thief),
    ])
    assert run.hits == [("replay.binding_mismatch", JTI)]
    assert thief in run.alerts[0]["alert"]["summary"]


def test_forwarded_for_header_does_not_hide_the_thief() -> None:
    spoofed = use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")
    spoofed["sourceIPs"] = [POD_IP, "88.198.10.10"]  # X-Forwarded-For: <the pod's address>
    run = detect_lines([kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), spoofed])
    assert run.hits == [("replay.binding_mismatch", JTI)]


def _vault_token() -> dict[str, Any]:
    """A projected token for Vault with an explicit one-hour lifetime: not extended by the apiserver."""
    return token_request("v-1", "2026-11-24T09:00:00.000000Z", VAULT_JTI, seconds=3600,
                         expires="2026-11-24T10:00:00Z", audiences=["vault"])


def test_use_after_expiry_is_an_alert() -> None:
    run = detect_lines([
        _vault_token(),
        use("v-2", "2026-11-24T09:01:00.000000Z", VAULT_JTI),
        use("v-3", "2026-11-24T11:00:00.000000Z", VAULT_JTI),
    ])
    assert run.hits == [("post_revocation_use.after_expiry", VAULT_JTI)]


def test_use_before_expiry_is_benign() -> None:
    run = detect_lines([
        _vault_token(),
        use("v-2", "2026-11-24T09:01:00.000000Z", VAULT_JTI),
        use("v-3", "2026-11-24T09:55:00.000000Z", VAULT_JTI),
    ])
    assert run.alerts == []


def test_kubelet_default_token_past_3607s_is_stale_not_expired() -> None:
    # The apiserver extended the token (to a year) and only annotates late uses: no alert.
    stale = {"authentication.k8s.io/stale-token":
             "subject: system:serviceaccount:payments:ledger, seconds after warning threshold: 3593"}
    run = detect_lines([
        kubelet_token(),
        use("a-2", "2026-11-24T09:01:00.000000Z"),
        use("a-3", "2026-11-24T11:00:00.000000Z", annotations=stale),
    ])
    assert run.alerts == []


def test_earlier_stages_of_a_request_are_skipped_and_counted() -> None:
    lines = [kubelet_token()]
    for n, at in enumerate(("2026-11-24T09:01:00.000000Z", "2026-11-24T09:06:00.000000Z")):
        lines += [use(f"a-{n}", at, stage="RequestReceived"), use(f"a-{n}", at, stage="ResponseStarted"),
                  use(f"a-{n}", at)]
    run = detect_lines(lines)
    assert run.alerts == [] and run.dead_letters == []
    assert run.summary.events == 3
    assert run.summary.skipped == {"k8s:stage:RequestReceived": 2, "k8s:stage:ResponseStarted": 2}


def test_issued_token_string_never_leaves_the_pipeline() -> None:
    run = detect_lines([
        kubelet_token(),
        use("a-2", "2026-11-24T09:01:00.000000Z"),
        use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10"),
    ])
    assert run.alerts  # the mismatch alert carries the issuance as evidence
    assert SECRET not in orjson.dumps(run.alerts).decode()


# -- AKS: the same audit events as Azure exports them (tests/schemas/test_k8s_aks.py has the shapes) --------
AKS_CLUSTER = ("/SUBSCRIPTIONS/0B1F6471-1BF0-4DDA-AEC3-CB9272F09590/RESOURCEGROUPS/RG-PROD/PROVIDERS/"
               "MICROSOFT.CONTAINERSERVICE/MANAGEDCLUSTERS/AKS-PROD")


def aks_record(event: dict[str, Any], category: str = "kube-audit") -> dict[str, Any]:
    """A diagnostic settings record: the event as text in ``properties.log`` (to Event Hubs or storage)."""
    return {"time": event["stageTimestamp"], "resourceId": AKS_CLUSTER, "category": category,
            "operationName": "Microsoft.ContainerService/managedClusters/diagnosticLogs/Read",
            "properties": {"log": orjson.dumps(event).decode() + "\n", "stream": "stdout",
                           "pod": "kube-apiserver-7d9f8c6b5-x8k2m"}}


def azure_diagnostics_row(event: dict[str, Any]) -> dict[str, Any]:
    """A Log Analytics AzureDiagnostics row: the event as text in ``log_s``."""
    return {"TimeGenerated": event["stageTimestamp"], "ResourceId": AKS_CLUSTER, "Category": "kube-audit",
            "log_s": orjson.dumps(event).decode(), "pod_s": "kube-apiserver-7d9f8c6b5-x8k2m", "stream_s": "stdout",
            "Type": "AzureDiagnostics"}


def aks_audit_row(event: dict[str, Any]) -> dict[str, Any]:
    """A Log Analytics AKSAudit row: the event's fields as columns."""
    return {"TimeGenerated": event["stageTimestamp"], "Level": event["level"], "AuditId": event["auditID"],
            "Stage": event["stage"], "RequestUri": event["requestURI"], "Verb": event["verb"], "User": event["user"],
            "SourceIps": event["sourceIPs"], "UserAgent": event["userAgent"], "ObjectRef": event["objectRef"],
            "ResponseStatus": event.get("responseStatus"), "RequestReceivedTime": event["requestReceivedTimestamp"],
            "StageReceivedTime": event["stageTimestamp"], "Annotations": event["annotations"],
            "PodName": "kube-apiserver-7d9f8c6b5-x8k2m", "Type": "AKSAudit", "_ResourceId": AKS_CLUSTER.lower()}


def _aks_pod_lifetime() -> list[dict[str, Any]]:
    """Issued in an Event Hubs message (kube-audit-admin), used from its pod in two other shapes."""
    return [
        {"records": [aks_record(kubelet_token(), "kube-audit-admin")]},
        azure_diagnostics_row(use("a-2", "2026-11-24T09:01:00.000000Z")),
        aks_audit_row(use("a-3", "2026-11-24T09:06:00.000000Z")),
    ]


def test_aks_pod_token_used_from_its_pod_across_shapes_is_benign() -> None:
    run = detect_lines(_aks_pod_lifetime())
    assert run.alerts == [] and run.dead_letters == []
    assert run.summary.per_format == {"aks": 3}


@pytest.mark.parametrize("thief", ["10.99.0.5", "88.198.10.10"])
def test_aks_pod_token_used_from_another_address_is_a_binding_mismatch(thief: str) -> None:
    stolen = aks_record(use("a-4", "2026-11-24T09:20:00.000000Z", ip=thief))
    run = detect_lines([*_aks_pod_lifetime(), stolen])
    assert run.hits == [("replay.binding_mismatch", JTI)]
    assert thief in run.alerts[0]["alert"]["summary"] and run.dead_letters == []


def test_aks_and_native_lines_of_one_cluster_give_the_native_alerts() -> None:
    native = detect_lines([kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"),
                           use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")])
    mixed = detect_lines([{"records": [aks_record(kubelet_token(), "kube-audit-admin")]},
                          use("a-2", "2026-11-24T09:01:00.000000Z"),
                          aks_audit_row(use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10"))])
    assert mixed.hits == native.hits == [("replay.binding_mismatch", JTI)]


def test_a_request_exported_under_both_aks_categories_counts_once() -> None:
    first = use("a-2", "2026-11-24T09:01:00.000000Z")
    run = detect_lines([aks_record(kubelet_token(), "kube-audit-admin"),
                        aks_record(first, "kube-audit"), aks_record(first, "kube-audit-admin")])
    assert run.summary.events == 3 and run.summary.engine["duplicates"] == 1
    assert run.alerts == [] and run.dead_letters == []


# -- GKE: Cloud Audit Logs entries of k8s.io (a Log Router sink to Pub/Sub or Cloud Storage) -------------------
GKE_JTI = "JTI=9b8a7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"


def gke_entry(method: str, principal: str, caller: str, at: str, audit_id: str, *,
              resource: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "protoPayload": {
            "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
            "authenticationInfo": {"principalEmail": principal},
            "methodName": method, "serviceName": "k8s.io", "resourceName": resource,
            "requestMetadata": {"callerIp": caller, "callerSuppliedUserAgent": "invoicer/1.8"},
            "status": {},
        },
        "insertId": audit_id, "timestamp": at,
        "resource": {"type": "k8s_cluster",
                     "labels": {"project_id": "shop-prod", "location": "europe-west1", "cluster_name": "prod"}},
        "labels": {"authorization.k8s.io/decision": "allow", **(labels or {})},
        "logName": "projects/shop-prod/logs/cloudaudit.googleapis.com%2Factivity",
        "operation": {"id": audit_id, "producer": "k8s.io", "first": True, "last": True},
    }


def test_gke_token_request_is_tracked_and_its_uses_are_counted_not_guessed() -> None:
    """GKE's AuditLog has no credential id on a use: a use from anywhere names no token, so it
    cannot be joined (README: not mapped). The issuance is an event; uses are counted skips."""
    issued = gke_entry("io.k8s.core.v1.serviceaccounts.token.create", "system:node:gke-prod-pool-x7k9", "10.128.0.12",
                       "2026-11-24T09:00:00.000000Z", "g-1",
                       resource="core/v1/namespaces/billing/serviceaccounts/invoicer/token",
                       labels={"authentication.kubernetes.io/issued-credential-id": GKE_JTI})
    uses = [gke_entry("io.k8s.core.v1.secrets.get", "system:serviceaccount:billing:invoicer", ip, at, audit_id,
                      resource="core/v1/namespaces/billing/secrets/invoicer-db")
            for ip, at, audit_id in (("10.4.2.9", "2026-11-24T09:01:00Z", "g-2"),
                                     ("88.198.10.10", "2026-11-24T09:20:00Z", "g-3"))]
    other = {**issued, "protoPayload": {**issued["protoPayload"], "serviceName": "storage.googleapis.com"}}
    run = detect_lines([issued, *uses, other])
    assert run.summary.events == 1 and run.summary.per_format == {"gke": 1}
    assert run.summary.skipped == {"gke:serviceaccount request without credential id": 2,
                                   "gke:service:storage.googleapis.com": 1}
    assert run.alerts == [] and run.dead_letters == []


# -- deletions: a pod's or service account's tokens die with it ----------------------------
# The apiserver's audit log is the authority on its own deletions; the operator names it so.
K8S_TRUSTED = {"trust": {"authoritative": [{"format": name} for name in ("keycloak", "okta", "entra", "k8s", "aks")]}}


def delete(audit_id: str, at: str, resource: str, name: str, response: dict[str, Any] | None) -> dict[str, Any]:
    """An operator's kubectl delete, completed (RequestResponse level: the deleted object as the response)."""
    line: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse" if response else "Metadata",
        "auditID": audit_id, "stage": "ResponseComplete", "verb": "delete",
        "requestURI": f"/api/v1/namespaces/payments/{resource}/{name}",
        "user": {"username": "alice@example.org", "groups": ["system:authenticated"]},
        "sourceIPs": ["10.0.9.9"], "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
        "objectRef": {"resource": resource, "namespace": "payments", "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": at, "stageTimestamp": at,
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    if response is not None:
        line["responseObject"] = response
    return line


def pod_deleted(at: str = "2026-11-24T09:02:00.000000Z", marked: str = "2026-11-24T09:02:30Z",
                body: bool = True) -> dict[str, Any]:
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {
        "name": "ledger-6f9c7d-x2x4q", "namespace": "payments", "uid": "pod-uid-1",
        "deletionTimestamp": marked, "deletionGracePeriodSeconds": 30}}
    return delete("d-1", at, "pods", "ledger-6f9c7d-x2x4q", pod if body else None)


def account_deleted() -> dict[str, Any]:
    account = {"kind": "ServiceAccount", "apiVersion": "v1",
               "metadata": {"name": "ledger", "namespace": "payments", "uid": "sa-uid-1"}}
    return delete("d-2", "2026-11-24T09:02:00.000000Z", "serviceaccounts", "ledger", account)


def test_token_of_a_deleted_pod_still_accepted_is_an_alert() -> None:
    """The thief replays the pod's token from the pod's own address after the pod is gone."""
    run = detect_lines([kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), pod_deleted(),
                        use("a-3", "2026-11-24T09:10:00.000000Z")], K8S_TRUSTED)
    assert run.hits == [("post_revocation_use.after_revocation", JTI)]
    assert run.alerts[0]["details"]["revocation_event_id"] == "k8s:d-1@2026-11-24T09:02:00.000000Z"


def test_token_used_during_its_pods_graceful_termination_is_benign() -> None:
    run = detect_lines([kubelet_token(), pod_deleted(), use("a-3", "2026-11-24T09:03:00.000000Z")], K8S_TRUSTED)
    assert run.alerts == [] and run.dead_letters == []


def test_metadata_level_pod_deletion_is_counted_not_guessed() -> None:
    """Without the deleted pod the audit event names no uid: skipped and counted (README)."""
    run = detect_lines([kubelet_token(), pod_deleted(body=False), use("a-3", "2026-11-24T09:10:00.000000Z")],
                       K8S_TRUSTED)
    assert run.alerts == [] and run.summary.skipped == {"k8s:delete pods without uid": 1}


def test_token_of_a_deleted_service_account_still_accepted_is_an_alert() -> None:
    run = detect_lines([kubelet_token(), account_deleted(), use("a-3", "2026-11-24T09:10:00.000000Z")], K8S_TRUSTED)
    assert run.hits == [("post_revocation_use.after_disable", JTI)]


def test_token_used_before_its_service_account_was_deleted_is_benign() -> None:
    run = detect_lines([kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), account_deleted()], K8S_TRUSTED)
    assert run.alerts == [] and run.dead_letters == []


def test_aks_pod_deletion_in_its_diagnostic_record_ends_the_pods_tokens() -> None:
    run = detect_lines([aks_record(kubelet_token()), aks_record(pod_deleted()),
                        aks_record(use("a-3", "2026-11-24T09:10:00.000000Z"))], K8S_TRUSTED)
    assert run.hits == [("post_revocation_use.after_revocation", JTI)]
