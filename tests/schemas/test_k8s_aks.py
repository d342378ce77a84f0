"""AKS audit adapter: the three Azure shapes of a Kubernetes audit event map exactly as the event.

Fixtures (tests/data/formats/aks.jsonl) follow Microsoft's documentation: the diagnostic
settings record of categories ``kube-audit``/``kube-audit-admin`` with the event as text in
``properties.log`` ("Monitor and query AKS apiserver requests"; Azure Monitor resource-log
common schema), the AzureDiagnostics row (``Category``, ``log_s``) and the resource-specific
``AKSAudit`` row (Azure Monitor table reference "AKSAudit" columns).
"""

from __future__ import annotations

import copy
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import Normalizer
from schemas.embedded_json import DEPTH_MARKER, MAX_DEPTH
from schemas.events import Binding, CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, detect_format
from schemas.sources.k8s_aks import AksAuditFormat
from tests.fuzzing import FUZZ, JSON_VALUES, NOW, assert_accounted_for, json_dumps, mutated_lines, normalize

LINES = (Path(__file__).resolve().parents[1] / "data" / "formats" / "aks.jsonl").read_bytes().splitlines()
UTC = timezone.utc
JTI = "JTI=3f0c2b9e-8d1a-4c57-b0e4-7a6d5c4b3a21"
POD_UID = "1d9c7e52-0b8f-4a8e-9b1e-5f3c2a1d0e99"
CLUSTER = ("/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourcegroups/rg-prod/providers/"
           "microsoft.containerservice/managedclusters/aks-prod")
SECRET = "eyJhbGciOiJSUzI1NiIsImtpZCI6IkFLUyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.YWtzLXNpZ25hdHVyZQ"


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def line(index: int) -> dict[str, Any]:
    """0: kube-audit-admin TokenRequest, 1: kube-audit use, 2: AzureDiagnostics use, 3: AKSAudit use."""
    return orjson.loads(LINES[index])


def inner(record: dict[str, Any]) -> dict[str, Any]:
    return orjson.loads(record["properties"]["log"])


def with_inner(record: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    record = copy.deepcopy(record)
    record["properties"]["log"] = orjson.dumps(event).decode()
    return record


def events(raw: dict[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
    return AksAuditFormat().to_events(raw, ctx)


ISSUED_AT = datetime(2026, 11, 24, 9, 0, 0, 120000, tzinfo=UTC)
USED_AT = datetime(2026, 11, 24, 9, 2, 0, 500000, tzinfo=UTC)
EXPECTED_ISSUED = CanonicalEvent(
    event_id="k8s:7c4c1f0e-6a2b-4f7e-9d3a-1b2c3d4e5f60@2026-11-24T09:00:00.120000Z",
    kind=EventKind.ISSUED, time=ISSUED_AT, source="aks", tenant=CLUSTER,
    token=TokenRef(
        id=JTI, type=TokenType.SERVICE_ACCOUNT, issued_at=ISSUED_AT,
        expires_at=ISSUED_AT + timedelta(days=365),  # the kubelet's 3607 s token, extended server-side
        binding=Binding(method="pod", value=POD_UID),
    ),
    subject=Subject(id="system:serviceaccount:shop:cart", kind="service"),
    client_id="system:node:aks-nodepool1-12345678-vmss000000",
    session_id=f"pod:{POD_UID}",
    network=Network(ip="10.224.0.4", user_agent="kubelet/v1.30.6 (linux/amd64) kubernetes/aks"),
    request=Request(id="7c4c1f0e-6a2b-4f7e-9d3a-1b2c3d4e5f60", method="create",
                    resource="/api/v1/namespaces/shop/serviceaccounts/cart/token", status=201),
    outcome=Outcome(result="success"),
)
EXPECTED_USED = CanonicalEvent(
    event_id="k8s:0a9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c@2026-11-24T09:02:00.500000Z",
    kind=EventKind.USED, time=USED_AT, source="aks", tenant=CLUSTER,
    token=TokenRef(id=JTI, type=TokenType.SERVICE_ACCOUNT, binding=Binding(method="pod", value=POD_UID)),
    subject=Subject(id="system:serviceaccount:shop:cart", kind="service"),
    client_id="pod:shop/cart-5d8f7c9b6-qx2lp",
    session_id=f"pod:{POD_UID}",
    network=Network(ip="10.244.1.17", user_agent="cart/2.3.1"),
    request=Request(id="0a9e8d7c-6b5a-4f3e-8d2c-1b0a9f8e7d6c", method="get",
                    resource="/api/v1/namespaces/shop/configmaps/cart-settings", status=200),
    outcome=Outcome(result="success"),
)


# -- each shape, exact events -----------------------------------------------------------------
def test_diagnostic_record_token_request_is_an_issued_pod_bound_token(ctx: AdapterContext) -> None:
    assert events(line(0), ctx) == [EXPECTED_ISSUED]


@pytest.mark.parametrize("index", [1, 2, 3], ids=["diagnostic-record", "AzureDiagnostics-row", "AKSAudit-row"])
def test_every_shape_of_a_use_maps_to_the_same_used_event(ctx: AdapterContext, index: int) -> None:
    assert events(line(index), ctx) == [EXPECTED_USED]


def test_a_table_row_from_the_query_api_with_dynamic_columns_as_text_maps_alike(ctx: AdapterContext) -> None:
    row = line(3)
    for column in ("User", "SourceIps", "ObjectRef", "ResponseStatus", "Annotations"):
        row[column] = orjson.dumps(row[column]).decode()
    assert events(row, ctx) == [EXPECTED_USED]


def test_the_same_request_under_both_categories_is_one_event(ctx: AdapterContext) -> None:
    admin = {**copy.deepcopy(line(1)), "category": "kube-audit-admin"}
    assert events(admin, ctx)[0].event_id == events(line(1), ctx)[0].event_id == EXPECTED_USED.event_id


def test_a_body_too_big_to_log_counts_as_not_logged(ctx: AdapterContext) -> None:
    event = inner(line(0))
    event["requestObject"] = "skipped-too-big-size-object"  # the fixture's responseObject is already
    [issued] = events(with_inner(line(0), event), ctx)
    # Without the spec the reported lifetime is not known either: no binding, no expiry.
    assert issued.token is not None and issued.token.binding is None and issued.token.expires_at is None


# -- recognition --------------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(4))
def test_every_shape_is_recognised_as_aks_alone(index: int) -> None:
    # The AKSAudit row needs graph.matches to pass over rows with an AuditId column (see report).
    raw = line(index)
    assert [name for name, fmt in FORMATS.items() if fmt.matches(raw)] == ["aks"]
    assert detect_format(raw).name == "aks"


def test_other_aks_categories_and_other_tables_are_not_aks() -> None:
    fmt = AksAuditFormat()
    assert not fmt.matches({**line(1), "category": "kube-apiserver"})
    assert not fmt.matches({"TimeGenerated": "2026-11-24T09:00:00Z", "Category": "kube-audit"})  # no log_s
    assert not fmt.matches({"TimeGenerated": "2026-11-24T09:00:00Z", "RequestUri": "/me"})


def test_an_event_hubs_message_of_aks_records_maps_record_by_record(hasher) -> None:
    message = {"records": [line(0), line(1)]}
    result = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(message), "eh:1")
    assert result.dead_letter is None and result.format == "aks"
    assert result.events == [EXPECTED_ISSUED, EXPECTED_USED]


# -- bounded decoding ------------------------------------------------------------------------
@pytest.mark.parametrize(("log", "reason"), [
    ('{"kind": "Event", ', r"aks: properties.log: not JSON"),
    ('["an", "array"]', r"aks: properties.log: expected an audit event object, got list"),
    ('{"kind": "Pod", "apiVersion": "v1"}', r"aks: properties.log: not a Kubernetes audit event"),
    ("x" * 1_048_577, r"aks: properties.log: embedded JSON of 1048577 characters exceeds"),
])
def test_an_undecodable_log_is_an_invalid_record_with_reason(ctx: AdapterContext, log: str, reason: str) -> None:
    record = copy.deepcopy(line(1))
    record["properties"]["log"] = log
    with pytest.raises(InvalidRecord, match=reason):
        events(record, ctx)


def test_a_missing_required_field_inside_the_log_is_named_where_it_sits(ctx: AdapterContext) -> None:
    event = inner(line(1))
    del event["requestReceivedTimestamp"]
    with pytest.raises(InvalidRecord, match=r"^aks: properties.log: requestReceivedTimestamp: Field required"):
        events(with_inner(line(1), event), ctx)


def test_nesting_deeper_than_the_bound_is_cut_and_the_event_kept(ctx: AdapterContext) -> None:
    event = inner(line(0))
    deep: Any = "bottom"
    for _ in range(MAX_DEPTH + 20):
        deep = {"a": deep}
    event["requestObject"]["metadata"] = {"annotations": deep}
    record = with_inner(line(0), event)
    assert events(record, ctx) == [EXPECTED_ISSUED]
    assert ctx.repairs == Counter({"aks.properties.log: nesting cut": 1})
    text = orjson.dumps(record).decode()
    assert DEPTH_MARKER in text and "bottom" not in text


def test_a_too_long_user_agent_inside_the_log_is_cut_not_fatal(hasher) -> None:
    event = inner(line(1))
    event["userAgent"] = "A" * 5000
    result = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(with_inner(line(1), event)), "x:1")
    assert result.dead_letter is None
    [used] = result.events
    assert used.network.user_agent is not None and len(used.network.user_agent) == 2048
    assert used.network.user_agent.endswith("]") and "cut 5000 chars" in used.network.user_agent


def test_a_too_long_user_agent_column_is_cut_not_fatal(hasher) -> None:
    normalizer = Normalizer(hasher, forced_format="aks", clock=lambda: NOW)  # auto: see the recognition test
    result = normalizer.normalize(orjson.dumps({**line(3), "UserAgent": "B" * 5000}), "x:1")
    assert result.dead_letter is None and len(result.events) == 1
    assert normalizer.repairs == Counter({"aks.UserAgent: cut": 1})


def test_the_token_in_a_dead_lettered_record_is_redacted(hasher) -> None:
    event = inner(line(0))
    event["responseObject"] = {"kind": "TokenRequest", "status": {"token": SECRET, "expirationTimestamp": "never"}}
    result = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(with_inner(line(0), event)), "x:1")
    assert result.dead_letter is not None and "expirationTimestamp" in result.dead_letter["reason"]
    assert SECRET not in orjson.dumps(result.dead_letter).decode()


def test_the_token_in_an_undecodable_log_is_redacted_in_its_dead_letter(hasher) -> None:
    record = copy.deepcopy(line(0))
    record["properties"]["log"] = record["properties"]["log"][:-40] + f'"token":"{SECRET}"'  # cut short: no JSON
    result = Normalizer(hasher, clock=lambda: NOW).normalize(orjson.dumps(record), "x:1")
    assert result.dead_letter is not None and "not JSON" in result.dead_letter["reason"]
    assert SECRET not in orjson.dumps(result.dead_letter).decode()


@FUZZ
@given(mutated_lines(LINES, most=3, dumps=json_dumps, values=JSON_VALUES), st.booleans(), st.integers(0, 4000))
def test_mutated_and_truncated_samples_never_raise(line_: bytes, truncate: bool, cut: int) -> None:
    if truncate:
        line_ = line_[: cut % (len(line_) + 1)]
    assert_accounted_for(normalize(line_, InputConfig(max_line_bytes=100_000)))
