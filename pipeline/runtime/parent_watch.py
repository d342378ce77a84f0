"""A `detect --workers` worker ends when the command that started it is gone (even by SIGKILL).

Without this, a worker whose parent was killed waits for good for lines that never come, holding
its memory. How it notices, and why so:

- The parent's sentinel, watched by a daemon thread. Under ``forkserver`` (and ``spawn``)
  multiprocessing gives each child the read end of a pipe whose only write end the parent holds
  (``multiprocessing.parent_process().sentinel``); it reads as ended the moment the parent dies,
  however it died. A thread sees that whatever the worker is doing: waiting for a batch,
  judging one, sending an answer, or stuck halfway through a batch the parent was killed while
  writing.
- Not end-of-file on the inbox: a worker holds its inbox queue's write end too (a queue passes
  both ends to the child), so that pipe never ends while the worker lives.
- Not ``os.getppid()``: under ``forkserver`` a worker's parent is the fork server, not the
  command, and a polled pid may be reused by another process.

The fork server needs nothing of its own: it stops when its "alive" pipe ends, and only the
command and its workers hold that pipe's write end, so it follows the last of them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import wait

ORPHANED_EXIT = 1
"""A worker's exit code once its parent is gone (nobody is left to read it)."""


def exit_with_parent() -> None:
    """Start the watch (in a child process only; in the main process there is no parent to watch)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    threading.Thread(target=_watch, args=(parent.sentinel,), name="tokenwatch-parent-watch", daemon=True).start()


def _watch(sentinel: int) -> None:
    wait([sentinel])
    os._exit(ORPHANED_EXIT)  # at once: whatever the worker holds is of use to nobody now
