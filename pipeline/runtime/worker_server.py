"""The fork server `detect --workers` forks its workers from, and starting it early.

The server is a fresh interpreter that imports the worker's modules and loads the shipped geo
tables (``worker_preload``) before it forks anything: about a second, which a parent that
starts it when it builds its pool waits for, doing nothing. `tokenwatch detect --workers N`
(N of two or more) starts it first thing (``pipeline.cli.entry``), so it loads on another core
while the parent does its own start-up. Nothing but the standard library is imported here: it
runs before everything else.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import signal
from multiprocessing.context import ForkServerContext, SpawnContext

PRELOAD = ("pipeline.runtime.workers", "pipeline.runtime.worker_preload")
"""What the server imports before it forks a worker (a worker imports nothing of its own)."""


def worker_context() -> ForkServerContext | SpawnContext:
    """A fresh interpreter per worker (no open store, file or thread of the parent comes along):
    forked from a server that imported the worker's modules and loaded the shipped geo tables
    once, so a worker starts in milliseconds and shares those tables; spawned where there is
    no fork server."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        return context
    return multiprocessing.get_context("spawn")


def start_early() -> None:
    """Start the fork server now, if this platform has one; the pool finds it running. A server
    that cannot start (say, a temporary directory whose path is too long for its socket) is left
    to the pool, which tries again and says why in one line."""
    if not isinstance(worker_context(), ForkServerContext):
        return
    with contextlib.suppress(Exception):  # only a head start: the pool's own start reports the cause
        ensure_server()


def ensure_server() -> None:
    """Start the fork server unless it runs, with Ctrl-C blocked meanwhile. The terminal sends
    Ctrl-C to the whole process group: the server, still importing its preload (about a
    second), printed a traceback of its own beside the parent's one line. Blocked, not ignored:
    the server starts with it blocked (a signal mask survives exec) and never unblocks it, and
    neither do the workers it forks, while a Ctrl-C to the parent meanwhile waits and is taken
    once the server is started, instead of being lost."""
    # The resource tracker first: starting it unblocks SIGINT (the signals it blocks for its own
    # start), which inside the block below would let the server start with Ctrl-C live.
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, ())  # read only: a Ctrl-C here leaves nothing blocked
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # may take a pending Ctrl-C: the finally unblocks
        multiprocessing.forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
