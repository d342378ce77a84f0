"""Expiry that costs what expires (issue 17): held rows are kept in the order they go stale,
so a sweep stops at the first fresh one, and the lineage wheel takes only the buckets due.
These pin the orders those sweeps rely on, including after out-of-order sightings and a
changelog restore, and that the right rows are forgotten."""

from __future__ import annotations

from typing import Any

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.detector import SUBJECT_PROFILES
from detectors.anomaly.profile import PROFILE
from detectors.scope_escalation import HELD_SCOPES, ScopeEscalationDetector
from detectors.state import StateStore
from detectors.state_codec import restore, snapshot_records
from tests.factories import T0, event

START = T0.timestamp()
DAY = 86_400.0


def use(t: float, subject: str, scopes: tuple[str, ...] = ("read",), token: str = "at-1") -> Any:
    return event("used", t, token=token, subject=subject, client=None, scopes=scopes)


def subjects_of(store: StateStore) -> list[str]:
    return list(store.table("scope_escalation", "subjects", HELD_SCOPES))


# -- scope_escalation: subjects and clients in last-seen order ------------------------------
def test_a_later_sighting_moves_the_row_last_and_the_sweep_forgets_the_stale_one() -> None:
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(retention_s=3_600))
    store = StateStore()
    detector.process(use(0, "alice"), store)
    detector.process(use(10, "bob"), store)
    detector.process(use(20, "alice"), store)  # alice seen again: now the freshest
    assert subjects_of(store) == ["bob", "alice"]
    detector.expire(START + 3_615, store)  # horizon 15: bob (10) is stale, alice (20) is not
    assert subjects_of(store) == ["alice"]


def test_an_earlier_sighting_moves_nothing() -> None:
    """A use older than the row's last sighting (out of order) changes neither its last seen
    nor its place; what it teaches (a privileged scope) is still recorded."""
    detector, store = ScopeEscalationDetector(), StateStore()
    detector.process(use(100, "alice"), store)
    detector.process(use(200, "bob"), store)
    detector.process(use(50, "alice", scopes=("admin",)), store)  # late, and learns a privileged scope
    table = store.table("scope_escalation", "subjects", HELD_SCOPES)
    assert subjects_of(store) == ["alice", "bob"]
    row = table.get("alice")
    assert row is not None and (row.first_seen, row.last_seen, row.held) == (
        START + 100, START + 100, frozenset({"admin"}))


def test_a_sighting_out_of_order_across_rows_is_forgotten_no_earlier() -> None:
    """Moved last with an earlier time than the row before it, a row waits for that row: it
    is forgotten late (by at most the disorder), never early, and the fresh row stays."""
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(retention_s=3_600))
    store = StateStore()
    detector.process(use(0, "alice"), store)
    detector.process(use(30, "bob"), store)
    detector.process(use(20, "alice"), store)  # later for alice, earlier than bob
    assert subjects_of(store) == ["bob", "alice"]
    detector.expire(START + 3_625, store)  # horizon 25: alice (20) is due but waits behind bob (30)
    assert subjects_of(store) == ["bob", "alice"]
    detector.expire(START + 3_600 + 3_631, store)  # the next sweep: both are due
    assert subjects_of(store) == []


def test_a_restore_gives_the_rows_back_in_last_seen_order() -> None:
    """The changelog holds rows in last-write order; a row changed in place (a scope learnt
    from a late event) was written after fresher rows. The restore sorts by last seen."""
    detector = ScopeEscalationDetector(ScopeEscalationDetector.Config(retention_s=3_600))
    store = StateStore(track_changes=True)
    detector.process(use(0, "alice"), store)
    detector.process(use(10, "bob"), store)
    detector.process(use(20, "carol"), store)
    detector.process(use(30, "alice"), store)  # alice moves last
    detector.process(use(5, "bob", scopes=("admin",)), store)  # bob written last, seen at 10
    restored = restore(StateStore(track_changes=True), snapshot_records(store))
    assert subjects_of(restored) == ["bob", "carol", "alice"]
    detector.expire(START + 3_625, restored)  # horizon 25: bob and carol go, alice stays
    assert subjects_of(restored) == ["alice"]


# -- anomaly: profiles in last-learnt order ------------------------------------------------
def anomaly_use(t: float, token: str, subject: str) -> Any:
    return event("used", t, token=token, subject=subject, client=None, session=f"s-{token}")


def test_profiles_stay_in_last_learnt_order_and_idle_ones_are_pruned() -> None:
    detector = AnomalyDetector(AnomalyConfig(window_s=60, profile_ttl_s=DAY), collect=True)
    store = StateStore()
    profiles = store.table("anomaly", SUBJECT_PROFILES, PROFILE)
    detector.process(anomaly_use(0, "t-a", "alice"), store)
    detector.process(anomaly_use(1, "t-b", "bob"), store)
    detector.expire(START + 120, store)  # both windows close: alice, then bob learnt
    assert list(profiles) == ["alice", "bob"]
    detector.process(anomaly_use(7_200, "t-a2", "alice"), store)
    detector.expire(START + 7_300, store)  # alice learns again: her row moves last
    assert list(profiles) == ["bob", "alice"]
    detector.expire(START + DAY + 1_000, store)  # bob's last window ended a day before: pruned
    assert list(profiles) == ["alice"]
    detector.expire(START + DAY + 7_300, store)
    assert list(profiles) == []


# -- lineage wheel ---------------------------------------------------------------------------
def test_the_wheel_expires_a_bucket_filed_behind_ones_already_expired() -> None:
    """A late event files its token under a bucket earlier than any left in the wheel (and
    than the last expiry): the next expiry still takes it."""
    store = StateStore()
    store.apply(event("issued", 10_000, token="fresh", expires_in=300))
    store.expire(START + 10_000)  # nothing is due yet
    assert set(store.tokens) == {"fresh"}
    store.apply(event("issued", 0, token="late", expires_in=60))  # long expired already
    assert store.expire(START + 10_060) == 1
    assert set(store.tokens) == {"fresh"}


def test_the_wheel_takes_due_buckets_earliest_first_and_keeps_the_rest() -> None:
    store = StateStore()
    for i, t in enumerate((7_200, 0, 3_600)):
        store.apply(event("issued", t, token=f"t{i}", expires_in=60))
    dropped = store.expire(START + 3_600 + 60 + store.limits.expired_retention_s + 120)
    assert dropped == 2 and set(store.tokens) == {"t0"}
    assert store.expire(START + 7_200 + 60 + store.limits.expired_retention_s + 120) == 1
    assert store.tokens == {}
