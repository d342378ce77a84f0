"""Backlog replay progress: lines while the lag is high, with rate and time left, one when caught up."""

from __future__ import annotations

import logging

import pytest

from pipeline.service import backlog
from pipeline.service.backlog import BacklogProgress


def test_progress_reports_rate_and_eta_then_caught_up(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    clock = iter([0.0, 5.0, 10.0, 20.0, 21.0])
    monkeypatch.setattr(backlog.time, "monotonic", lambda: next(clock))
    progress = BacklogProgress(every_s=10.0, threshold=1_000)
    with caplog.at_level(logging.INFO, logger="tokenwatch.service"):
        progress.update(lag=50_000, records=0)        # t=0: starts
        progress.update(lag=45_000, records=5_000)    # t=5: too soon for another line
        progress.update(lag=40_000, records=10_000)   # t=10: 1,000 records/s, 40 s left
        progress.update(lag=30_000, records=20_000)   # t=20
        progress.update(lag=10, records=50_000)       # t=21: caught up
    lines = [(r.getMessage(), getattr(r, "records_per_s", None), getattr(r, "eta_s", None)) for r in caplog.records]
    assert lines == [
        ("replaying backlog", None, None),
        ("replaying backlog", 1000, 40),
        ("replaying backlog", 1000, 30),
        ("backlog caught up", None, None),
    ]
    assert not progress.catching_up


def test_no_progress_lines_without_a_backlog(caplog: pytest.LogCaptureFixture) -> None:
    progress = BacklogProgress(every_s=10.0, threshold=1_000)
    with caplog.at_level(logging.INFO, logger="tokenwatch.service"):
        progress.update(lag=999, records=5)
    assert caplog.records == []
