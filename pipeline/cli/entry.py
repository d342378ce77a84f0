"""The `tokenwatch` program: start what the command will wait for, then run the command.

Importing the command line (``pipeline.cli.main``) takes about half a second. A
`detect --workers N` run starts its workers' fork server before that (``start_early``), so
the server loads on another core meanwhile.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from pipeline.cli.interrupt import reported  # standard library only: nothing that delays the fork server


def main() -> int:
    with reported():  # Ctrl-C: one line, not a traceback (`run` stops gracefully on its own)
        if asks_for_workers(sys.argv[1:]):
            from pipeline.runtime.worker_server import start_early  # multiprocessing: only for this command

            start_early()
        from pipeline.cli.main import main as run_command  # after the server started: see the module note

        return run_command()


def asks_for_workers(argv: Sequence[str]) -> bool:
    """Whether the command line ``argv`` (without the program name) is surely `detect` with two
    workers or more. Only the plain spellings count (``--workers N``, ``--workers=N``, ``-w N``,
    ``-wN``, before any ``--``); for any other the answer is False, and the pool starts the
    server when it needs it, a second later. A wrong True costs an idle server, nothing else
    (it ends when this process does)."""
    if not argv or argv[0] != "detect":
        return False
    args = list(argv[1:])
    for index, arg in enumerate(args):
        if arg == "--":
            return False
        if arg in ("--workers", "-w"):
            value: str | None = args[index + 1] if index + 1 < len(args) else None
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        elif arg.startswith("-w") and not arg.startswith("--"):
            value = arg[2:]
        else:
            continue
        # isdecimal, not isdigit ("²" is a digit int() refuses); the length keeps int() from
        # refusing thousands of digits: argparse, run next, says what is wrong with either.
        return value is not None and value.isdecimal() and len(value) <= 6 and int(value) >= 2
    return False


if __name__ == "__main__":  # `run --workers` starts its members so: Ctrl-C is reported before the heavy imports
    sys.exit(main())
