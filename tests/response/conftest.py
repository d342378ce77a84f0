"""Shared helpers for response tests: a recording responder, a clock, alert documents."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from pipeline.response.responders.base import ResponderResult, RevocationHandle
from pipeline.store.sqlite import SqliteStore
from schemas.actions import RevocationTarget

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Recorder:
    """A responder double (no HTTP): answers from a script, records every call."""

    name = "rec"
    kinds = frozenset({"token", "family", "session", "subject"})
    needs_handle = False

    def __init__(self, *script: ResponderResult) -> None:
        self.script = list(script)
        self.calls: list[RevocationTarget] = []

    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        self.calls.append(target)
        return self.script.pop(0) if self.script else ResponderResult.done()


def alert_doc(n: int = 1, rule: str = "replay.refresh_reuse", severity: str = "high", action: str = "revoke_family",
              user: str = "alice", client: str = "portal", source: str = "idp") -> dict[str, Any]:
    return {
        "@timestamp": T0.isoformat(),
        "alert": {"id": f"al-{n}", "severity": severity, "risk_score": 80, "summary": "s",
                  "first_seen": T0.isoformat(), "last_seen": T0.isoformat(), "count": 1, "status": "open"},
        "rule": {"id": rule, "name": rule, "category": rule.split(".")[0]},
        "token": {"id": f"rt-{n}", "family_id": f"fam-{n}", "type": "refresh"},
        "user": {"id": user, "name": user.title()}, "client": {"id": client}, "session": {"id": f"s-{n}"},
        "evidence": [{"event_id": f"ev-{n}", "kind": "refreshed", "time": T0.isoformat(), "source": source}],
        "threat": {"technique": []},
        "response": {"action": action, "state": "pending"},
    }


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> SqliteStore:
    return SqliteStore(":memory:", clock=clock)
