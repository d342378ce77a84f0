"""The anomaly detector's state tables: every value type survives its changelog codec,
bad rows are refused, and a checkpoint writes only the rows one use changed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.detector import (
    CLIENT_PROFILES,
    CLOSED_WINDOWS,
    DEVICE_CONTEXTS,
    HOUSEKEEPING,
    LAST_PRUNE,
    OPEN_WINDOWS,
    SUBJECT_PROFILES,
)
from detectors.anomaly.features import SUBJECT_USED, learn, update_window
from detectors.anomaly.last_device import LAST_DEVICE, LastDevice
from detectors.anomaly.profile import PROFILE, BehaviourProfile
from detectors.anomaly.window import WINDOW, BehaviourWindow, EvidenceRecord
from detectors.device import DeviceContext
from detectors.state import StateStore
from detectors.state_codec import dirty_records, restore
from detectors.tables import PLAIN, ValueCodec
from schemas.events import Binding, Request
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, SINGAPORE_VPS, T0, event

KEY_A = Binding(method="dpop", value="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
KEY_B = Binding(method="dpop", value="NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
START = T0.timestamp()  # the factories' time 0


def use(t: float, token: str = "at-1", path: str = "/orders/1", place=BERLIN_HOME, ua: str = "Mozilla/5.0 Firefox/120.0",
        proof: Binding | None = None, session: str | None = "sess-1", success: bool = True) -> Any:
    ev = event("used", t, token=token, place=place, user_agent=ua, scopes=("orders:read", "mail:read"),
               required=("orders:read",), proof=proof, session=session, success=success, expires_in=None)
    return ev.model_copy(update={"request": Request(id=f"{token}-{t}", method="GET", resource=path)})


def round_trip(codec: ValueCodec[Any], value: Any) -> Any:
    return codec.decode(orjson.loads(orjson.dumps(codec.encode(value))))


def busy_window() -> tuple[BehaviourWindow, BehaviourProfile]:
    """A window with every kind of content: novelties, drift, roaming, failures, evidence."""
    profile = BehaviourProfile(0.0)
    learn(profile, filled(BehaviourWindow.opened("at-0", 0.0, "alice", "portal"), [use(0, "at-0")]),
          SUBJECT_USED, 256, 0.99)
    win = BehaviourWindow.opened("at-1", 3600.0, "alice", "portal")
    steps = [
        use(3600, proof=KEY_A),
        use(3610, path="/mail/7", place=MUNICH_OTHER_ISP, ua="curl/8", proof=KEY_B, success=False),
        use(3620, path="/files/x", place=SINGAPORE_VPS),
        use(3630),
    ]
    previous: DeviceContext | None = None
    for ev in steps:
        previous = update_window(win, ev, profile, None, previous)
    return win, profile


def filled(win: BehaviourWindow, events: list) -> BehaviourWindow:
    for ev in events:
        update_window(win, ev, None, None)
    return win


def test_window_round_trips_through_json() -> None:
    win, _ = busy_window()
    assert win.requests == 4 and win.failures == 1 and win.network_switches == 3 and win.network_returns == 1
    assert win.notes.networks and win.notes.drift and len(win.evidence) >= 2  # the codec sees all parts
    assert round_trip(WINDOW, win) == win


def test_evidence_record_keeps_every_field() -> None:
    record = EvidenceRecord.of(use(10, place=SINGAPORE_VPS, success=False))
    win = filled(BehaviourWindow.opened("at-1", 10.0, "alice", None), [])
    win.evidence.append(record)
    assert round_trip(WINDOW, win).evidence == [record]
    assert record.asn is not None and record.hosting is True and record.succeeded is False
    assert record.scopes == ("mail:read", "orders:read") and record.token_id == "at-1"


def test_profile_round_trips_through_json_in_its_recency_order() -> None:
    win, profile = busy_window()
    learn(profile, win, SUBJECT_USED, 256, 0.99)
    restored = round_trip(PROFILE, profile)
    assert restored == profile
    assert list(restored.resources) == list(profile.resources)  # least recently used first: the eviction order
    assert round_trip(PROFILE, BehaviourProfile(None)) == BehaviourProfile(None)


def test_last_device_round_trips_through_json() -> None:
    last = LastDevice(DeviceContext("Firefox on Windows", None, f"dpop:{KEY_A.value}"), 3600.5)
    assert round_trip(LAST_DEVICE, last) == last


@pytest.mark.parametrize(("codec", "bad"), [
    (WINDOW, None), (WINDOW, ["at-1", 0.0]), (WINDOW, [1, 0.0, 0.0, "alice", None] + [[]] * 7),
    (PROFILE, {"w": 1}), (PROFILE, [None, "1", 0.0, 0.0, 0.0, [0.0] * 24, {}, {}, {}, {}, {}, {}]),
    (PROFILE, [None, 1, 0.0, 0.0, 0.0, [0.0] * 23, {}, {}, {}, {}, {}, {}]),
    (PROFILE, [None, 1, 0.0, 0.0, 0.0, [0.0] * 24, {"10.0.0.1": "yesterday"}, {}, {}, {}, {}, {}]),
    (LAST_DEVICE, ["Firefox", None, None]), (LAST_DEVICE, ["Firefox", None, None, None]),
])
def test_bad_rows_are_refused(codec: ValueCodec[Any], bad: Any) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
        codec.decode(bad)


def test_bad_window_fields_are_refused() -> None:
    win, _ = busy_window()
    good = orjson.loads(orjson.dumps(WINDOW.encode(win)))
    for path, value in [((5, 0), 1.5), ((6, 0), [1]), ((8, 0, 16), None), ((7, 0, 0), ["AS1", "1", None]),
                        ((2,), "late")]:
        bad = orjson.loads(orjson.dumps(good))
        target = bad
        for index in path[:-1]:
            target = target[index]
        target[path[-1]] = value
        with pytest.raises((ValueError, TypeError)):
            WINDOW.decode(bad)


def collector() -> AnomalyDetector:
    return AnomalyDetector(AnomalyConfig(min_profile_windows=1), collect=True)


def test_the_detector_keeps_its_state_in_typed_tables() -> None:
    det, state = collector(), StateStore()
    det.process(use(0, token="at-1"), state)
    det.process(use(700, token="at-1"), state)  # the first window is over: closed, waiting for expire
    assert list(state.table("anomaly", OPEN_WINDOWS, WINDOW)) == ["at-1"]
    assert [w.start for w in state.table("anomaly", CLOSED_WINDOWS, WINDOW).values()] == [START]
    assert dict(state.table("anomaly", DEVICE_CONTEXTS, LAST_DEVICE).items()) == {
        "s:sess-1": LastDevice(DeviceContext("Firefox", None, None), START + 700)}
    det.expire(START + 4000, state)  # judges both windows (alice has no profile yet: both teach it)
    assert len(state.table("anomaly", CLOSED_WINDOWS, WINDOW)) == len(state.table("anomaly", OPEN_WINDOWS, WINDOW)) == 0
    alice = state.table("anomaly", SUBJECT_PROFILES, PROFILE).get("alice")
    assert alice is not None and alice.windows == 2 and alice.first_window_start == START
    assert list(state.table("anomaly", CLIENT_PROFILES, PROFILE)) == ["portal"]
    assert state.table("anomaly", HOUSEKEEPING, PLAIN).get(LAST_PRUNE) == START + 4000


def row_key(table: str, key: str) -> bytes:
    return f"d:anomaly\x1f{table}\x1f".encode() + orjson.dumps(key)


def test_a_checkpoint_after_one_use_writes_only_its_rows_among_ten_thousand() -> None:
    det, state = collector(), StateStore(track_changes=True)
    for i in range(10_000):
        det.process(use(float(i) / 100, token=f"at-{i}", session=f"sess-{i}"), state)
    assert len(state.table("anomaly", OPEN_WINDOWS, WINDOW)) == 10_000
    dirty_records(state)  # the first checkpoint writes everything
    det.process(use(120.0, token="at-42", session="sess-42", path="/invoices"), state)
    records = dirty_records(state)
    assert sorted(key for key, _ in records) == sorted([row_key(OPEN_WINDOWS, "at-42"),
                                                        row_key(DEVICE_CONTEXTS, "s:sess-42")])
    window = dict(records)[row_key(OPEN_WINDOWS, "at-42")]
    assert window is not None
    assert WINDOW.decode(orjson.loads(window)[-1]) == state.table("anomaly", OPEN_WINDOWS, WINDOW).get("at-42")


def judged(events: list, path: Any, restart_at: set[int]) -> list[tuple[str, str, tuple[str, ...]]]:
    """Findings of a stream, the state restored from its changelog before each index in
    ``restart_at`` (as a new partition owner would)."""
    det = AnomalyDetector(AnomalyConfig(model_path=path, learning_period_s=0))
    state = StateStore(track_changes=True)
    changelog: list[tuple[bytes, bytes | None]] = []  # the topic, replayed in order
    findings = []
    for i, ev in enumerate(sorted(events, key=lambda e: e.epoch)):
        if i in restart_at:
            changelog += dirty_records(state)
            state = restore(StateStore(track_changes=True), changelog)
        findings += det.expire(ev.epoch, state) or []
        findings += det.process(ev, state)
        state.apply(ev)
    findings += det.finish(state)
    return [(f.key, f.summary, tuple(e.event_id for e in f.evidence)) for f in findings]


def test_restored_state_judges_as_if_never_interrupted(trained) -> None:
    from tests.anomaly.test_detector import DAY, routine, stolen

    _, path = trained
    events = routine() + stolen(8 * DAY)
    straight = judged(events, path, set())
    assert [key for key, _, _ in straight] == ["at-stolen"]
    n = len(events)
    assert judged(events, path, {n // 3, n // 2, n - 10, n - 3}) == straight  # the last two inside the stolen window
