"""`tokenwatch alerts …` / `tokenwatch actions list` against a temporary SQLite store."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

import pipeline.actor as actor
from pipeline.cli.main import main
from pipeline.store import base as store_base
from pipeline.store.sqlite import SqliteStore
from schemas.alerts import Alert
from tests.cli_args import with_actor
from tests.store.helpers import T0, action, alert_doc

NOW = T0 + timedelta(days=1)  # 2026-11-25 10:00:00Z


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A config file naming a store seeded with two alerts and one action; the clock stands at NOW."""
    monkeypatch.setattr(store_base, "utcnow", lambda: NOW)
    monkeypatch.delenv("TOKENWATCH_ACTOR", raising=False)
    monkeypatch.delenv("TOKENWATCH_STORE__PATH", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # piped: tables keep whole lines
    db = tmp_path / "tw.db"
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{db}"\n', encoding="utf-8")
    store = SqliteStore(db)
    store.put_alerts([
        alert_doc("tw-a1", 0),
        alert_doc("tw-a2", 10, rule="geo_divergence.impossible_travel", severity="medium", user="bob"),
    ])
    store.put_action(action("tw-a1", "fam-tw-a1", next_minute=1))
    store.close()
    return config, db


def tw(config: Path, *argv: str, actor: str | None = "alice") -> int:
    return main(with_actor([*argv, "--config", str(config)], actor))


def stored(db: Path) -> SqliteStore:
    return SqliteStore(db)


def test_alerts_list_table(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "alerts", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "ID     TIME                  SEVERITY  STATUS  RULE                              USER   COUNT  SUMMARY",
        "tw-a2  2026-11-24 10:10:00Z  medium    open    geo_divergence.impossible_travel  bob    1      Token at-tw-a2 misused by bob.",
        "tw-a1  2026-11-24 10:00:00Z  high      open    replay.refresh_reuse              alice  1      Token at-tw-a1 misused by alice.",
    ]


def test_alerts_list_json_and_filters(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = env
    assert tw(config, "alerts", "list", "--json") == 0
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [d["alert"]["id"] for d in docs] == ["tw-a2", "tw-a1"]
    assert {k: v for k, v in docs[1].items() if k != "triage"} == alert_doc("tw-a1", 0)
    cases = {
        ("--rule", "replay.refresh_reuse"): ["tw-a1"],
        ("--severity", "medium"): ["tw-a2"],
        ("--user", "alice"): ["tw-a1"],
        ("--status", "acknowledged"): [],
        ("--since", "2026-11-24T10:05:00Z"): ["tw-a2"],
        ("--since", "23h55m"): ["tw-a2"],  # NOW - 23h55m = 2026-11-24 10:05Z
        ("--since", "2d"): ["tw-a2", "tw-a1"],
        ("--limit", "1"): ["tw-a2"],
    }
    for args, expected in cases.items():
        assert tw(config, "alerts", "list", "--json", *args) == 0
        assert [json.loads(x)["alert"]["id"] for x in capsys.readouterr().out.splitlines()] == expected, args


def test_ack_and_close_are_stored_and_audited(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    assert tw(config, "alerts", "ack", "tw-a1", "--note", "on it") == 0
    assert tw(config, "alerts", "close", "tw-a1", "--disposition", "true_positive", "--note", "user confirmed",
              actor="bob") == 0
    assert capsys.readouterr().out.splitlines() == [
        "tw-a1: acknowledged by alice",
        "tw-a1: closed (true_positive) by bob",
    ]
    assert tw(config, "alerts", "list", "--status", "closed") == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("tw-a1  2026-11-24 10:00:00Z  high      closed")
    store = stored(db)
    doc = store.get_alert("tw-a1")
    assert doc is not None and doc["triage"]["disposition"] == "true_positive"
    assert [(e.verb, e.actor, e.why, e.result) for e in store.audit_trail(alert_id="tw-a1")] == [
        ("alert.ack", "alice", "on it", "acknowledged"),
        ("alert.close", "bob", "user confirmed", "closed"),
    ]
    store.close()


def test_actor_defaults_to_the_environment_then_the_login_name(
    env: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config, db = env
    monkeypatch.setattr(actor.getpass, "getuser", lambda: "login-name")
    assert tw(config, "alerts", "ack", "tw-a1", actor=None) == 0
    monkeypatch.setenv("TOKENWATCH_ACTOR", "soc-dave")
    assert tw(config, "alerts", "reopen", "tw-a1", actor=None) == 0
    store = stored(db)
    assert [(e.verb, e.actor) for e in store.audit_trail(alert_id="tw-a1")] == [
        ("alert.ack", "login-name"), ("alert.reopen", "soc-dave")]
    store.close()


def test_close_needs_a_disposition(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        tw(env[0], "alerts", "close", "tw-a1")
    assert exit_.value.code == 2
    assert "--disposition" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ("alerts", "show", "tw-nope"),
    ("alerts", "ack", "tw-nope"),
    ("alerts", "close", "tw-nope", "--disposition", "benign"),
])
def test_unknown_alert_id_exits_2(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], argv: tuple) -> None:
    assert tw(env[0], *argv) == 2
    out = capsys.readouterr()
    assert out.err == "tokenwatch: no alert with id 'tw-nope' in the store\n"
    assert out.out == ""


def test_alerts_show_timeline_actions_and_audit(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, _ = env
    assert tw(config, "alerts", "ack", "tw-a1", "--note", "on it") == 0
    capsys.readouterr()
    assert tw(config, "alerts", "show", "tw-a1") == 0
    assert capsys.readouterr().out.splitlines() == [
        "Alert:       tw-a1  high (risk 80)  acknowledged",
        "Rule:        replay.refresh_reuse (replay refresh_reuse)",
        "Summary:     Token at-tw-a1 misused by alice.",
        "Seen:        2026-11-24 09:59:00Z .. 2026-11-24 10:00:00Z  count 1",
        "Token:       at-tw-a1 type refresh family fam-tw-a1",
        "User:        alice",
        "Client:      portal",
        "Source:      203.0.113.7  AS64500 Example AS",
        "Technique:   T1550.001 Application Access Token",
        "Response:    revoke_family pending",
        "Note:        2026-11-25 10:00:00Z alice: on it",
        "",
        "Evidence (timeline):",
        "TIME                  KIND       SOURCE    TOKEN     IP            PLACE       AS       OUTCOME  DETAIL",
        "2026-11-24 09:59:00Z  refreshed  keycloak  at-tw-a1  198.51.100.1  Berlin, DE  -        -        client=portal",
        "2026-11-24 10:00:00Z  refreshed  keycloak  at-tw-a1  203.0.113.7   SG          AS64500  -        client=portal",
        "",
        "Actions:",
        "ID                            CREATED               ALERT  ACTION         TARGET            MODE  STATE    ATTEMPTS  NEXT                  ACTOR       ERROR",
        "act-9965dcb27cc434f88e84101a  2026-11-24 10:00:00Z  tw-a1  revoke_family  family:fam-tw-a1  auto  pending  0         2026-11-24 10:01:00Z  tokenwatch  -",
        "",
        "Audit trail:",
        "TIME                  ACTOR  VERB       TARGET  RESULT        WHY",
        "2026-11-25 10:00:00Z  alice  alert.ack  -       acknowledged  on it",
    ]


def test_alerts_show_json(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "alerts", "show", "tw-a2", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["alert"]["alert"]["id"] == "tw-a2"
    assert (shown["actions"], shown["audit"]) == ([], [])


def test_suppress_creates_an_audited_suppression_that_closes_new_alerts(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, db = env
    assert tw(config, "alerts", "suppress", "--rule", "replay.refresh_reuse", "--ip", "203.0.113.0/24",
              "--for", "7d", "--reason", "pentest week") == 0
    line, hint = capsys.readouterr().out.splitlines()
    assert line.endswith(": rule=replay.refresh_reuse ip=203.0.113.0/24 until 2026-12-02 10:00:00Z by alice")
    assert hint == "1 open alerts match and stay open (--close-matching closes them): tw-a1"
    store = stored(db)
    [s] = store.active_suppressions(NOW)
    assert (s.rule_id, s.ip, s.actor, s.reason, s.expires) == (
        "replay.refresh_reuse", "203.0.113.0/24", "alice", "pentest week", NOW + timedelta(days=7))
    assert [(e.verb, e.actor, e.target, e.why) for e in store.audit_trail()] == [
        ("alert.suppress", "alice", "rule=replay.refresh_reuse ip=203.0.113.0/24", "pentest week")]
    store.close()

    batch = tmp_path / "alerts.jsonl"
    batch.write_text(json.dumps(alert_doc("tw-new", 30)) + "\n", encoding="utf-8")
    assert tw(config, "alerts", "import", "--input", str(batch)) == 0
    assert tw(config, "alerts", "list", "--status", "closed", "--json") == 0
    [closed] = [json.loads(x) for x in capsys.readouterr().out.splitlines()[1:]]
    assert (closed["alert"]["id"], closed["triage"]["suppressed_by"]) == ("tw-new", s.id)

    assert tw(config, "alerts", "suppressions") == 0
    assert capsys.readouterr().out.splitlines()[1] == (
        f"{s.id}  2026-12-02 10:00:00Z  rule=replay.refresh_reuse ip=203.0.113.0/24  alice  pentest week")


@pytest.mark.parametrize(("args", "error"), [
    (("--for", "1h"), "a suppression needs at least one criterion (rule, user, client, ip or asn)"),
    (("--user", "bob", "--expires", "2026-11-25T09:00:00Z"), "expires must be after created"),
    (("--ip", "10.0.0.300", "--for", "1h"), "10.0.0.300"),
])
def test_bad_suppressions_exit_2(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], args: tuple, error: str
) -> None:
    assert tw(env[0], "alerts", "suppress", "--reason", "x", *args) == 2
    assert error in capsys.readouterr().err
    store = stored(env[1])
    assert store.active_suppressions(NOW) == [] and store.audit_trail() == []
    store.close()


@pytest.mark.parametrize(("rule", "error"), [
    ("replay.refresh_resue", "--rule 'replay.refresh_resue' is not a rule id; did you mean replay.refresh_reuse?"),
    ("replay.zz*", "--rule 'replay.zz*' matches no rule; rule ids: anomaly.behaviour, "),
    ("nothing-like-it", "--rule 'nothing-like-it' is not a rule id; rule ids: anomaly.behaviour, "),
])
def test_suppress_refuses_a_rule_id_no_alert_can_carry(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], rule: str, error: str
) -> None:
    """A typo made a suppression that silently never matched."""
    assert tw(env[0], "alerts", "suppress", "--rule", rule, "--for", "1d", "--reason", "x") == 2
    assert capsys.readouterr().err.startswith(f"tokenwatch: {error}")
    store = stored(env[1])
    assert store.active_suppressions(NOW) == [] and store.audit_trail() == []
    store.close()


def test_suppress_accepts_a_glob_that_matches_known_rules_and_it_suppresses_them(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, db = env
    assert tw(config, "alerts", "suppress", "--rule", "replay.*", "--user", "carol", "--for", "1d",
              "--reason", "carol's load test") == 0
    batch = tmp_path / "alerts.jsonl"
    batch.write_text("".join(json.dumps(alert_doc(i, 30, rule=r, user=u)) + "\n" for i, r, u in (
        ("tw-c1", "replay.concurrent_use", "carol"), ("tw-c2", "geo_divergence.impossible_travel", "carol"),
        ("tw-c3", "replay.concurrent_use", "dave"))), encoding="utf-8")
    assert tw(config, "alerts", "import", "--input", str(batch)) == 0
    store = stored(db)
    assert {i: store.get_alert(i)["alert"]["status"] for i in ("tw-c1", "tw-c2", "tw-c3")} == {  # type: ignore[index]  # the alerts are stored: a None fails the test just the same
        "tw-c1": "closed", "tw-c2": "open", "tw-c3": "open"}
    store.close()


@pytest.mark.parametrize(("args", "ok"), [
    (("--for", "90d"), True),
    (("--for", "91d"), False),
    (("--for", "3650d"), False),
    (("--expires", "2027-02-23T10:00:00Z"), True),  # NOW + 90 days
    (("--expires", "2027-02-23T10:00:01Z"), False),
])
def test_suppressions_last_at_most_the_configured_maximum(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], args: tuple, ok: bool
) -> None:
    assert tw(env[0], "alerts", "suppress", "--user", "bob", "--reason", "x", *args) == (0 if ok else 2)
    err = capsys.readouterr().err
    if not ok:
        assert err == ("tokenwatch: a suppression may last at most 90 days ([store] max_suppression_days); "
                       "a lasting exception belongs in [[enrich.allowlist]]\n")
    store = stored(env[1])
    assert len(store.active_suppressions(NOW)) == (1 if ok else 0)
    store.close()


def test_the_maximum_is_configurable(env: tuple[Path, Path]) -> None:
    config, db = env
    config.write_text(config.read_text(encoding="utf-8") + "max_suppression_days = 7\n", encoding="utf-8")
    assert tw(config, "alerts", "suppress", "--user", "bob", "--reason", "x", "--for", "8d") == 2
    assert tw(config, "alerts", "suppress", "--user", "bob", "--reason", "x", "--for", "7d") == 0


def test_unsuppress_removes_it_audited_and_new_alerts_stay_open(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, db = env
    assert tw(config, "alerts", "suppress", "--user", "carol", "--for", "1d", "--reason", "load test") == 0
    suppression_id = capsys.readouterr().out.split()[1].rstrip(":")
    assert tw(config, "alerts", "unsuppress", suppression_id, "--reason", "load test over", actor="bob") == 0
    assert capsys.readouterr().out == f"suppression {suppression_id} removed (user=carol) by bob\n"
    batch = tmp_path / "alerts.jsonl"
    batch.write_text(json.dumps(alert_doc("tw-c1", 30, user="carol")) + "\n", encoding="utf-8")
    assert tw(config, "alerts", "import", "--input", str(batch)) == 0
    store = stored(db)
    assert store.get_alert("tw-c1")["alert"]["status"] == "open"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
    assert store.active_suppressions(NOW) == []
    assert [(e.verb, e.actor, e.target, e.why, e.details.get("suppression")) for e in store.audit_trail()
            if e.verb.startswith("alert.")] == [
        ("alert.suppress", "alice", "user=carol", "load test", suppression_id),
        ("alert.unsuppress", "bob", "user=carol", "load test over", suppression_id)]
    store.close()
    assert tw(config, "alerts", "unsuppress", suppression_id) == 2
    assert capsys.readouterr().err == (
        f"tokenwatch: no suppression with id '{suppression_id}' (see `tokenwatch alerts suppressions`)\n")


def test_close_matching_closes_the_open_matching_alerts_audited(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    store = stored(db)
    store.put_alerts([alert_doc("tw-a3", 20, user="bob"), alert_doc("tw-a4", 30, user="bob")])
    store.set_status("tw-a4", "acknowledged", "carol")  # someone is on it: left alone
    store.close()
    assert tw(config, "alerts", "suppress", "--user", "bob", "--for", "1d", "--reason", "bob's lab",
              "--close-matching") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "closed 2 open matching alerts: tw-a2 tw-a3"
    store = stored(db)
    [s] = store.active_suppressions(NOW)
    statuses = {i: (d["alert"]["status"], d["triage"]["suppressed_by"])
                for i in ("tw-a1", "tw-a2", "tw-a3", "tw-a4") if (d := store.get_alert(i))}
    assert statuses == {"tw-a1": ("open", None), "tw-a2": ("closed", s.id), "tw-a3": ("closed", s.id),
                        "tw-a4": ("acknowledged", None)}
    assert [(e.alert_id, e.actor, e.verb, e.why) for e in store.audit_trail() if e.verb == "alert.suppressed"] == [
        ("tw-a2", "alice", "alert.suppressed", "bob's lab"), ("tw-a3", "alice", "alert.suppressed", "bob's lab")]
    store.close()


def test_import_loads_detect_output_and_is_audited(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, db = env
    batch = tmp_path / "alerts.jsonl"
    replay = alert_doc("tw-a1", 0, count=4)
    batch.write_text("".join(json.dumps(d) + "\n" for d in (replay, alert_doc("tw-a3", 20))), encoding="utf-8")
    assert tw(config, "alerts", "ack", "tw-a1") == 0
    assert tw(config, "alerts", "import", "--input", str(batch)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"imported 1 new, 1 already present from {batch}"
    store = stored(db)
    assert [(a["alert"]["id"], a["alert"]["status"], a["alert"]["count"]) for a in store.list_alerts()] == [
        ("tw-a3", "open", 1), ("tw-a2", "open", 1), ("tw-a1", "acknowledged", 4)]
    [entry] = [e for e in store.audit_trail() if e.verb == "alerts.import"]
    assert (entry.actor, entry.target, entry.details) == (
        "alice", str(batch), {"alerts": 2, "new": 1, "already_present": 1})
    store.close()


def test_import_real_detect_output(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tests.factories import BERLIN_HOME, SINGAPORE_VPS, event, run

    alerts = run([
        event("issued", 0, token="at-9", place=BERLIN_HOME, scopes=("read",), event_id="tr-1"),
        event("used", 120, token="at-9", place=SINGAPORE_VPS, scopes=("read",), required=("read",), event_id="tr-2"),
    ])
    assert alerts
    batch = tmp_path / "detect.jsonl"
    batch.write_text("".join(a.model_dump_json(by_alias=True, exclude_none=True) + "\n" for a in alerts))
    assert tw(env[0], "alerts", "import", "--input", str(batch)) == 0
    assert tw(env[0], "alerts", "list", "--json") == 0
    listed = [json.loads(x) for x in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(d["alert"]["id"] for d in listed) == sorted([a.alert.id for a in alerts] + ["tw-a1", "tw-a2"])
    assert all(Alert.model_validate({k: v for k, v in d.items() if k != "triage"}) for d in listed)


def test_import_reports_the_bad_line(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    batch = tmp_path / "alerts.jsonl"
    batch.write_text(json.dumps(alert_doc("tw-a9")) + "\n" + '{"alert": {}}\n', encoding="utf-8")
    assert tw(env[0], "alerts", "import", "--input", str(batch)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokenwatch: {batch}:2: not an alert document (")
    assert err.endswith("(alerts before that line were stored and audited)\n")


def test_actions_list(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = env
    store = stored(db)
    store.put_action(action("tw-a2", "fam-tw-a2", state="succeeded", next_minute=None, created_minute=5, attempts=1))
    store.close()
    assert tw(config, "actions", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "ID                            CREATED               ALERT  ACTION         TARGET            MODE  STATE      ATTEMPTS  NEXT                  ACTOR       ERROR",
        "act-ae6d024a470b917b1b48933e  2026-11-24 10:05:00Z  tw-a2  revoke_family  family:fam-tw-a2  auto  succeeded  1         -                     tokenwatch  -",
        "act-9965dcb27cc434f88e84101a  2026-11-24 10:00:00Z  tw-a1  revoke_family  family:fam-tw-a1  auto  pending    0         2026-11-24 10:01:00Z  tokenwatch  -",
    ]
    assert tw(config, "actions", "list", "--json", "--alert", "tw-a1") == 0
    [shown] = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert shown == action("tw-a1", "fam-tw-a1", next_minute=1).model_dump(mode="json")
    assert tw(config, "actions", "list", "--json", "--state", "succeeded") == 0
    assert [json.loads(x)["alert_id"] for x in capsys.readouterr().out.splitlines()] == ["tw-a2"]


def test_an_unusable_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a-directory").mkdir()
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "a-directory"}"\n', encoding="utf-8")
    assert tw(config, "alerts", "list") == 1
    assert capsys.readouterr().err.startswith("tokenwatch: cannot use the store: OperationalError:")


@pytest.mark.parametrize("argv", [("alerts", "list"), ("alerts", "show", "tw-a1"), ("actions", "list"),
                                  ("breaker", "status")])
def test_a_read_command_on_a_missing_store_refuses_with_advice_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...]
) -> None:
    """Leaving out --config (or a mistyped store.path) used to create an empty
    ./tokenwatch.db and print an empty table with exit 0."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENWATCH_STORE__PATH", raising=False)
    monkeypatch.setenv("TOKENWATCH_ACTOR", "alice")
    assert main(list(argv)) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tokenwatch: store.path tokenwatch.db: no alert store there; pass --config naming the store "
                   "the alerts went to, or fill one first (tokenwatch detect, tokenwatch alerts import)"]
    assert list(tmp_path.iterdir()) == []


def test_import_creates_the_store_it_fills(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TOKENWATCH_STORE__PATH", raising=False)
    (tmp_path / "alerts.jsonl").write_text("", encoding="utf-8")
    assert main(["alerts", "import", "--input", "alerts.jsonl", "--actor", "alice"]) == 0
    assert (tmp_path / "tokenwatch.db").is_file()
