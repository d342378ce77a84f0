"""Circuit breaker on automatic revocations: a detection storm must not log out everyone.

At most ``max_auto_per_minute`` automatic revocations in any sliding minute. The one that
would exceed it trips the breaker: from then on ``auto`` falls back to ``approve``, one
breaker alert (rule ``response.breaker_tripped``) is raised, and the state is a durable
store flag, so a restart stays tripped until an analyst runs ``tokenwatch breaker reset``
(audited with the actor).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from datetime import datetime
from typing import Any

from pipeline.store.base import AlertStore
from schemas.actions import AuditEntry
from schemas.alerts import Alert, AlertCore, ResponseDoc, RuleRef, Threat

FLAG = "response.breaker"
RULE_ID = "response.breaker_tripped"


class Breaker:
    def __init__(self, store: AlertStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def state(self) -> dict[str, Any] | None:
        """The trip record (``tripped_at``, ``count``, ``alert_id``) or None when closed."""
        raw = self.store.get_flag(FLAG)
        return json.loads(raw) if raw else None

    def admit(self, now: datetime, actor: str, alert_id: str) -> tuple[bool, dict[str, Any] | None]:
        """May one more automatic revocation go now? Returns (allowed, breaker alert if this call tripped it)."""
        with self._lock:
            if self.state() is not None:
                return False, None
            t = now.timestamp()
            while self._recent and self._recent[0] <= t - 60.0:
                self._recent.popleft()
            if len(self._recent) < self.limit:
                self._recent.append(t)
                return True, None
            return False, self._trip(now, actor, alert_id)

    def _trip(self, now: datetime, actor: str, alert_id: str) -> dict[str, Any]:
        doc = breaker_alert(now, self.limit)
        record = {"tripped_at": now.isoformat(), "count": len(self._recent), "alert_id": doc["alert"]["id"]}
        self.store.set_flag(FLAG, json.dumps(record))
        self.store.put_alerts([doc])
        self.store.audit(AuditEntry(
            time=now, actor=actor, verb="breaker.trip", alert_id=alert_id, target=None,
            why=f"more than {self.limit} automatic revocations in one minute", result="tripped",
            details={"breaker_alert": doc["alert"]["id"], "limit": self.limit},
        ))
        return doc

    def reset(self, actor: str, now: datetime, why: str = "") -> bool:
        """Close the breaker (an analyst decided the storm is over); False if it was not tripped."""
        with self._lock:
            previous = self.state()
            self._recent.clear()
            self.store.set_flag(FLAG, None)
            self.store.audit(AuditEntry(
                time=now, actor=actor, verb="breaker.reset", why=why or "analyst reset",
                result="reset" if previous else "was not tripped",
                details={"tripped_at": previous["tripped_at"] if previous else None},
            ))
            return previous is not None


def breaker_alert(now: datetime, limit: int) -> dict[str, Any]:
    """The breaker's own alert document (category ``response``: raised by tokenwatch about itself)."""
    alert_id = "brk-" + hashlib.sha256(now.isoformat().encode()).hexdigest()[:24]
    alert = Alert.model_validate({
        "@timestamp": now,
        "alert": AlertCore(
            id=alert_id, severity="high", risk_score=70, first_seen=now, last_seen=now,
            summary=(f"Automatic revocation breaker tripped: more than {limit} automatic revocations within a "
                     "minute; further revocations wait for analyst approval until `tokenwatch breaker reset`"),
        ),
        "rule": RuleRef(id=RULE_ID, name="Automatic revocation breaker tripped", category="response"),
        "evidence": [],
        "threat": Threat(technique=[]),
        "response": ResponseDoc(action="none", state="none"),
        "details": {"limit_per_minute": limit},
    })
    return alert.to_json_dict()
