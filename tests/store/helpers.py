"""Alert documents and actions for store tests, built through the real schemas."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from schemas.actions import Action, RevocationTarget, action_id
from schemas.alerts import Alert

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def alert_doc(
    alert_id: str, minute: float = 0, *, rule: str = "replay.refresh_reuse", severity: str = "high",
    user: str = "alice", client: str = "portal", ip: str = "203.0.113.7", asn: int = 64500,
    count: int = 1, summary: str | None = None,
) -> dict[str, Any]:
    """A valid alert JSON document (as `tokenwatch detect` writes it) triggered at T0 + minute."""
    when = at(minute)
    category = rule.split(".", 1)[0]
    return Alert.model_validate({
        "@timestamp": when,
        "alert": {"id": alert_id, "severity": severity, "risk_score": 80,
                  "summary": summary or f"Token at-{alert_id} misused by {user}.",
                  "first_seen": when - timedelta(minutes=1), "last_seen": when, "count": count},
        "rule": {"id": rule, "name": rule.replace(".", " "), "category": category},
        "token": {"id": f"at-{alert_id}", "family_id": f"fam-{alert_id}", "type": "refresh"},
        "user": {"id": user},
        "client": {"id": client},
        "source": {"ip": ip, "as": {"number": asn, "organization": {"name": "Example AS"}}},
        "evidence": [
            {"event_id": f"{alert_id}-e2", "kind": "refreshed", "time": when, "source": "keycloak",
             "token_id": f"at-{alert_id}", "ip": ip, "country": "SG", "asn": asn, "client_id": client},
            {"event_id": f"{alert_id}-e1", "kind": "refreshed", "time": when - timedelta(minutes=1),
             "source": "keycloak", "token_id": f"at-{alert_id}", "ip": "198.51.100.1", "country": "DE",
             "city": "Berlin", "client_id": client},
        ],
        "threat": {"technique": [{"id": "T1550.001", "name": "Application Access Token"}]},
        "response": {"action": "revoke_family"},
    }).to_json_dict()


def action(
    alert_id: str, target_id: str, *, state: str = "pending", next_minute: float | None = 0,
    created_minute: float = 0, attempts: int = 0,
) -> Action:
    target = RevocationTarget(kind="family", id=target_id, user_id="alice")
    return Action(
        id=action_id(alert_id, target), alert_id=alert_id, rule_id="replay.refresh_reuse",
        action="revoke_family", target=target, mode="auto", state=state, responder="rfc7009",
        actor="tokenwatch", reason="policy auto for replay.refresh_reuse/high", attempts=attempts,
        next_attempt_at=at(next_minute) if next_minute is not None else None,
        created=at(created_minute), updated=at(created_minute),
    )
