"""A command imports only its own command group (issue 17): `tokenwatch detect` starts without
the triage, response, model and handles modules, whose imports (the HTTP and crypto clients)
cost more CPU than a small input's work. The parser a command line builds must parse and
print it exactly as the whole parser does."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import DATA_DIR
from pipeline.cli.helptext import commands
from pipeline.cli.main import GROUPS, _parser

WHOLE = {path: parser for path, parser in commands(_parser())}
GROUP_MODULES = tuple(GROUPS)
HEAVY = ("httpx", "joserfc", "cryptography", "apscheduler", "elasticsearch", "kafka", "numpy", "pandas",
         "sklearn", "http.server")


def _top_commands(parser: argparse.ArgumentParser) -> list[str]:
    return [path[0] for path, _ in commands(parser) if len(path) == 1]


@pytest.mark.parametrize("module", GROUP_MODULES)
def test_each_group_adds_the_commands_it_is_listed_with(module: str) -> None:
    """A command missing from ``GROUPS`` would still run (an unknown word builds every group),
    but would import them all; a wrong order would reorder `tokenwatch --help`."""
    parser = argparse.ArgumentParser(prog="tokenwatch")
    importlib.import_module(module).add_commands(parser.add_subparsers(metavar="COMMAND"))
    assert tuple(_top_commands(parser)) == GROUPS[module]


def test_the_whole_parser_lists_the_groups_in_their_order() -> None:
    listed = _top_commands(_parser())
    grouped = [name for names in GROUPS.values() for name in names]
    assert listed[-len(grouped):] == grouped


@pytest.mark.parametrize("path", sorted(WHOLE), ids=lambda path: " ".join(path) or "(top)")
def test_a_commands_own_parser_prints_the_same_help(path: tuple[str, ...]) -> None:
    partial = {p: parser for p, parser in commands(_parser(path[0] if path else None))}
    assert partial[path].format_help() == WHOLE[path].format_help()
    assert partial[path].format_usage() == WHOLE[path].format_usage()


@pytest.mark.parametrize("first", [None, "--help", "-h", "--version", "nosuch", "--config"])
def test_a_line_without_a_known_command_builds_every_command(first: str | None) -> None:
    """The top-level help and a misspelt command's error list every command."""
    assert _top_commands(_parser(first)) == _top_commands(_parser())


@pytest.mark.parametrize(("first", "groups"), [
    ("detect", set()), ("run", set()), ("config", set()),
    ("alerts", {"pipeline.cli.alerts"}), ("breaker", {"pipeline.cli.response"}),
    ("model", {"pipeline.cli.model"}), ("handles", {"pipeline.cli.handles"}),
])
def test_a_command_builds_only_its_group(first: str, groups: set[str]) -> None:
    parser = _parser(first)
    built = {module for module, names in GROUPS.items() if set(names) <= set(_top_commands(parser))}
    assert built == groups


def test_detect_imports_no_command_group_and_no_client_library(tmp_path: Path) -> None:
    """The whole command, run as the console script runs it, in a fresh interpreter."""
    one = tmp_path / "one.jsonl"
    one.write_bytes((DATA_DIR / "sample.jsonl").read_bytes().splitlines(keepends=True)[0])
    code = (
        "import sys\nfrom pipeline.cli.main import main\n"
        f"code = main(['detect', '--input', {str(one)!r}, '--output', {str(tmp_path / 'alerts.jsonl')!r}, "
        f"'--dead-letter', {str(tmp_path / 'dead.jsonl')!r}])\n"
        f"print(code, *sorted(m for m in sys.modules if m in {(*GROUP_MODULES, *HEAVY)!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0"], out.stderr
