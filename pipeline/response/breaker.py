"""Circuit breakers on automatic revocations: a detection storm must not log out everyone,
and one principal must not switch automatic response off for everyone else.

Two budgets, each in a sliding window:

- per principal (the user an action revokes, else its client; ``unknown`` when neither is
  known): at most ``max_auto_per_principal_per_hour``. The one that would exceed it trips
  that principal only: its further actions wait for approval, everyone else's still run.
- global: at most ``max_auto_per_minute``. The one that would exceed it trips the breaker
  for everyone.

Each trip raises one breaker alert (rule ``response.breaker_tripped``) naming the principal
(a global trip names the principals that spent most of the minute) and is a durable store
flag, so a restart stays tripped until an analyst runs ``tokenwatch breaker reset``
(``--principal`` for one principal), audited with the actor. A reset, here or from another
process, starts that budget afresh. The windows themselves live in memory: a restart
forgets them.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, deque
from collections.abc import Mapping
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from detectors.state import forget_before
from pipeline.store.base import AlertStore
from schemas.actions import AuditEntry, RevocationTarget
from schemas.alerts import Alert, AlertCore, ClientDoc, ResponseDoc, RuleRef, Threat, UserDoc

FLAG = "response.breaker"
PRINCIPALS_FLAG = "response.breaker.principals"
RULE_ID = "response.breaker_tripped"
UNKNOWN = "unknown"
GLOBAL = "*"  # never a principal: those are "user:…", "client:…" or "unknown"
MAX_TRIPPED_PRINCIPALS = 1_000
"""More principals tripped at once than this is a storm: the next principal trip trips the
global breaker instead (and the stored record stays bounded)."""
_MINUTE_S, _HOUR_S = 60.0, 3600.0
_TOP = 3


def principal_of(target: RevocationTarget) -> str:
    """Whose budget an automatic revocation spends: its user, else its client (a token of the
    client itself), else the one budget shared by every action whose owner is unknown."""
    if target.user_id:
        return f"user:{target.user_id}"
    if target.client_id:
        return f"client:{target.client_id}"
    return UNKNOWN


class Breaker:
    """The two budgets; ``admit`` is called once per automatic action before it runs."""

    def __init__(self, store: AlertStore, limit: int, per_principal_limit: int | None = None) -> None:
        self.store = store
        self.limit = limit
        self.per_principal_limit = per_principal_limit
        self._recent: deque[tuple[float, str | None]] = deque()  # admitted in the last minute, by whom
        # principal -> admission times in the last hour; least recently admitted principal first
        self._per_principal: dict[str, deque[float]] = {}
        self._seen_tripped: set[str] = set()  # trips (GLOBAL or a principal) known here, to notice resets
        self._lock = threading.Lock()

    def state(self) -> dict[str, Any] | None:
        """The global trip record (``tripped_at``, ``count``, ``alert_id``, ``top``) or None when closed."""
        raw = self.store.get_flag(FLAG)
        return json.loads(raw) if raw else None

    def tripped_principals(self) -> dict[str, dict[str, Any]]:
        """Principal -> its trip record (``tripped_at``, ``count``, ``alert_id``)."""
        raw = self.store.get_flag(PRINCIPALS_FLAG)
        return json.loads(raw) if raw else {}

    def admit(self, now: datetime, actor: str, alert_id: str,
              principal: str | None = None) -> tuple[bool, dict[str, Any] | None]:
        """May one more automatic revocation (on behalf of ``principal``) go now? Returns
        (allowed, breaker alert if this call tripped a breaker). Without a principal only the
        global budget applies."""
        with self._lock:
            global_trip, tripped = self.state(), self.tripped_principals()
            self._forget_resets(global_trip is not None, tripped)
            if global_trip is not None or (principal is not None and principal in tripped):
                return False, None
            t = now.timestamp()
            while self._recent and self._recent[0][0] <= t - _MINUTE_S:
                self._recent.popleft()
            forget_before(self._per_principal, t - _HOUR_S, _newest)
            if len(self._recent) >= self.limit:
                return False, self._trip_global(now, actor, alert_id)
            limit = self.per_principal_limit
            if principal is not None and limit is not None:
                window = self._window(principal, t)
                if len(window) >= limit:
                    if len(tripped) >= MAX_TRIPPED_PRINCIPALS:
                        return False, self._trip_global(now, actor, alert_id)
                    return False, self._trip_principal(now, actor, alert_id, principal, tripped)
                window.append(t)
            self._recent.append((t, principal))
            return True, None

    def reset(self, actor: str, now: datetime, why: str = "") -> bool:
        """Close the global breaker (an analyst decided the storm is over); False if it was not tripped."""
        with self._lock:
            previous = self.state()
            self.store.set_flag(FLAG, None)
            self._recent.clear()
            self._forget_resets(False, self.tripped_principals())
            self._audit_reset(actor, now, why, None, previous)
            return previous is not None

    def reset_principals(self, actor: str, now: datetime, pattern: str, why: str = "") -> list[str]:
        """Close the breakers of the principals named by ``pattern`` (an exact name, else an
        fnmatch pattern: ``user:*``); returns their names (empty, and audited so, if none was tripped)."""
        with self._lock:
            tripped = self.tripped_principals()
            names = [pattern] if pattern in tripped else sorted(p for p in tripped if fnmatchcase(p, pattern))
            closed = {name: tripped.pop(name) for name in names}
            if closed:
                self.store.set_flag(PRINCIPALS_FLAG, json.dumps(tripped) if tripped else None)
            self._forget_resets(self.state() is not None, tripped)
            for name, record in closed.items() or [(pattern, None)]:
                self._audit_reset(actor, now, why, name, record)
            return names

    # -- trips -----------------------------------------------------------------------

    def _window(self, principal: str, t: float) -> deque[float]:
        """The principal's admissions within the hour, moved last (most recently admitted)."""
        window = self._per_principal.pop(principal, deque())
        while window and window[0] <= t - _HOUR_S:
            window.popleft()
        self._per_principal[principal] = window
        return window

    def _audit_reset(self, actor: str, now: datetime, why: str, principal: str | None,
                     record: Mapping[str, Any] | None) -> None:
        self.store.audit(AuditEntry(
            time=now, actor=actor, verb="breaker.reset", why=why or "analyst reset",
            result="reset" if record else "was not tripped",
            details={"tripped_at": record["tripped_at"] if record else None, "principal": principal},
        ))

    def _forget_resets(self, global_tripped: bool, tripped: Mapping[str, Any]) -> None:
        """A trip known here that is no longer in the store was reset (maybe by the CLI in
        another process): its budget starts afresh instead of tripping again at once."""
        for key in [k for k in self._seen_tripped if not (global_tripped if k == GLOBAL else k in tripped)]:
            self._seen_tripped.discard(key)
            if key == GLOBAL:
                self._recent.clear()
            else:
                self._per_principal.pop(key, None)
        if global_tripped:
            self._seen_tripped.add(GLOBAL)
        self._seen_tripped.update(tripped)

    def _trip_global(self, now: datetime, actor: str, alert_id: str) -> dict[str, Any]:
        top = Counter(p for _, p in self._recent if p is not None).most_common(_TOP)
        doc = breaker_alert(now, self.limit, top=top)
        record = {"tripped_at": now.isoformat(), "count": len(self._recent), "alert_id": doc["alert"]["id"],
                  "top": [f"{name} ({count})" for name, count in top]}
        self.store.set_flag(FLAG, json.dumps(record))
        self._seen_tripped.add(GLOBAL)
        self._record(doc, now, actor, alert_id, None,
                     f"more than {self.limit} automatic revocations in one minute", self.limit)
        return doc

    def _trip_principal(self, now: datetime, actor: str, alert_id: str, principal: str,
                        tripped: dict[str, dict[str, Any]]) -> dict[str, Any]:
        limit = self.per_principal_limit or 0
        doc = breaker_alert(now, limit, principal=principal)
        tripped[principal] = {"tripped_at": now.isoformat(), "count": len(self._per_principal[principal]),
                              "alert_id": doc["alert"]["id"]}
        self.store.set_flag(PRINCIPALS_FLAG, json.dumps(tripped))
        self._seen_tripped.add(principal)
        self._record(doc, now, actor, alert_id, principal,
                     f"more than {limit} automatic revocations of {principal} in one hour", limit)
        return doc

    def _record(self, doc: dict[str, Any], now: datetime, actor: str, alert_id: str, principal: str | None,
                why: str, limit: int) -> None:
        self.store.put_alerts([doc])
        self.store.audit(AuditEntry(
            time=now, actor=actor, verb="breaker.trip", alert_id=alert_id, target=None, why=why, result="tripped",
            details={"breaker_alert": doc["alert"]["id"], "limit": limit, "principal": principal},
        ))


def _newest(window: deque[float]) -> float:
    """When a principal last spent budget (never, for an empty window: forgotten first)."""
    return window[-1] if window else float("-inf")


def breaker_alert(now: datetime, limit: int, principal: str | None = None,
                  top: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    """The breaker's own alert document (category ``response``: raised by tokenwatch about
    itself). A principal's alert carries it as ``user.id`` or ``client.id`` too, so a
    search by user finds it."""
    alert_id = "brk-" + hashlib.sha256(f"{principal or GLOBAL}\x1f{now.isoformat()}".encode()).hexdigest()[:24]
    if principal is None:
        spent = ", ".join(f"{name} ({count})" for name, count in top or []) or "none known"
        summary = (f"Automatic revocation breaker tripped: more than {limit} automatic revocations within a "
                   f"minute (most by: {spent}); further revocations wait for analyst approval until "
                   "`tokenwatch breaker reset`")
        details: dict[str, str | int | None] = {"scope": "global", "limit_per_minute": limit, "top_principals": spent}
    else:
        summary = (f"Automatic revocation breaker tripped for {principal}: more than {limit} automatic "
                   f"revocations within an hour; further revocations of {principal} wait for analyst approval "
                   f"until `tokenwatch breaker reset --principal {principal}` (others still run)")
        details = {"scope": "principal", "principal": principal, "limit_per_hour": limit}
    kind, _, name = (principal or "").partition(":")
    alert = Alert.model_validate({
        "@timestamp": now,
        "alert": AlertCore(id=alert_id, severity="high", risk_score=70, first_seen=now, last_seen=now,
                           summary=summary),
        "rule": RuleRef(id=RULE_ID, name="Automatic revocation breaker tripped", category="response"),
        "user": UserDoc(id=name if kind == "user" else None),
        "client": ClientDoc(id=name if kind == "client" else None),
        "evidence": [],
        "threat": Threat(technique=[]),
        "response": ResponseDoc(action="none", state="none"),
        "details": details,
    })
    return alert.to_json_dict()
