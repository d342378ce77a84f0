"""Help that teaches: every command says what it is for and shows how it is called.

``add_command`` is how a command module registers a sub-command: the one-line ``help`` for
its parent's list, a ``description`` for its own ``--help``, and examples under it, kept as
written (``RawDescriptionHelpFormatter``). ``commands`` walks the parser tree, so a test can
hold every command to it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def add_command(
    sub: Any, name: str, *, help: str, description: str, examples: Sequence[str],
    parents: Sequence[argparse.ArgumentParser] = (),
) -> argparse.ArgumentParser:
    """A sub-command of ``sub`` (an ``add_subparsers`` result) with its description and examples."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help, description=description.strip(), epilog=examples_text(examples), parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def usage_only(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """The ``func`` of a command group called without its action: its help on stderr, exit 2."""

    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show


def examples_text(examples: Sequence[str]) -> str:
    """The epilog: each example on its own indented line (a ``#`` comment may follow it)."""
    return "examples:\n" + "\n".join(f"  {line}" for line in examples)


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``parser`` and every sub-command below it, each with its words (``("breaker", "reset")``)."""
    yield path, parser
    for action in parser._actions:  # noqa: SLF001 -- argparse has no public way to list sub-parsers
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001 -- nor a public type for the sub-parsers action
            for name, child in action.choices.items():
                yield from commands(child, (*path, name))


def version() -> str:
    """The installed distribution's version; the source tree's ``pyproject.toml`` when the
    package runs uninstalled (a checkout on ``PYTHONPATH``)."""
    try:
        return importlib.metadata.version("tokenwatch")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
        return str(project["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"
