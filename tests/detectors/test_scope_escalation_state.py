"""Scope escalation's typed state: held-scope rows travel exactly through the changelog
codec, bad records are refused, and a checkpoint writes only the rows that changed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.scope_escalation import HELD_SCOPES, HeldScopes, ScopeEscalationDetector
from detectors.state import StateStore
from detectors.state_codec import dirty_records, restore, snapshot_records
from tests.factories import T0, event

START = T0.timestamp()


def test_held_scopes_round_trip() -> None:
    for row in (HeldScopes(1.5, 86_400.0, frozenset({"admin", "root"})), HeldScopes(0.0, 0.0, frozenset())):
        back = HELD_SCOPES.decode(orjson.loads(orjson.dumps(HELD_SCOPES.encode(row))))
        assert back == row and type(back.first_seen) is float and type(back.held) is frozenset


@pytest.mark.parametrize("bad", [
    None, "abc", [1.0, 2.0], [1.0, 2.0, [], 4], ["1", 2.0, []], [1.0, True, []], [1.0, 2.0, "admin"],
    [1.0, 2.0, ["admin", 3]], {"first_seen": 1.0},
])
def test_held_scopes_refuse_bad_records(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
        HELD_SCOPES.decode(bad)


def use(t: float, subject: str, scopes: tuple[str, ...] = ("read",)) -> Any:
    return event("used", t, token="at-1", subject=subject, client=None, scopes=scopes)


def test_a_checkpoint_writes_only_the_changed_row() -> None:
    detector, store = ScopeEscalationDetector(), StateStore(track_changes=True)
    subjects = store.table("scope_escalation", "subjects", HELD_SCOPES)
    for i in range(10_000):
        subjects.put(f"user-{i}", HeldScopes(START, START, frozenset()))
    assert len(dirty_records(store)) == 10_000
    detector.process(use(60, "user-42"), store)  # seen again: last_seen moves
    [(key, value)] = dirty_records(store)
    assert b"subjects" in key and b"user-42" in key and value is not None
    detector.process(use(30, "user-42"), store)  # nothing new learned: nothing to write
    assert dirty_records(store) == []
    detector.process(use(90, "user-7", scopes=("admin",)), store)
    [(key, _)] = dirty_records(store)
    assert b"user-7" in key and subjects.get("user-7") == HeldScopes(START, START + 90, frozenset({"admin"}))


def test_expiry_writes_tombstones_for_the_forgotten_rows() -> None:
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(retention_s=3600))
    store = StateStore(track_changes=True)
    detector.process(use(0, "alice"), store)
    detector.process(use(10_000, "bob"), store)
    dirty_records(store)
    detector.expire(START + 10_000, store)
    gone = [key for key, value in dirty_records(store) if value is None]
    assert len(gone) == 1 and b"alice" in gone[0]


def test_a_restored_store_remembers_what_was_held() -> None:
    """A privileged scope held before the checkpoint is not new after the restore; one never
    held still is."""
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(learning_period_s=0))
    store = StateStore()
    detector.process(use(0, "alice", scopes=("admin",)), store)
    restored = restore(StateStore(), snapshot_records(store))
    assert restored.table("scope_escalation", "subjects", HELD_SCOPES).get("alice") == HeldScopes(
        START, START, frozenset({"admin"})
    )
    again = event("issued", 60, token="at-2", subject="alice", client=None, scopes=("admin",))
    assert detector.process(again, restored) == []
    wider = event("issued", 120, token="at-3", subject="alice", client=None, scopes=("admin", "root"))
    assert [f.rule.id for f in detector.process(wider, restored)] == [
        "scope_escalation.new_privileged_scope"
    ]
