"""Gateway access-log adapter: exact canonical events from the documented layout."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from schemas.events import Binding, CanonicalEvent, EventKind, Network, Outcome, Request, Subject, TokenRef, TokenType
from schemas.sources import AdapterContext, InvalidRecord
from schemas.sources.gateway import GatewayFormat

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats" / "gateway.jsonl"
UTC = timezone.utc


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _sample(n: int) -> dict:
    return orjson.loads(SAMPLES.read_bytes().splitlines()[n])


def test_first_sample_maps_to_a_used_event(ctx: AdapterContext) -> None:
    raw = _sample(0)
    [event] = GatewayFormat().to_events(raw, ctx)
    expected = CanonicalEvent(
        event_id=event.event_id,
        kind=EventKind.USED,
        time=datetime(2026, 11, 24, 9, 0, 5, 120000, tzinfo=UTC),
        source="gateway",
        tenant="https://sso.example.org/realms/main",
        token=TokenRef(
            id="at-0001",
            type=TokenType.ACCESS,
            issued_at=datetime.fromtimestamp(1764000000, UTC),
            expires_at=datetime.fromtimestamp(1764000300, UTC),
            audience=("orders-api",),
        ),
        subject=Subject(id="5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa"),
        client_id="portal",
        scopes=("openid", "orders:read", "profile"),
        required_scopes=("orders:read",),
        network=Network(ip="79.200.1.10", user_agent="Mozilla/5.0"),
        request=Request(id="gw-1", method="GET", resource="/orders/42", status=200),
        outcome=Outcome(result="success"),
    )
    assert event == expected
    assert event.event_id.startswith("gateway:")


def test_dpop_sample_carries_bound_key_and_proof_and_azp_client(ctx: AdapterContext) -> None:
    [event] = GatewayFormat().to_events(_sample(2), ctx)
    jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    assert event.token is not None and event.request is not None
    assert event.token.binding == Binding(method="dpop", value=jkt)
    assert event.request.proof == Binding(method="dpop", value=jkt)
    assert event.client_id == "mobile"


def test_rejected_request_is_a_failed_use(ctx: AdapterContext) -> None:
    raw = {**_sample(0), "status": 401}
    [event] = GatewayFormat().to_events(raw, ctx)
    assert event.outcome == Outcome(result="failure", reason="HTTP 401")


def test_event_id_is_stable_for_redelivery_and_differs_for_a_replayed_request(ctx: AdapterContext) -> None:
    adapter = GatewayFormat()
    first = adapter.to_events(_sample(0), ctx)[0].event_id
    again = adapter.to_events(orjson.loads(orjson.dumps(_sample(0))), ctx)[0].event_id
    replayed = adapter.to_events({**_sample(0), "client_ip": "1.2.3.4"}, ctx)[0].event_id
    assert first == again
    assert replayed != first


def test_raw_bearer_token_becomes_a_keyed_hash(ctx: AdapterContext, hasher) -> None:
    raw = _sample(0)
    raw["jwt"] = {k: v for k, v in raw["jwt"].items() if k != "jti"}
    raw["authorization"] = "Bearer opaque-secret-token-value"
    [event] = GatewayFormat().to_events(raw, ctx)
    assert event.token is not None
    assert event.token.id == hasher("opaque-secret-token-value")
    assert "opaque-secret-token-value" not in event.model_dump_json()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"status": "ok"}, "status"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"jwt": {"sub": "x"}}, "no token identifier"),
        ({"timestamp": "2026-11-24T09:00:00"}, "no timezone"),
        ({"client_ip": 5}, "client_ip"),
    ],
)
def test_malformed_records_raise_invalid_record_with_reason(ctx: AdapterContext, change: dict, reason: str) -> None:
    with pytest.raises(InvalidRecord, match=reason):
        GatewayFormat().to_events({**_sample(0), **change}, ctx)


def test_mtls_bound_token_and_certificate_proof(ctx: AdapterContext) -> None:
    raw = {**_sample(0), "client_cert_thumbprint": "cert-b"}
    raw["jwt"] = {**raw["jwt"], "cnf": {"x5t#S256": "cert-a"}}
    [event] = GatewayFormat().to_events(raw, ctx)
    assert event.token is not None and event.request is not None
    assert event.token.binding == Binding(method="mtls", value="cert-a")
    assert event.request.proof == Binding(method="mtls", value="cert-b")


@pytest.mark.parametrize("missing", ["timestamp", "status"])
def test_required_keys(ctx: AdapterContext, missing: str) -> None:
    raw = {k: v for k, v in _sample(0).items() if k != missing}
    with pytest.raises(InvalidRecord, match=f"{missing}: Field required"):
        GatewayFormat().to_events(raw, ctx)
