"""``CanonicalEvent.epoch``: computed once per event, by a descriptor that takes no lock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from schemas.events import CanonicalEvent, EventKind, computed_once


def _event(when: datetime) -> CanonicalEvent:
    return CanonicalEvent(event_id="e1", kind=EventKind.USED, time=when, source="gateway")


def test_epoch_is_the_time_in_epoch_seconds_whatever_the_zone() -> None:
    utc = datetime(2026, 11, 24, 8, 0, 0, 6000, tzinfo=timezone.utc)
    plus_two = utc.astimezone(timezone(timedelta(hours=2)))
    assert _event(utc).epoch == _event(plus_two).epoch == utc.timestamp() == 1795507200.006


def test_epoch_is_computed_once_and_is_no_field() -> None:
    event = _event(datetime(2026, 11, 24, 8, tzinfo=timezone.utc))
    first = event.epoch
    assert event.__dict__["epoch"] is first and event.epoch is first
    assert "epoch" not in event.model_dump() and "epoch" not in CanonicalEvent.model_fields
    assert event == _event(datetime(2026, 11, 24, 8, tzinfo=timezone.utc))  # one read, one not
    assert isinstance(CanonicalEvent.__dict__["epoch"], computed_once)
