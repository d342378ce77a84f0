"""pipeline.analyst.explore: the notebooks' frames, exact on the bundled sample stream."""

from __future__ import annotations

from pathlib import Path

import orjson
import pandas as pd
import pytest

from pipeline.analyst import explore
from pipeline.analyst.frames import ALERT_COLUMNS, EVENT_COLUMNS, ecs_event_row, event_row
from pipeline.cli.demo import DEMO_CONFIG
from pipeline.cli.main import SAMPLE_STREAM, main
from pipeline.config import load_settings
from pipeline.es.documents import ecs_event

# (rule, token) of every alert the sample raises, in event-time order (ties by alert id)
SAMPLE_ALERTS = [
    ("replay.refresh_reuse", "refresh-reuse-rt1"),
    ("geo_divergence.impossible_travel", "concurrent-use-at1"),
    ("geo_divergence.issue_use_divergence", "concurrent-use-at1"),
    ("replay.concurrent_use", "concurrent-use-at1"),
    ("replay.binding_mismatch", "dpop-mismatch-at1"),
    ("replay.duplicate_request", "duplicate-request-at1"),
    ("geo_divergence.issue_use_divergence", "impossible-travel-at1"),
    ("geo_divergence.impossible_travel", "impossible-travel-at1"),
    ("geo_divergence.issue_use_divergence", "hosting-divergence-at1"),
    ("scope_escalation.scope_not_granted", "scope-not-granted-at1"),
    ("scope_escalation.grant_widening", "refresh-widening-rt2"),
    ("scope_escalation.new_privileged_scope", "refresh-widening-rt2"),
    ("scope_escalation.new_privileged_scope", "new-privileged-scope-at2"),
    ("post_revocation_use.after_revocation", "use-after-revocation-at1"),
    ("post_revocation_use.after_revocation", "late-revocation-record-at1"),
    ("post_revocation_use.after_disable", "use-after-disable-at1"),
    ("post_revocation_use.after_expiry", "use-after-expiry-at1"),
]


@pytest.fixture
def settings():
    return load_settings(DEMO_CONFIG)  # the sample's corporate VPN is allowlisted there


@pytest.fixture
def sample_events(settings):
    return explore.read_events(explore.read_lines(SAMPLE_STREAM), settings)


@pytest.fixture
def events(sample_events) -> pd.DataFrame:
    return explore.events_frame_of(sample_events)


def pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["rule"], frame["token"], strict=True))


# -- alerts from the store -------------------------------------------------------------------
def test_alerts_frame_reads_what_detect_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWATCH_STORE__PATH", str(tmp_path / "tw.db"))
    monkeypatch.setenv("TOKENWATCH_CONFIG", str(DEMO_CONFIG))
    assert main(["detect", "--input", str(SAMPLE_STREAM), "--output", str(tmp_path / "alerts.jsonl"),
                 "--config", str(DEMO_CONFIG), "--store", "--dead-letter", str(tmp_path / "dead.jsonl")]) == 0
    frame = explore.alerts_frame()  # settings from TOKENWATCH_CONFIG + the store path override
    assert tuple(frame.columns) == ALERT_COLUMNS
    assert pairs(frame) == SAMPLE_ALERTS
    first = frame.iloc[0]
    assert first["time"] == pd.Timestamp("2026-11-23T01:15:00Z")
    assert (first["alert_id"].startswith("tw-"), first["category"], first["severity"], first["status"]) == (
        True, "replay", "high", "open")
    assert (first["user"], first["client"], first["family"], first["session"]) == (
        "refresh-reuse-user", "portal", "refresh-reuse-session", "refresh-reuse-session")
    assert (first["ip"], first["country"], first["as_org"], first["count"], first["risk_score"]) == (
        "79.200.1.10", "DE", "Deutsche Telekom AG", 1, 80)
    assert first["response"] == "revoke_family" and pd.isna(first["disposition"])
    assert str(frame["time"].dtype).startswith("datetime64") and str(frame["time"].dt.tz) == "UTC"

    doc = explore.alert_doc(first["alert_id"])
    evidence = explore.evidence_frame(doc)
    assert evidence["event_id"].tolist() == ["refresh-reuse-e3", "refresh-reuse-e4"]
    assert evidence["kind"].tolist() == ["refreshed", "refreshed"]
    with pytest.raises(KeyError):
        explore.alert_doc("tw-unknown")


def test_alerts_frame_of_no_alerts_has_the_columns() -> None:
    frame = explore.alerts_frame_of([])
    assert tuple(frame.columns) == ALERT_COLUMNS and frame.empty


# -- events ---------------------------------------------------------------------------------
def test_events_frame_of_the_sample(events: pd.DataFrame, settings) -> None:
    assert tuple(events.columns) == EVENT_COLUMNS
    assert len(events) == 76  # 77 lines, one an exact redelivery
    assert events["time"].is_monotonic_increasing
    reuse = events[events["event_id"].str.startswith("refresh-reuse-")]
    assert reuse[["kind", "token", "token_type", "parent"]].fillna("-").values.tolist() == [
        ["issued", "refresh-reuse-at1", "access", "-"],
        ["issued", "refresh-reuse-rt1", "refresh", "-"],
        ["refreshed", "refresh-reuse-rt2", "refresh", "refresh-reuse-rt1"],
        ["refreshed", "refresh-reuse-rt3", "refresh", "refresh-reuse-rt1"],
    ]
    assert set(reuse["scopes"]) == {"openid orders:read profile"}
    used = events[(events["session"] == "concurrent-use-session") & (events["kind"] == "used")]
    assert used[["ip", "country", "as_org", "request_id", "resource"]].values.tolist() == [
        ["79.200.1.10", "DE", "Deutsche Telekom AG", "concurrent-use-r3", "/orders/42"],
        ["139.59.1.1", "IN", "DIGITALOCEAN-ASN", "concurrent-use-r4", "/orders/42"],
    ]
    assert used["hosting"].tolist() == [False, True]
    assert used["status"].tolist() == [200, 200]
    assert used["lat"].notna().all() and used["lon"].notna().all()


def test_events_frame_reads_a_file_or_a_directory(tmp_path: Path, settings, events: pd.DataFrame,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    lines = SAMPLE_STREAM.read_bytes().splitlines(keepends=True)
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "a.jsonl").write_bytes(b"".join(lines[:40]))
    (tmp_path / "events" / "b.jsonl").write_bytes(b"\n".join(lines[40:]))
    from_dir = explore.events_frame(tmp_path, settings)  # a demo output directory: its events/
    pd.testing.assert_frame_equal(from_dir, events)
    monkeypatch.setenv("TOKENWATCH_EVENTS", str(SAMPLE_STREAM))
    pd.testing.assert_frame_equal(explore.events_frame(settings=settings), events)


def test_events_frame_never_holds_a_raw_token(tmp_path: Path, settings) -> None:
    raw = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXNpZ25hdHVyZQ"
    line = {"timestamp": "2026-11-23T10:00:00Z", "request_id": "r-1", "client_ip": "79.200.1.10", "method": "GET",
            "path": "/orders/1", "status": 200, "authorization": f"Bearer {raw}"}
    path = tmp_path / "gw.jsonl"
    path.write_bytes(orjson.dumps(line) + b"\n")
    frame = explore.events_frame(path, settings)
    assert len(frame) == 1
    assert frame["token"].iloc[0].startswith("hmac:")
    assert raw not in frame.to_csv()


def test_es_event_documents_flatten_like_canonical_events(sample_events) -> None:
    for event in sample_events:
        row = ecs_event_row(ecs_event(event.model_dump(mode="json")))
        expected = event_row(event)
        expected["time"] = event.time.isoformat().replace("+00:00", "Z")
        if event.token and event.token.expires_at:
            expected["expires_at"] = event.token.expires_at.isoformat().replace("+00:00", "Z")
        assert {k: row[k] for k in expected if k not in ("time", "expires_at")} == {
            k: v for k, v in expected.items() if k not in ("time", "expires_at")}, event.event_id
        assert pd.Timestamp(row["time"]) == pd.Timestamp(event.time)


# -- lineage ------------------------------------------------------------------------------
def steps(frame: pd.DataFrame) -> list[list[str]]:
    return frame[["step", "token"]].fillna("-").values.tolist()


def test_lineage_of_a_refresh_chain_from_any_of_its_tokens(events: pd.DataFrame) -> None:
    expected = [["issue", "refresh-reuse-at1"], ["issue", "refresh-reuse-rt1"],
                ["refresh", "refresh-reuse-rt2"], ["refresh", "refresh-reuse-rt3"]]
    assert steps(explore.lineage(events, token_id="refresh-reuse-rt1")) == expected
    assert steps(explore.lineage(events, token_id="refresh-reuse-rt3")) == expected


def test_lineage_orders_a_late_revocation_record_by_event_time(events: pd.DataFrame) -> None:
    assert steps(explore.lineage(events, token_id="late-revocation-record-at1")) == [
        ["issue", "late-revocation-record-at1"], ["issue", "late-revocation-record-rt1"],
        ["revocation", "late-revocation-record-at1"], ["use", "late-revocation-record-at1"]]


def test_lineage_of_a_user_includes_the_disablement_and_failed_uses(events: pd.DataFrame) -> None:
    assert steps(explore.lineage(events, user="use-after-disable-user")) == [
        ["issue", "use-after-disable-at1"], ["issue", "use-after-disable-rt1"], ["disable", "-"],
        ["use", "use-after-disable-at1"]]
    assert steps(explore.lineage(events, token_id="failed-use-after-disable-at1"))[-2:] == [
        ["disable", "-"], ["use (failed)", "failed-use-after-disable-at1"]]


def test_lineage_needs_exactly_one_of_token_and_user(events: pd.DataFrame) -> None:
    with pytest.raises(ValueError):
        explore.lineage(events)
    with pytest.raises(ValueError):
        explore.lineage(events, token_id="a", user="b")


# -- replay and scoring ---------------------------------------------------------------------
def test_replay_with_the_configured_thresholds_matches_detect(sample_events, settings) -> None:
    assert pairs(explore.alerts_frame_of(explore.replay(sample_events, {}, settings))) == SAMPLE_ALERTS


def test_replay_overrides_a_threshold(sample_events, settings) -> None:
    no_grace = explore.replay(sample_events, {"replay.refresh_grace_s": 0}, settings, only=["replay"])
    assert pairs(explore.alerts_frame_of(no_grace)) == [
        ("replay.refresh_reuse", "refresh-reuse-rt1"), ("replay.refresh_reuse", "refresh-retry-in-grace-rt1"),
        ("replay.concurrent_use", "concurrent-use-at1"), ("replay.binding_mismatch", "dpop-mismatch-at1"),
        ("replay.duplicate_request", "duplicate-request-at1")]
    # raw lines work too, and the nested form of an override
    long_grace = explore.replay(explore.read_lines(SAMPLE_STREAM), {"replay": {"refresh_grace_s": 900}}, settings,
                                only=["replay"])
    assert ("replay.refresh_reuse", "refresh-reuse-rt1") not in pairs(explore.alerts_frame_of(long_grace))
    with pytest.raises(ValueError):
        explore.replay(sample_events, {"refresh_grace_s": 1}, settings)


def _labels() -> pd.DataFrame:
    return pd.DataFrame([
        {"attack": "a", "rule": "replay.refresh_reuse", "keys": ("refresh-reuse-rt1",)},
        {"attack": "b", "rule": "replay.refresh_reuse", "keys": ("family:refresh-retry-in-grace-session",)},
        {"attack": "c", "rule": "replay.concurrent_use", "keys": ("concurrent-use-at1",)},
    ])


def test_score_and_false_positives(sample_events, settings) -> None:
    alerts = explore.replay(sample_events, {"replay.refresh_grace_s": 0}, settings, only=["replay"])
    scored = explore.score(alerts, _labels())
    assert scored["caught"].tolist() == [True, True, True]
    assert [len(ids) for ids in scored["alert_ids"]] == [1, 1, 1]
    assert pairs(explore.false_positives(alerts, _labels())) == [
        ("replay.binding_mismatch", "dpop-mismatch-at1"), ("replay.duplicate_request", "duplicate-request-at1")]


def test_tradeoff_counts_alerts_caught_and_false_positives(sample_events, settings) -> None:
    frame = explore.tradeoff(sample_events, _labels(), "replay.refresh_grace_s", [0, 30, 900],
                             rule="replay.refresh_reuse", settings=settings)
    assert frame.to_dict("records") == [
        {"value": 0, "alerts": 2, "caught": 2, "attacks": 2, "false_positives": 0},
        {"value": 30, "alerts": 1, "caught": 1, "attacks": 2, "false_positives": 0},
        {"value": 900, "alerts": 0, "caught": 0, "attacks": 2, "false_positives": 0},
    ]


def test_labels_frame_reads_the_demo_labels(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_bytes(orjson.dumps({"attacks": [
        {"attack": "refresh_token_replay", "rule": "replay.refresh_reuse", "description": "d", "user_id": "u1",
         "keys": ["t1", "family:f1"], "time": "2026-11-09T02:40:07.500Z", "source": "keycloak"}]}))
    frame = explore.labels_frame(tmp_path)
    assert frame[["attack", "rule", "user", "keys", "source"]].values.tolist() == [
        ["refresh_token_replay", "replay.refresh_reuse", "u1", ("t1", "family:f1"), "keycloak"]]
    assert frame["time"].iloc[0] == pd.Timestamp("2026-11-09T02:40:07.500Z")
