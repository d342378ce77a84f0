"""Geo divergence's typed state: session trails travel exactly through the changelog codec,
bad records are refused, and a checkpoint writes only the sessions that moved."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.geo_divergence import GeoDivergenceDetector
from detectors.geo_divergence_state import MAX_SESSION_POINTS, SESSION_TRAIL, SessionPoint, SessionTrail
from detectors.state import StateStore
from detectors.state_codec import dirty_records, restore, snapshot_records
from tests.factories import SINGAPORE_VPS, T0, event

START = T0.timestamp()
BERLIN = SessionPoint(START, 52.52, 13.405, None, "at-1", "ev-1", "used", "test", "DE", "Berlin", 3320,
                      "Deutsche Telekom AG", "79.200.1.10")
NOWHERE = SessionPoint(START + 60, float("inf"), -0.0, 12.5, "at-2", "ev-2", "issued", "okta", None, None, None,
                       None, None)


def test_session_trail_round_trip() -> None:
    for trail in (SessionTrail((BERLIN,)), SessionTrail((BERLIN, NOWHERE))):
        back = SESSION_TRAIL.decode(orjson.loads(orjson.dumps(SESSION_TRAIL.encode(trail))))
        assert back == trail and type(back.points) is tuple and type(back.points[0].time) is float


def point(**change: Any) -> list[Any]:
    values = SESSION_TRAIL.encode(SessionTrail((BERLIN,)))[0]
    fields = ["time", "lat", "lon", "accuracy_km", "token_id", "event_id", "kind", "source", "country", "city",
              "asn", "as_org", "ip"]
    for name, value in change.items():
        values[fields.index(name)] = value
    return values


@pytest.mark.parametrize("bad", [
    None, [], "trail", [point()] * (MAX_SESSION_POINTS + 1), [point()[:-1]], [point() + [None]], [{"time": 1}],
    [point(time="1")], [point(lat=None)], [point(lon="north")], [point(asn="3320")], [point(asn=True)],
    [point(token_id=None)], [point(source=3)], [point(country=["DE"])], [point(ip=1)],
])
def test_session_trail_refuses_bad_records(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
        SESSION_TRAIL.decode(bad)


def test_a_checkpoint_writes_only_the_session_that_moved() -> None:
    detector, store = GeoDivergenceDetector(), StateStore(track_changes=True)
    sessions = store.table("geo_divergence", "sessions", SESSION_TRAIL)
    for i in range(10_000):
        sessions.put(f"s-{i}", SessionTrail((BERLIN,)))
    assert len(dirty_records(store)) == 10_000
    detector.process(event("used", 60, token="at-1", session="s-42"), store)
    [(key, value)] = dirty_records(store)
    assert b"sessions" in key and b"s-42" in key and value is not None
    trail = sessions.get("s-42")
    assert trail is not None and [p.time for p in trail.points] == [START, START + 60]
    assert list(sessions)[-1] == "s-42"  # moved last: expiry scans from the quietest session


def test_expiry_writes_tombstones_for_the_forgotten_sessions() -> None:
    detector, store = GeoDivergenceDetector(), StateStore(track_changes=True)
    detector.process(event("used", 0, token="at-1", session="s-old"), store)
    detector.process(event("used", 30 * 3600, token="at-2", session="s-new"), store)
    dirty_records(store)
    detector.expire(START + 30 * 3600, store)
    assert [(b"s-old" in key, value) for key, value in dirty_records(store)] == [(True, None)]


def test_a_restored_store_still_sees_the_session_travel() -> None:
    """The session's Berlin use, checkpointed and restored, is the other end of the travel,
    and is cited from the trail alone (the token's state was not kept)."""
    detector, store = GeoDivergenceDetector(), StateStore()
    detector.process(event("used", 0, token="at-1", session="s-1", event_id="ev-berlin"), store)
    restored = restore(StateStore(), snapshot_records(store))
    findings = detector.process(event("used", 20 * 60, token="at-2", session="s-1", place=SINGAPORE_VPS), restored)
    assert [(f.rule.id, f.key, f.details["other_event_id"]) for f in findings] == [
        ("geo_divergence.impossible_travel", "s-1", "ev-berlin")
    ]
    assert findings[0].evidence[0].city == "Berlin"
