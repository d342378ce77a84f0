"""`tokenwatch detect` end to end: files in, alerts and dead letters out, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline.cli.main import main
from pipeline.synthetic.sample import render, scenarios

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
OPAQUE = "opaque-refresh-secret-9f8e7d6c"


def _scenario_lines(name: str) -> list[bytes]:
    [scenario] = [s for s in scenarios() if s.name == name]
    return render([scenario]).splitlines()


def _detect(tmp_path: Path, lines: list[bytes], *extra: str) -> tuple[int, list[dict], list[dict]]:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    code = main(["detect", "--input", str(src), "--output", str(out), "--dead-letter", str(dead), *extra])
    alerts = [orjson.loads(x) for x in out.read_bytes().splitlines()] if out.exists() else []
    dead_letters = [orjson.loads(x) for x in dead.read_bytes().splitlines()] if dead.exists() else []
    return code, alerts, dead_letters


def test_hostile_lines_are_dead_lettered_and_valid_lines_around_them_still_alert(tmp_path: Path) -> None:
    attack = _scenario_lines("use-after-revocation")
    gateway_use = orjson.loads(attack[-1])
    hostile = [
        b"\x00\x01\x02 binary garbage",
        b'{"timestamp": "2026-11-24T09:00:00Z", "request_id": "x", "client_ip": ',
        orjson.dumps({**gateway_use, "status": "OK"}),
        orjson.dumps({**gateway_use, "client_ip": "A" * 300_000}),
        orjson.dumps({**gateway_use, "user_agent": "B" * 2_000_000}),
        orjson.dumps({**gateway_use, "timestamp": "2999-01-01T00:00:00Z"}),
        orjson.dumps({"completely": "unknown"}),
        b"[]",
        b"",
    ]
    lines = [attack[0], hostile[0], attack[1], hostile[1], attack[2], *hostile[2:], attack[3]]
    code, alerts, dead = _detect(tmp_path, lines)
    assert code == 0
    # The line whose 300 KB client_ip is cut (no address found, dropped) is kept: it repeats
    # the attack's request id from nowhere, so it is also a duplicate request.
    assert sorted((a["rule"]["id"], a["token"]["id"]) for a in alerts) == [
        ("post_revocation_use.after_revocation", "use-after-revocation-at1"),
        ("replay.duplicate_request", "use-after-revocation-at1"),
    ]
    reasons = [d["reason"] for d in dead]
    assert len(dead) == 7  # the 300 KB client_ip is cut, found no address, and dropped: the use is kept
    for expected in ("not JSON", "not JSON", "gateway: status", "line of", "in the future",
                     "unknown format", "not a JSON object but list"):
        assert any(expected in r for r in reasons), (expected, reasons)
        reasons.remove(next(r for r in reasons if expected in r))


def test_no_raw_bearer_token_reaches_alerts_or_dead_letters(tmp_path: Path) -> None:
    attack = _scenario_lines("scope-not-granted")
    use = orjson.loads(attack[-1])
    del use["jwt"]["jti"]
    use["authorization"] = f"Bearer {JWT}"
    bad = dict(use, status="teapot", refresh_token=OPAQUE)
    broken = (b'{"authorization": "Bearer ' + JWT.encode() + b'", "token": "' + OPAQUE.encode() + b'", ')
    code, alerts, dead = _detect(tmp_path, [*attack[:-1], orjson.dumps(use), orjson.dumps(bad), broken])
    assert code == 0
    assert [a["rule"]["id"] for a in alerts] == ["scope_escalation.scope_not_granted"]
    assert alerts[0]["token"]["id"].startswith("hmac:")
    assert len(dead) == 2
    everything = (tmp_path / "alerts.jsonl").read_text() + (tmp_path / "dead.jsonl").read_text()
    assert JWT not in everything and OPAQUE not in everything
    assert JWT[:40] not in everything


def test_same_event_delivered_twice_counts_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _scenario_lines("use-after-revocation")
    code, alerts, _ = _detect(tmp_path, lines + lines)
    assert code == 0
    assert len(alerts) == 1 and alerts[0]["alert"]["count"] == 1
    assert "duplicates: 4" in capsys.readouterr().err


def test_summary_reports_formats_dead_letters_and_alerts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _scenario_lines("use-after-revocation") + [b"nonsense"]
    _detect(tmp_path, lines)
    err = capsys.readouterr().err
    assert "5 lines, 4 events" in err
    assert "per format: canonical=3, gateway=1" in err
    assert "dead letters: 1 unknown=1" in err
    assert "alerts: 1 post_revocation_use.after_revocation=1" in err


def test_missing_input_exits_1_and_bad_config_exits_2(tmp_path: Path) -> None:
    assert main(["detect", "--input", str(tmp_path / "nope.jsonl"), "--output", str(tmp_path / "o")]) == 1
    config = tmp_path / "bad.toml"
    config.write_text("[detectors.replay]\nrefresh_grace = 5\n")
    src = tmp_path / "in.jsonl"
    src.write_text("")
    assert main(["detect", "--input", str(src), "--config", str(config)]) == 2


def test_console_script_reads_stdin_and_writes_stdout(tmp_path: Path) -> None:
    lines = b"\n".join(_scenario_lines("use-after-expiry")) + b"\n"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "detect", "--input", "-", "--dead-letter", str(tmp_path / "d")],
        input=lines, capture_output=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    alerts = [orjson.loads(x) for x in proc.stdout.splitlines()]
    assert [a["rule"]["id"] for a in alerts] == ["post_revocation_use.after_expiry"]
    assert b"tokenwatch detect: 1 lines" in proc.stderr


def test_store_flag_puts_the_same_alerts_in_the_store_and_a_rerun_updates_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.store.sqlite import SqliteStore

    db = tmp_path / "alerts.db"
    monkeypatch.setenv("TOKENWATCH_STORE__PATH", str(db))
    sample = tmp_path / "sample.jsonl"
    sample.write_bytes(render(scenarios()))
    out = tmp_path / "alerts.jsonl"
    args = ["detect", "-i", str(sample), "-o", str(out), "--dead-letter", str(tmp_path / "dl.jsonl"), "--store"]
    assert main(args) == 0
    written = {orjson.loads(line)["alert"]["id"] for line in out.read_bytes().splitlines()}
    store = SqliteStore(db)
    try:
        first = store.list_alerts(limit=1000)
        assert {a["alert"]["id"] for a in first} == written and len(first) == len(written) > 0
        some = first[0]["alert"]["id"]
        store.set_status(some, "acknowledged", actor="ana")
    finally:
        store.close()
    assert main(args) == 0  # the same input again: same ids, the analyst's status kept
    store = SqliteStore(db)
    try:
        again = store.list_alerts(limit=1000)
        assert len(again) == len(written)
        assert store.get_alert(some)["alert"]["status"] == "acknowledged"
    finally:
        store.close()
