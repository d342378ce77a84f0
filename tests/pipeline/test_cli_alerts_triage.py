"""`tokenwatch alerts …` for an analyst's day (issue 16): filters, formats, tables that fit the
terminal, colour, bulk triage with a dry run, assignees, case links, and the fixed wording."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import _parser, main
from pipeline.store import base as store_base
from pipeline.store.sqlite import SqliteStore
from tests.cli_args import with_actor
from tests.store.helpers import T0, alert_doc

NOW = T0 + timedelta(days=10)  # the data is ten days old: "--since 24h" finds nothing against the clock
ARN = "arn:aws:sts::111122223333:assumed-role/deploy-role-with-a-long-name/i-06679871c147141c9"
LONG = ("Refresh token 4b85b3d5-ca4b-4364-a148-d277b023f436 of family 78aaa6ea-54c6-45dd-b512-fe77a3237cc9 "
        "was redeemed again 15 min 9 s after it was rotated, from 185.220.101.6 (DE, Stiftung Erneuerbare "
        "Freiheit); the IdP rejected it, so someone still holds the old token.")


def seeded() -> list[dict[str, Any]]:
    a1 = alert_doc("tw-a1", 0, user="u-1", summary=LONG)
    a1["user"]["name"] = "Alice Smith"
    a1["user"]["email"] = "alice@example.com"  # a document may carry one (the store keeps what it gets)
    a2 = alert_doc("tw-a2", 10, rule="replay.concurrent_use", severity="critical", user=ARN, client="cli",
                   ip="198.51.100.9")
    a3 = alert_doc("tw-a3", 20, rule="geo_divergence.impossible_travel", severity="medium", user="u-3",
                   ip="203.0.113.99")
    a4 = alert_doc("tw-a4", 30, rule="scope_escalation.privileged_scope", severity="low", user="u-4",
                   ip="192.0.2.1")
    return [a1, a2, a3, a4]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.setattr(store_base, "utcnow", lambda: NOW)
    for name in ("TOKENWATCH_ACTOR", "TOKENWATCH_STORE__PATH", "COLUMNS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "tw.db"
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    store = SqliteStore(db)
    store.put_alerts(seeded())
    store.close()
    return config, db


def tw(config: Path, *argv: str, actor: str | None = "alice") -> int:
    return main(with_actor([*argv, "--config", str(config)], actor))


def listed(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    assert tw(config, "alerts", "list", "--json", *args) == 0
    return [json.loads(line)["alert"]["id"] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize(("args", "expected"), [
    (("--rule", "replay"), ["tw-a2", "tw-a1"]),
    (("--rule", "replay.*"), ["tw-a2", "tw-a1"]),
    (("--rule", "*travel", "--rule", "scope_escalation"), ["tw-a4", "tw-a3"]),
    (("--severity", "critical", "--severity", "medium"), ["tw-a3", "tw-a2"]),
    (("--status", "acknowledged", "--status", "closed"), ["tw-a3", "tw-a2"]),
    (("--user", "u-4"), ["tw-a4"]),
    (("--user", "alice smith"), ["tw-a1"]),
    (("--user", "ALICE@example.com"), ["tw-a1"]),
    (("--user", ARN, "--user", "u-3"), ["tw-a3", "tw-a2"]),
    (("--client", "cli"), ["tw-a2"]),
    (("--ip", "203.0.113.0/24"), ["tw-a3", "tw-a1"]),
    (("--ip", "198.51.100.9"), ["tw-a2"]),
    (("--token", "at-tw-a3"), ["tw-a3"]),
    (("--token", "fam-tw-a4"), ["tw-a4"]),
    (("--token", "at-tw…"), ["tw-a4", "tw-a3", "tw-a2", "tw-a1"]),
    (("--assignee", "carol"), ["tw-a1"]),
    (("--since", "2026-11-24T10:10Z", "--until", "2026-11-24T10:20:00Z"), ["tw-a3", "tw-a2"]),
    (("--since", "24h"), []),  # measured against the clock: the data is ten days old
    (("--since", "15m", "--relative-to", "data"), ["tw-a4", "tw-a3"]),  # against the newest alert (10:30)
    (("--until", "25m", "--relative-to", "data"), ["tw-a1"]),
    (("--since", "11d"), ["tw-a4", "tw-a3", "tw-a2", "tw-a1"]),
    (("--rule", "replay", "--status", "open", "--ip", "203.0.113.0/24"), ["tw-a1"]),
])
def test_every_list_filter(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                           expected: list[str]) -> None:
    config, db = env
    store = SqliteStore(db)
    store.set_status("tw-a2", "acknowledged", "bob")
    store.set_status("tw-a3", "closed", "bob", disposition="benign")
    store.assign("tw-a1", "carol", "bob")
    store.close()
    assert listed(config, capsys, *args) == expected


def test_an_unknown_rule_pattern_is_warned_about(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "alerts", "list", "--rule", "replay.refresh_resue") == 0
    captured = capsys.readouterr()
    assert captured.err == ("tokenwatch: warning: --rule 'replay.refresh_resue' matches no known rule; "
                            "did you mean replay.refresh_reuse?\n")
    assert captured.out.splitlines() == ["ID  TIME  SEVERITY  STATUS  RULE  USER  COUNT  SUMMARY"]


def test_csv_and_the_json_alias(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    store = SqliteStore(db)
    store.put_alerts([alert_doc("tw-f", 40, user="u-f", summary="=HYPERLINK(\"http://evil\")\x1b[2J")])
    store.close()
    assert tw(config, "alerts", "list", "--format", "csv", "--user", "u-f", "--user", "u-1") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["id"] for r in rows] == ["tw-f", "tw-a1"]
    assert rows[0]["summary"] == "'=HYPERLINK(\"http://evil\")\\x1b[2J"  # no formula, no raw escape
    assert (rows[1]["user_id"], rows[1]["user"], rows[1]["source_ip"], rows[1]["rule"]) == (
        "u-1", "alice@example.com", "203.0.113.7", "replay.refresh_reuse")
    assert tw(config, "alerts", "list", "--format", "json") == 0
    as_format = capsys.readouterr().out
    assert tw(config, "alerts", "list", "--json") == 0
    assert capsys.readouterr().out == as_format and len(as_format.splitlines()) == 5


@pytest.mark.parametrize("argv", [("alerts", "list"), ("alerts", "show", "tw-a1"), ("alerts", "suppressions")])
def test_read_only_commands_take_no_actor(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                          argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--config", str(env[0]), "--actor", "alice"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --actor alice" in capsys.readouterr().err


def _alerts_subparsers() -> dict[str, argparse.ArgumentParser]:
    top = _parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001 -- argparse has no public walk
    alerts = sub.choices["alerts"]
    asub = next(a for a in alerts._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001 -- argparse has no public walk into nested subcommands
    return dict(asub.choices)


def test_every_alerts_command_has_a_description_an_example_and_help_for_its_arguments() -> None:
    commands = _alerts_subparsers()
    assert set(commands) == {"list", "show", "ack", "close", "reopen", "assign", "suppress", "unsuppress",
                             "suppressions", "import"}
    for name, parser in commands.items():
        assert parser.description and len(parser.description) > 40, name
        assert parser.epilog and f"tokenwatch alerts {name}" in parser.epilog, name
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, name
        for action in parser._actions:  # noqa: SLF001 -- argparse has no public list of arguments
            if not action.option_strings:
                assert action.help, (name, action.dest)
        has_actor = any("--actor" in a.option_strings for a in parser._actions)  # noqa: SLF001 -- argparse has no public list of arguments
        assert has_actor == (name not in ("list", "show", "suppressions")), name


@pytest.mark.parametrize("width", [80, 160])
def test_the_table_fits_the_terminal_width(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    assert tw(env[0], "alerts", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and max(len(line) for line in lines) <= width
    assert all("…" in line for line in lines[3:5])  # the long summary and the ARN were cut, not wrapped
    [a1] = [line for line in lines if line.startswith("tw-a1")]
    assert "Refresh token 4b85b3d5… of family" in a1  # ids shortened: the words come sooner
    assert "  alice@exam" in a1  # the user as an analyst knows them, not u-1
    [a2] = [line for line in lines if line.startswith("tw-a2")]
    assert re.search(r"  arn:aw\S*…\S*141c9  ", a2)  # the ARN cut in the middle: both ends say something
    summary_at = lines[0].index("SUMMARY")
    assert width - summary_at >= (29 if width == 80 else 64)  # the summary keeps its room first


def test_piped_output_keeps_whole_lines_and_ids_on_request(env: tuple[Path, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "alerts", "list", "--ids") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("ID     TIME                  SEVERITY  STATUS  RULE                               "
                        "USER" + " " * (len(ARN) - 2) + "COUNT  SUMMARY")
    assert ARN in lines[3] and " u-1 " in lines[4]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("tty", "no_color", "colour"), [(True, None, True), (False, None, False),
                                                        (True, "1", False)])
def test_severity_colour_only_on_a_terminal(env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                            tty: bool, no_color: str | None, colour: bool) -> None:
    out = Tty() if tty else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv("COLUMNS", "120")
    if no_color:
        monkeypatch.setenv("NO_COLOR", no_color)
    assert tw(env[0], "alerts", "list") == 0
    text = out.getvalue()
    assert ("\x1b[1;31mcrit" in text and "\x1b[36mlow" in text) == colour
    assert ("\x1b" in text) == colour
    assert max(len(line.replace("\x1b[1;31m", "").replace("\x1b[31m", "").replace("\x1b[33m", "")
                   .replace("\x1b[36m", "").replace("\x1b[0m", "")) for line in text.splitlines()) <= 120


def test_a_shortened_id_from_a_narrow_table_is_resolved(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    store = SqliteStore(db)
    store.put_alerts([alert_doc("tw-a1b", 50)])
    store.close()
    assert tw(config, "alerts", "show", "tw-a3") == 0
    assert capsys.readouterr().out.startswith("Alert:       tw-a3  ")
    assert tw(config, "alerts", "show", "tw-a") == 2
    assert capsys.readouterr().err == "tokenwatch: alert id 'tw-a' is ambiguous: tw-a1 tw-a1b tw-a2 tw-a3 tw-a4\n"
    assert tw(config, "alerts", "ack", "tw-a4") == 0
    assert capsys.readouterr().out == "tw-a4: acknowledged by alice\n"


def test_show_names_the_source_network_and_a_tor_exit(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    tor = alert_doc("tw-tor", 40, ip="185.220.101.6")
    tor["source"] = {"ip": "185.220.101.6", "geo": {"country_iso_code": "DE"}, "hosting": True,
                     "as": {"organization": {"name": "Stiftung Erneuerbare Freiheit"}}}
    tor["evidence"][0].update(asn=None, as_org="Stiftung Erneuerbare Freiheit")
    listed_ = alert_doc("tw-list", 41, ip="203.0.113.50")
    listed_["source"].update(geo={"city_name": "Berlin", "country_iso_code": "DE"}, hosting=False)
    listed_["details"] = {"use_net_list": "tor-exits"}
    store = SqliteStore(db)
    store.put_alerts([tor, listed_])
    store.close()
    assert tw(config, "alerts", "show", "tw-tor") == 0
    out = capsys.readouterr().out.splitlines()
    assert "Source:      185.220.101.6  DE  AS Stiftung Erneuerbare Freiheit  hosting/VPN/Tor network, Tor exit" in out
    [row] = [line for line in out if line.startswith("2026-11-24 10:40:00Z")]
    assert "  Stiftung Erneuerbare Freiheit  " in row  # the AS name when only it is known, not "-"
    assert tw(config, "alerts", "show", "tw-list") == 0
    assert "Source:      203.0.113.50  Berlin, DE  AS64500 Example AS  egress list tor-exits, Tor exit" in (
        capsys.readouterr().out.splitlines())


def test_ack_on_a_closed_alert_is_refused_unless_reopened(env: tuple[Path, Path],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    assert tw(config, "alerts", "close", "tw-a1", "--disposition", "benign") == 0
    capsys.readouterr()
    assert tw(config, "alerts", "ack", "tw-a1") == 2
    assert capsys.readouterr().err == ("tokenwatch: alert tw-a1 is closed: acknowledging it would reopen it "
                                       "(pass --reopen to do so, or `alerts reopen` it first)\n")
    store = SqliteStore(db)
    assert store.get_alert("tw-a1")["alert"]["status"] == "closed"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
    store.close()
    assert tw(config, "alerts", "ack", "tw-a1", "--reopen", actor="bob") == 0
    assert tw(config, "alerts", "reopen", "tw-a1", actor="carol") == 0
    assert capsys.readouterr().out.splitlines() == ["tw-a1: acknowledged by bob", "tw-a1: reopened by carol"]
    store = SqliteStore(db)
    trail = [(e.verb, e.actor, e.details["previous"]) for e in store.audit_trail(alert_id="tw-a1")]
    assert trail == [("alert.close", "alice", "open"), ("alert.ack", "bob", "closed"),
                     ("alert.reopen", "carol", "acknowledged")]
    store.close()


def test_reimporting_the_same_alerts_says_none_are_new(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                                       tmp_path: Path) -> None:
    batch = tmp_path / "alerts.jsonl"
    batch.write_text("".join(json.dumps(alert_doc(i, m)) + "\n" for i, m in (("tw-a1", 0), ("tw-n1", 50))))
    assert tw(env[0], "alerts", "import", "--input", str(batch)) == 0
    assert tw(env[0], "alerts", "import", "--input", str(batch)) == 0
    assert capsys.readouterr().out.splitlines() == [f"imported 1 new, 1 already present from {batch}",
                                                    f"imported 0 new, 2 already present from {batch}"]


def test_bulk_close_is_a_dry_run_until_yes_and_audits_each_change(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    where = ("--where", "--rule", "replay", "--rule", "geo_divergence", "--disposition", "false_positive",
             "--note", "pentest", "--link", "https://tickets.example/SOC-9")
    store = SqliteStore(db)
    store.set_status("tw-a3", "closed", "bob", disposition="false_positive")
    store.close()
    assert tw(config, "alerts", "close", *where) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "3 alerts match rule=replay,geo_divergence; 1 left as they are: already closed"
    assert [line.split()[0] for line in out[1:-1]] == ["ID", "tw-a2", "tw-a1"]
    assert out[-1] == "dry run: nothing changed; add --yes to close 2 alerts"
    store = SqliteStore(db)
    assert [d["alert"]["status"] for d in store.list_alerts()] == ["open", "closed", "open", "open"]
    assert [e.verb for e in store.audit_trail()] == ["alert.close"]  # bob's, before
    store.close()

    assert tw(config, "alerts", "close", *where, "--yes") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "close: 2 alerts by alice"
    store = SqliteStore(db)
    assert {d["alert"]["id"]: d["alert"]["status"] for d in store.list_alerts()} == {
        "tw-a4": "open", "tw-a3": "closed", "tw-a2": "closed", "tw-a1": "closed"}
    changes = [(e.verb, e.alert_id, e.actor, e.why, e.details.get("link")) for e in store.audit_trail()
               if e.actor == "alice"]
    assert changes == [
        ("alert.close", "tw-a2", "alice", "pentest", "https://tickets.example/SOC-9"),
        ("alert.close", "tw-a1", "alice", "pentest", "https://tickets.example/SOC-9"),
        ("alert.bulk", None, "alice", "pentest", None),
    ]
    bulk = store.audit_trail()[-1]
    assert (bulk.target, bulk.result, bulk.details) == (
        "rule=replay,geo_divergence", "closed", {"verb": "close", "alerts": 2, "left": 1})
    assert store.get_alert("tw-a1")["triage"]["disposition"] == "false_positive"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
    store.close()


def test_bulk_ack_leaves_closed_alerts_unless_reopen(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    store = SqliteStore(db)
    store.set_status("tw-a1", "closed", "bob", disposition="benign")
    store.close()
    assert tw(config, "alerts", "ack", "--where", "--rule", "replay", "--yes") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "2 alerts match rule=replay; 1 left as they are: closed (--reopen acknowledges them too)"
    assert out[-1] == "acknowledge: 1 alerts by alice"
    assert tw(config, "alerts", "ack", "--where", "--rule", "replay", "--reopen", "--yes") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "acknowledge: 1 alerts by alice"
    store = SqliteStore(db)
    assert [store.get_alert(i)["alert"]["status"] for i in ("tw-a1", "tw-a2")] == ["acknowledged"] * 2  # type: ignore[index]  # the alerts are stored: a None fails the test just the same
    store.close()


@pytest.mark.parametrize(("argv", "error"), [
    (("alerts", "close", "--where", "--disposition", "benign", "--yes"),
     "--where needs at least one filter option (--status open matches every open alert)"),
    (("alerts", "ack", "tw-a1", "--where", "--rule", "replay"), "give an alert id or --where with filter options, not both"),
    (("alerts", "ack", "tw-a1", "--rule", "replay"), "filter options and --yes go with --where"),
    (("alerts", "ack"), "give an alert id, or --where with filter options (a dry run until --yes)"),
])
def test_bulk_triage_refuses_what_is_unclear(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                            argv: tuple[str, ...], error: str) -> None:
    assert tw(env[0], *argv) == 2
    assert capsys.readouterr().err.startswith(f"tokenwatch: {error}")
    store = SqliteStore(env[1])
    assert store.audit_trail() == []
    store.close()


def test_assign_one_and_many_shown_in_list_and_show(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    assert tw(config, "alerts", "assign", "tw-a4", "dave") == 0
    assert tw(config, "alerts", "assign", "--where", "--severity", "critical", "--severity", "medium", "carol") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "tw-a4: assigned to dave by alice"
    assert out[-1] == "dry run: nothing changed; add --yes to assign to carol 2 alerts"
    assert tw(config, "alerts", "assign", "--where", "--severity", "critical", "--severity", "medium", "carol",
              "--yes") == 0
    capsys.readouterr()
    assert tw(config, "alerts", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "ASSIGNEE" in lines[0]
    assert [line.split()[0] for line in lines if " carol " in line] == ["tw-a3", "tw-a2"]
    assert tw(config, "alerts", "show", "tw-a4") == 0
    assert "Assignee:    dave" in capsys.readouterr().out.splitlines()
    assert tw(config, "alerts", "assign", "tw-a4", "-", actor="bob") == 0
    assert capsys.readouterr().out == "tw-a4: unassigned by bob\n"
    store = SqliteStore(db)
    assert [(e.verb, e.alert_id, e.actor, e.target) for e in store.audit_trail()] == [
        ("alert.assign", "tw-a4", "alice", "dave"), ("alert.assign", "tw-a3", "alice", "carol"),
        ("alert.assign", "tw-a2", "alice", "carol"), ("alert.bulk", None, "alice", "severity=critical,medium"),
        ("alert.assign", "tw-a4", "bob", None)]
    store.close()


@pytest.mark.parametrize(("link", "error"), [
    ("ftp://tickets.example/1", "not an http(s) URL"),
    ("tickets.example/1", "not an http(s) URL"),
    ("https://user:secret@tickets.example/1", "must not carry a user or password"),
    ("https://tickets.example/a b", "one line without spaces"),
])
def test_a_link_must_be_an_http_url_without_credentials(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                                        link: str, error: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        tw(env[0], "alerts", "ack", "tw-a1", "--link", link)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert error in err and "secret" not in err


def test_a_link_is_shown_and_audited(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "alerts", "ack", "tw-a2", "--link", "https://tickets.example/browse/SOC-42") == 0
    capsys.readouterr()
    assert tw(env[0], "alerts", "show", "tw-a2") == 0
    out = capsys.readouterr().out.splitlines()
    assert "Link:        2026-12-04 10:00:00Z https://tickets.example/browse/SOC-42 (by alice)" in out
    store = SqliteStore(env[1])
    [entry] = store.audit_trail(alert_id="tw-a2")
    assert entry.details["link"] == "https://tickets.example/browse/SOC-42"
    store.close()
