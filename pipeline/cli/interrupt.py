"""Ctrl-C ends a command with one line, and the process dies by SIGINT.

An uncaught KeyboardInterrupt makes Python print a traceback and then kill itself with SIGINT,
so that a shell loop, ``xargs`` or ``make`` running the command stops too (a plain exit 130
would tell them the command handled it, and the loop would go on to the next). ``reported``
keeps that ending and replaces only the traceback. Standard library only: the entry imports it
before the fork server starts."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

MESSAGE = "tokenwatch: interrupted"


@contextmanager
def reported() -> Iterator[None]:
    """Around a command: a KeyboardInterrupt out of it goes on, printed as ``MESSAGE``."""
    try:
        yield
    except KeyboardInterrupt:
        sys.excepthook = _one_line(sys.excepthook)
        raise


Hook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]


def _one_line(previous: Hook) -> Hook:
    def hook(kind: type[BaseException], value: BaseException, trace: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            print(MESSAGE, file=sys.stderr)
            return
        previous(kind, value, trace)
    return hook
