"""Terminal injection: what an attacker writes into an input line (request id, path, user,
AS name, summary) or an analyst into a note reaches `tokenwatch alerts …`, `actions list`
and `revoke` as visible escapes, never as a screen-clearing sequence, a forged table row or
reversed text. Each case runs with the trick and with its benign twin (same fields, plain
text): the output has the same shape, line for line."""

from __future__ import annotations

import json
import unicodedata
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import main
from pipeline.store import base as store_base
from pipeline.store.sqlite import SqliteStore
from tests.cli_args import with_actor
from tests.store.helpers import T0, action, alert_doc

NOW = T0 + timedelta(days=1)
TRICK = "\x1b[2J\r\n| fake | row\u202e\x9b31m\t"
TRICK_SHOWN = "\\x1b[2J\\r\\n| fake | row\\u202e\\x9b31m\\t"
PLAIN = "plain"
# What must never reach a terminal raw (a line break only where the program puts one).
DANGEROUS = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def hostile_alert(text: str) -> dict[str, Any]:
    """An alert whose input-derived fields all carry ``text``."""
    doc = alert_doc("tw-x1", 0, user=f"u-{text}", summary=f"Token misused {text}")
    doc["user"]["name"] = f"name {text}"
    doc["token"]["id"] = f"at-{text}"
    doc["source"]["as"]["organization"]["name"] = f"AS {text}"
    newest = doc["evidence"][0]
    newest.update(request_id=f"req-{text}", resource=f"/api/{text}", as_org=f"Org {text}", city=f"City {text}",
                  client_id=f"c-{text}", outcome=f"ok{text}")
    return doc


def world(tmp_path: Path, text: str) -> Path:
    """A config naming a store with one alert and one action carrying ``text``; returns the config."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "tw.db"
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    store = SqliteStore(db)
    store.put_alerts([hostile_alert(text), alert_doc("tw-ok", 5)])
    planned = action("tw-x1", f"fam-{text}", next_minute=1).model_copy(update={"last_error": f"IdP said {text}"})
    store.put_action(planned)
    store.close()
    return config


def tw(config: Path, *argv: str, actor: str) -> int:
    return main(with_actor([*argv, "--config", str(config)], actor))


def run_all(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> dict[str, tuple[str, str]]:
    """Every human-readable command over the world of ``text``: {command: (stdout, stderr)}."""
    config = world(tmp_path, text)
    actor = "eve"  # a hostile actor is refused outright (tests/pipeline/test_actor.py)
    commands = {
        "ack": ("alerts", "ack", "tw-x1", "--note", f"note {text}"),
        "suppress": ("alerts", "suppress", "--user", f"u-{text}", "--for", "1d", "--reason", f"why {text}"),
        "list": ("alerts", "list"),
        "show": ("alerts", "show", "tw-x1"),
        "actions": ("actions", "list"),
        "suppressions": ("alerts", "suppressions"),
        "unknown": ("alerts", "show", f"tw-{text}"),
        "revoke-unknown": ("revoke", "--alert", f"tw-{text}"),
        "breaker-reset": ("breaker", "reset"),
    }
    outputs = {}
    for name, argv in commands.items():
        tw(config, *argv, actor=actor)
        captured = capsys.readouterr()
        outputs[name] = (captured.out, captured.err)
    return outputs


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_base, "utcnow", lambda: NOW)
    monkeypatch.delenv("COLUMNS", raising=False)


def raw_dangerous(text: str) -> list[str]:
    return [f"U+{ord(c):04X}" for c in text if c != "\n" and unicodedata.category(c) in DANGEROUS]


def test_no_control_or_bidi_character_reaches_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = run_all(tmp_path, TRICK, capsys)
    for name, (out, err) in outputs.items():
        assert raw_dangerous(out) == [] and raw_dangerous(err) == [], name
    for name in ("suppress", "list", "show", "actions", "suppressions"):
        assert TRICK_SHOWN in outputs[name][0], name
    for name in ("unknown", "revoke-unknown"):
        assert TRICK_SHOWN in outputs[name][1], name


def test_an_actor_name_with_control_characters_is_refused_and_shown_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = world(tmp_path, TRICK)
    assert tw(config, "alerts", "ack", "tw-x1", actor=f"eve-{TRICK}") == 2
    captured = capsys.readouterr()
    assert raw_dangerous(captured.err) == [] and TRICK_SHOWN in captured.err and captured.out == ""


def test_the_trick_forges_no_row_or_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tricked = run_all(tmp_path / "trick", TRICK, capsys)
    twin = run_all(tmp_path / "twin", PLAIN, capsys)
    for name in tricked:
        for stream in (0, 1):
            assert len(tricked[name][stream].splitlines()) == len(twin[name][stream].splitlines()), (name, stream)
    assert len(tricked["list"][0].splitlines()) == 3  # header + two alerts
    assert len(tricked["actions"][0].splitlines()) == 2  # header + one action


def test_exact_escaped_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = run_all(tmp_path, TRICK, capsys)
    listed = outputs["list"][0].splitlines()
    assert listed[2].startswith("tw-x1  2026-11-24 10:00:00Z  high      acknowledged  replay.refresh_reuse  "
                                f"name {TRICK_SHOWN}  1      Token misused {TRICK_SHOWN}")
    shown = outputs["show"][0].splitlines()
    assert f"User:        u-{TRICK_SHOWN} (name {TRICK_SHOWN})" in shown
    assert f"Summary:     Token misused {TRICK_SHOWN}" in shown
    assert f"Note:        2026-11-25 10:00:00Z eve: note {TRICK_SHOWN}" in shown
    [evidence] = [line for line in shown if "req-" in line]
    assert evidence.endswith(f"client=c-{TRICK_SHOWN} resource=/api/{TRICK_SHOWN} request_id=req-{TRICK_SHOWN}")
    assert f"AS64500 Org {TRICK_SHOWN}" in evidence
    assert outputs["ack"][0] == "tw-x1: acknowledged by eve\n"
    assert outputs["unknown"][1] == f"tokenwatch: no alert with id 'tw-{TRICK_SHOWN}' in the store\n"
    assert outputs["revoke-unknown"][1] == f"tokenwatch: no alert tw-{TRICK_SHOWN}\n"


def test_json_output_stays_exact_and_ascii(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--json`` keeps the value (escaping is for eyes, not for programs) in pure ASCII."""
    config = world(tmp_path, TRICK)
    for argv in (("alerts", "list", "--json"), ("alerts", "show", "tw-x1", "--json"), ("actions", "list", "--json")):
        assert tw(config, *argv, actor="alice") == 0
        out = capsys.readouterr().out
        assert out.isascii() and raw_dangerous(out) == [], argv
    assert tw(config, "alerts", "show", "tw-x1", "--json", actor="alice") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alert"]["evidence"][0]["request_id"] == f"req-{TRICK}"


def test_model_messages_escape_file_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / f"events{TRICK}.jsonl"
    assert main(["model", "train", "--input", str(missing), "--output", str(tmp_path / "m.json")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"tokenwatch: model train: input not found: {tmp_path}/events{TRICK_SHOWN}.jsonl\n"
