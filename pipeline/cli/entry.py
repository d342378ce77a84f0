"""The `tokenwatch` program: start what the command will wait for, then run the command.

Importing the command line (``pipeline.cli.main``) takes about half a second. A
`detect --workers N` run starts its workers' fork server before that (``start_early``), so
the server loads on another core meanwhile.
"""

from __future__ import annotations

import sys

from pipeline.runtime.worker_server import asks_for_workers, start_early


def main() -> int:
    if asks_for_workers(sys.argv[1:]):
        start_early()
    from pipeline.cli.main import main as run_command  # after the server started: see the module note

    return run_command()
