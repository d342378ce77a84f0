"""Help that teaches (issue 16): `--version`, a description and a working example under every
command, help for every argument, and ``--actor`` only where something changes."""

from __future__ import annotations

import argparse
import importlib.metadata
import shlex

import pytest

from pipeline.cli.helptext import commands
from pipeline.cli.main import _parser, main

PARSER = _parser()
COMMANDS = {" ".join(path): parser for path, parser in commands(PARSER)}
# The alerts group (pipeline/cli/alerts.py) is held to every rule but argument help: some of
# its options have none yet.
OWN = {name: parser for name, parser in COMMANDS.items() if not name.startswith("alerts")}
READ_ONLY = ("actions list", "breaker status", "config check", "config defaults", "rules")
CHANGING = ("revoke", "actions approve", "actions deny", "actions cancel", "breaker reset")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"tokenwatch {importlib.metadata.version('tokenwatch')}\n"


def test_the_walk_reaches_every_command() -> None:
    """A walk that missed sub-commands would make the tests below pass vacuously."""
    assert {"", "detect", "run", "config check", "breaker reset", "actions approve", "handles seal",
            "model train", "alerts list"} <= set(COMMANDS)
    assert len(COMMANDS) > 30


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_and_an_example(name: str) -> None:
    parser = COMMANDS[name]
    help_text = parser.format_help()
    assert parser.description and len(parser.description) > 40, name
    assert f"usage: {parser.prog}" in help_text and parser.description.splitlines()[0] in help_text
    assert parser.epilog and parser.epilog.startswith("examples:\n")
    assert [line for line in examples(parser) if line.startswith("tokenwatch ")], name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_example_parses(name: str) -> None:
    """An example that names a removed option or a wrong sub-command would teach the wrong thing."""
    for line in examples(COMMANDS[name]):
        for argv in invocations(line):
            try:
                PARSER.parse_args(argv)
            except SystemExit as exc:
                pytest.fail(f"{name}: example {line!r} does not parse (exit {exc.code})")


@pytest.mark.parametrize("name", sorted(OWN))
def test_every_argument_has_help(name: str) -> None:
    missing = [action.dest for action in OWN[name]._actions  # noqa: SLF001 -- argparse lists no actions publicly
               if action.help is None and not isinstance(action, argparse._SubParsersAction)]  # noqa: SLF001 -- argparse exports no public type for its subcommands action
    assert missing == [], name


def test_run_help_names_the_settings_that_matter(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    shown = capsys.readouterr().out
    for needed in ("--config FILE", "TOKENWATCH_<SECTION>__<KEY>", "kafka.bootstrap_servers", "kafka.topics.input",
                   "elasticsearch.hosts", "tokenwatch config check", "examples:"):
        assert needed in shown, needed


@pytest.mark.parametrize("name", READ_ONLY)
def test_read_only_commands_take_no_actor(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--actor" not in COMMANDS[name].format_help()
    with pytest.raises(SystemExit) as refused:
        PARSER.parse_args([*name.split(), *(["x"] if name == "config check" else []), "--actor", "ana"])
    assert refused.value.code == 2 and "unrecognized arguments: --actor ana" in capsys.readouterr().err


@pytest.mark.parametrize("name", CHANGING)
def test_commands_that_change_something_take_an_actor(name: str) -> None:
    assert "--actor ACTOR" in COMMANDS[name].format_help()


@pytest.mark.parametrize("group", ["config", "actions", "breaker", "model", "handles"])
def test_a_group_without_its_action_shows_its_own_help(group: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([group]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: tokenwatch {group} ") and "examples:" in err


def examples(parser: argparse.ArgumentParser) -> list[str]:
    """The epilog's example lines, a line ending in ``\\`` joined to the next."""
    text = (parser.epilog or "").removeprefix("examples:\n").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip()]


def invocations(line: str) -> list[list[str]]:
    """The tokenwatch argument lists in a shell example line (pipes, ``&&``, redirections and
    leading ``VAR=value`` assignments aside); ``--help`` examples are left out."""
    tokens = shlex.split(line, comments=True)
    found, current = [], []
    for token in [*tokens, "|"]:
        if token in ("|", "&&", ">", "<"):
            while current and "=" in current[0] and not current[0].startswith("-"):
                current.pop(0)
            if current[:1] == ["tokenwatch"] and "--help" not in current:
                found.append(current[1:])
            current = [] if token != ">" and token != "<" else ["<redirect>"]
        else:
            current.append(token)
    return found
