"""The notebooks' figures: what goes on the map, merged threshold labels, readable charts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd

from pipeline.analyst import plots

T0 = datetime(2026, 11, 9, 21, 0, tzinfo=timezone.utc)


def _row(event_id: str, kind: str, minute: int, country: str, as_org: str, lat: float, lon: float,
         token: str | None = "AT.victim") -> dict[str, object]:
    return {"event_id": event_id, "kind": kind, "time": T0 + timedelta(minutes=minute), "token": token,
            "country": country, "as_org": as_org, "lat": lat, "lon": lon, "hosting": False}


def lineage_after_disable() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A leaver's token used after an admin in Berlin disabled the account (post_revocation_use.after_disable)."""
    timeline = pd.DataFrame([
        _row("issue", "issued", 0, "DE", "Vodafone GmbH", 51.26, 9.64),
        _row("use-1", "used", 5, "DE", "Vodafone GmbH", 51.26, 9.64),
        _row("disable", "principal_disabled", 12, "DE", "deutsche telekom ag", 52.52, 13.40, token=None),
        _row("use-2", "used", 27, "DE", "vodafone gmbh", 51.26, 9.64),
    ])
    evidence = pd.DataFrame({"event_id": ["disable", "use-2"]})
    return timeline, evidence


def test_an_admins_disablement_is_not_a_place_the_token_was_used_from() -> None:
    timeline, evidence = lineage_after_disable()
    located = plots.holder_events(timeline)
    assert "disable" not in set(located["event_id"])
    assert plots.evidence_on_map(located, evidence)["event_id"].tolist() == ["use-2"]


def test_places_merge_as_name_spellings_and_keep_first_seen_order() -> None:
    timeline, _ = lineage_after_disable()
    where = plots.places(plots.holder_events(timeline))
    assert where[["country", "as_org", "events"]].values.tolist() == [["DE", "Vodafone GmbH", 3]]


def test_travel_map_has_a_basemap_title_axis_labels_and_one_legend_entry_per_network() -> None:
    timeline, evidence = lineage_after_disable()
    travel = pd.concat([timeline, pd.DataFrame([_row("use-sg", "used", 40, "SG", "starhub ltd", 1.35, 103.8)])])
    fig = plots.travel_map(plots.holder_events(travel), evidence, "Where it was used from")
    ax = fig.axes[0]
    assert ax.get_title() == "Where it was used from" and ax.get_xlabel() and ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["DE · Vodafone GmbH (3 events)", "SG · starhub ltd (1 event)", "alert evidence (this token's events)"]
    assert not [t for t in ax.texts if t.get_text()], "places are named in the legend, not as text on the map"
    assert len(ax.collections) >= 4  # land, lakes, coastlines, borders under the points


def test_thresholds_with_the_same_outcome_are_one_labelled_point() -> None:
    """The tuning chart piled every threshold's label on (1, 1.0); now they are one label."""
    frame = pd.DataFrame({"value": [1, 10, 60, 300, 7200], "alerts": [1, 1, 1, 1, 3], "caught": [1, 1, 1, 1, 1],
                          "attacks": 1, "false_positives": [0, 0, 0, 0, 2]})
    points = plots.tradeoff_points(frame)
    assert points[["alerts", "recall", "label"]].values.tolist() == [[1, 1.0, "1–300"], [3, 1.0, "7200"]]


def test_tradeoff_chart_has_a_title_and_labels_only_a_few_points() -> None:
    sweep = pd.DataFrame({"value": [1, 10, 60, 300, 1800, 7200], "alerts": [0, 0, 1, 1, 2, 2],
                          "caught": [0, 0, 1, 1, 1, 1], "attacks": 1, "false_positives": [0, 0, 0, 0, 1, 1]})
    fig = plots.tradeoff_chart({"replay.concurrent_window_s": sweep}, {"replay.concurrent_window_s": 60})
    ax = fig.axes[0]
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert {t.get_text() for t in ax.texts} == {"1–10", "1800–7200", "60–300 (configured)"}


def test_sweep_panels_draw_equal_lines_in_different_styles() -> None:
    sweep = pd.DataFrame({"value": [0, 5, 30], "alerts": [2, 2, 2], "caught": [2, 2, 2], "attacks": 2,
                          "false_positives": [0, 0, 0]})
    fig = plots.sweep_panels({"replay.refresh_grace_s": sweep}, {"replay.refresh_grace_s": 30})
    lines = fig.axes[0].get_lines()[:3]
    styles = {(line.get_linestyle(), line.get_marker(), line.get_linewidth()) for line in lines}
    assert len(styles) == 3
    assert fig.axes[0].get_xlabel() == "threshold (s, log scale)" and fig.texts[0].get_text()  # suptitle


def test_budget_chart_says_what_the_budget_is_and_whether_it_holds() -> None:
    fig = plots.budget_chart(84.0, 20.0, {"scope_sweep": (8, 8), "low_and_slow": (0, 3)})
    budget_ax = fig.axes[1]
    assert "over budget ×4.2" in budget_ax.get_title()
    assert budget_ax.get_ylabel() == "alerts per 10,000 active tokens per day"
    assert "within budget" in plots.budget_chart(5.0, 20.0, {}).axes[1].get_title()
