"""`breaker reset` with nothing tripped says so and writes no audit entry (issue 16): an entry
"breaker.reset by ana" for a breaker that was closed records a change that never happened."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.response.breaker import FLAG, PRINCIPALS_FLAG
from pipeline.store.sqlite import SqliteStore

TRIP = {"tripped_at": "2026-11-24T09:00:00+00:00", "count": 21, "alert_id": "brk-1"}


def world(tmp_path: Path, flags: dict[str, str]) -> tuple[Path, Path]:
    db = tmp_path / "tw.db"
    store = SqliteStore(db)
    for name, value in flags.items():
        store.set_flag(name, value)
    store.close()
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    return config, db


def resets(db: Path) -> list[tuple[str, str | None, str | None]]:
    store = SqliteStore(db)
    try:
        return [(e.actor, e.why, e.result) for e in store.audit_trail() if e.verb == "breaker.reset"]
    finally:
        store.close()


def reset(config: Path, *more: str) -> int:
    return main(["breaker", "reset", "--actor", "ana", "--why", "storm over", "--config", str(config), *more])


def test_nothing_tripped_nothing_reset_nothing_audited(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config, db = world(tmp_path, {})
    assert reset(config) == 0
    assert capsys.readouterr().out == "breaker not tripped: nothing to reset\n"
    assert resets(db) == []


def test_a_principal_pattern_matching_no_trip_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = world(tmp_path, {PRINCIPALS_FLAG: json.dumps({"client:ci": TRIP})})
    assert reset(config, "--principal", "user:*") == 0
    assert capsys.readouterr().out == "no tripped principal matches user:*: nothing to reset\n"
    assert resets(db) == []
    assert main(["breaker", "status", "--config", str(config)]) == 0
    assert "client:ci TRIPPED" in capsys.readouterr().out  # untouched


def test_a_global_reset_with_only_principals_tripped_points_at_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = world(tmp_path, {PRINCIPALS_FLAG: json.dumps({"user:mallory": TRIP})})
    assert reset(config) == 0
    out = capsys.readouterr().out
    assert out.startswith("breaker not tripped: nothing to reset (1 principal breaker(s) are:")
    assert "--principal" in out and resets(db) == []


@pytest.mark.parametrize(("flags", "more", "said"), [
    ({FLAG: json.dumps(TRIP)}, (), "breaker reset by ana\n"),
    ({PRINCIPALS_FLAG: json.dumps({"user:mallory": TRIP})}, ("--principal", "user:*"),
     "breaker reset by ana for user:mallory\n"),
])
def test_a_tripped_breaker_is_reset_and_audited(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: dict[str, str], more: tuple[str, ...], said: str
) -> None:
    config, db = world(tmp_path, flags)
    assert reset(config, *more) == 0
    assert capsys.readouterr().out == said
    assert resets(db) == [("ana", "storm over", "reset")]
    assert reset(config, *more) == 0  # again: now nothing is tripped
    assert "nothing to reset" in capsys.readouterr().out and len(resets(db)) == 1
