"""Top-N tables count over everything first, then cut."""

from __future__ import annotations

import pandas as pd

from pipeline.analyst.tables import top_counts


def test_a_user_on_top_by_alerts_shows_their_real_event_count() -> None:
    """Notebook 01 used to join two top-10 lists and fill the gaps with 0: a user with many
    alerts and few events showed ``events 0``."""
    busy = [f"busy-{i:02}" for i in range(12) for _ in range(100 - i)]  # 12 users with many events
    events = pd.Series([*busy, "quiet", "quiet", "quiet"], name="user")
    alerts = pd.Series(["quiet"] * 5 + ["busy-11"], name="user")
    by_alerts = top_counts({"events": events, "alerts": alerts}, by=["alerts", "events"])
    assert list(by_alerts.index[:2]) == ["quiet", "busy-11"]
    assert by_alerts.loc["quiet"].tolist() == [3, 5]
    assert by_alerts.loc["busy-11"].tolist() == [89, 1]  # not among the top 10 by events, counted all the same
    assert len(by_alerts) == 10


def test_by_events_and_ties_by_value() -> None:
    events = pd.Series(["b", "a", "a", "b", "c"], name="user")
    alerts = pd.Series(["c"], name="user")
    table = top_counts({"events": events, "alerts": alerts}, by=["events", "alerts"], n=2)
    assert table.index.tolist() == ["a", "b"] and table["events"].tolist() == [2, 2]
    assert table.index.name == "user"


def test_missing_values_are_not_a_user() -> None:
    table = top_counts({"events": pd.Series(["a", None, None]), "alerts": pd.Series([None], dtype=object)})
    assert table.index.tolist() == ["a"] and table.loc["a"].tolist() == [1, 0]
