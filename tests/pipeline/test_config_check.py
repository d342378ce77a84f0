"""`config check` ends with one verdict line and shows the settings only when asked, and an
unknown key names the nearest known one, in the file's or the environment's spelling, for
every command that loads the settings (issue 16)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline import DATA_DIR
from pipeline.cli.main import main
from pipeline.config import ConfigError, load_settings

RFC7009 = '[response.responders.idp]\ntype = "rfc7009"\nclient_id = "tokenwatch"\nrevocation_endpoint = "https://idp/r"\n'


@pytest.fixture(autouse=True)
def _no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.upper().startswith("TOKENWATCH_") and "__" in n]:
        monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokenwatch.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- the verdict ----------------------------------------------------------------------------

def test_a_valid_file_gets_one_ok_line_counting_what_it_changes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, '[store]\npath = "alerts.db"\n[detectors.replay]\nrefresh_grace_s = 5\n'
                           'concurrent_window_s = 60.0\n')  # the second is its default: not a change
    assert main(["config", "check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"OK: {path} is valid (2 settings differ from the defaults)\n" and err == ""


def test_the_shipped_defaults_file_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    path = DATA_DIR / "tokenwatch.toml"
    assert main(["config", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"OK: {path} is valid (0 settings differ from the defaults)\n"


def test_without_a_file_the_environment_is_checked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENWATCH_STORE__PATH", "/var/lib/tw.db")
    assert main(["config", "check"]) == 0
    assert capsys.readouterr().out == (
        "OK: the configuration (defaults and environment) is valid (1 setting differs from the defaults)\n")


def test_show_prints_the_effective_settings_masked_then_the_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TOKENWATCH_ELASTICSEARCH__USERNAME", "elastic")
    monkeypatch.setenv("TOKENWATCH_ELASTICSEARCH__PASSWORD", "hunter2")
    path = write(tmp_path, '[store]\npath = "alerts.db"\n')
    assert main(["config", "check", str(path), "--show"]) == 0
    *shown, verdict = capsys.readouterr().out.splitlines()
    settings = json.loads("\n".join(shown))
    assert settings["store"]["path"] == "alerts.db" and settings["elasticsearch"]["password"] == "**********"
    assert "hunter2" not in "\n".join(shown)
    assert verdict == f"OK: {path} is valid (3 settings differ from the defaults)"


def test_without_show_no_setting_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(write(tmp_path, '[store]\npath = "alerts.db"\n'))]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1


@pytest.mark.parametrize("show", [[], ["--show"]])
def test_an_invalid_file_gets_one_error_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], show: list[str]
) -> None:
    path = write(tmp_path, '[store]\npaht = "alerts.db"\n')
    assert main(["config", "check", str(path), *show]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: store.paht: unknown setting; did you mean store.path?\n"


def test_settings_that_run_would_refuse_are_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config check FILE && tokenwatch run -c FILE` must not pass the check and then refuse."""
    path = write(tmp_path, "[response]\nenabled = true\n")
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: `tokenwatch run` would refuse it: [response] is enabled but")
    assert main(["run", "--config", str(path)]) == 2
    assert "[response] is enabled but" in capsys.readouterr().err


# -- did you mean ---------------------------------------------------------------------------

@pytest.mark.parametrize(("toml", "message"), [
    ('engin = 1\n', "engin: unknown setting; did you mean engine?"),
    ('[stor]\npath = "a.db"\n', "stor: unknown setting; did you mean store?"),
    ('[store]\npaht = "a.db"\n', "store.paht: unknown setting; did you mean store.path?"),
    ('[store]\nPATH = "a.db"\n', "store.PATH: unknown setting; did you mean store.path?"),
    ('[kafka.topics]\ninpt = ["a"]\n', "kafka.topics.inpt: unknown setting; did you mean kafka.topics.input?"),
    ('[[enrich.egress_lists]]\nname = "a"\nclaas = "relay"\npath = "/x"\n',
     "enrich.egress_lists.0.claas: unknown setting; did you mean enrich.egress_lists.0.class? (+1 more)"),
    (RFC7009 + 'client_idd = "x"\n',
     "response.responders.idp.client_idd: unknown setting; did you mean response.responders.idp.client_id?"),
    ('[detectors.replay]\nrefresh_grace = 5\n',
     "detectors.replay.refresh_grace: unknown setting; did you mean detectors.replay.refresh_grace_s?"),
    ('[detectors.replya]\nrefresh_grace_s = 5\n', "detectors.replya: unknown detector; did you mean detectors.replay?"),
    ('[store]\nzzz = 1\n', "store.zzz: unknown setting; known in [store]: backend, path, busy_timeout_s, "
                           "max_suppression_days, refresh"),
])
def test_an_unknown_key_in_the_file_names_the_nearest_known_one(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, toml))
    assert str(refused.value) == message


@pytest.mark.parametrize(("variable", "message"), [
    ("TOKENWATCH_STORE__PAHT", "TOKENWATCH_STORE__PAHT: unknown setting; did you mean TOKENWATCH_STORE__PATH?"),
    ("TOKENWATCH_STOR__PATH", "TOKENWATCH_STOR__PATH: unknown section; did you mean TOKENWATCH_STORE__PATH?"),
    ("TOKENWATCH_KAFKA__TOPICS__INPT", "TOKENWATCH_KAFKA__TOPICS__INPT: unknown setting; "
                                       "did you mean TOKENWATCH_KAFKA__TOPICS__INPUT?"),
    ("TOKENWATCH_DETECTORS__REPLAY__REFRESH_GRACE", "TOKENWATCH_DETECTORS__REPLAY__REFRESH_GRACE: unknown setting; "
                                                    "did you mean TOKENWATCH_DETECTORS__REPLAY__REFRESH_GRACE_S?"),
    ("TOKENWATCH_DETECTORS__REPLYA__REFRESH_GRACE_S", "TOKENWATCH_DETECTORS__REPLYA__REFRESH_GRACE_S: unknown "
                                                      "detector; did you mean TOKENWATCH_DETECTORS__REPLAY__REFRESH_GRACE_S?"),
])
@pytest.mark.parametrize("with_file", [False, True])
def test_an_unknown_key_from_the_environment_names_the_variable_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, message: str, with_file: bool
) -> None:
    """Before, a misspelt section (``TOKENWATCH_STOR__PATH``) was ignored without a word, and a
    detector key from the environment was not checked at all without a file."""
    monkeypatch.setenv(variable, '["a"]' if "TOPICS" in variable else "5")
    with pytest.raises(ConfigError) as refused:
        load_settings(write(tmp_path, '[store]\npath = "a.db"\n') if with_file else None)
    assert str(refused.value) == message


@pytest.mark.parametrize(("variable", "meant"), [
    ("TOKENWATCH_KAFKA_BOOTSTRAP_SERVERS", "TOKENWATCH_KAFKA__BOOTSTRAP_SERVERS"),
    ("tokenwatch_input_max_future_skew_s", "TOKENWATCH_INPUT__MAX_FUTURE_SKEW_S"),
    ("TOKENWATCH_STORE_PATH", "TOKENWATCH_STORE__PATH"),
])
def test_a_setting_spelt_with_one_underscore_after_its_section_is_refused_with_the_right_name(
    monkeypatch: pytest.MonkeyPatch, variable: str, meant: str,
) -> None:
    """The loader reads TOKENWATCH_<SECTION>__<KEY> and takes a variable with no double
    underscore for another tool's (TOKENWATCH_ACTOR, TOKENWATCH_STATE_DIR): before, one underscore
    too few left the key at its default without a word."""
    monkeypatch.setenv(variable, "5")
    with pytest.raises(ConfigError) as refused:
        load_settings()
    assert str(refused.value) == (f"{variable} is not read: a setting's variable puts two underscores between "
                                  f"section and key; rename it {meant}")


def test_the_tools_own_variables_are_not_taken_for_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("TOKENWATCH_STATE_DIR", "TOKENWATCH_ACTOR", "TOKENWATCH_TOKEN_HASH_KEY_FILE"):
        monkeypatch.setenv(variable, "x")
    monkeypatch.setenv("TOKENWATCH_KAFKA__BOOTSTRAP_SERVERS", "broker:9092")
    assert load_settings().kafka.bootstrap_servers == ["broker:9092"]


@pytest.mark.parametrize("argv", [
    ["detect", "--input", "-"], ["run"], ["alerts", "list"], ["actions", "list"], ["breaker", "status"],
    ["model", "train", "--input", "events.jsonl"],
])
def test_every_command_that_loads_the_settings_says_it_alike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    path = write(tmp_path, '[store]\npaht = "alerts.db"\n')
    assert main([*argv, "--config", str(path)]) == 2
    assert "store.paht: unknown setting; did you mean store.path?" in capsys.readouterr().err
