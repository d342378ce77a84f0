"""Keeps N child processes running until told to stop: what `tokenwatch run --workers N` uses
to run N members of one consumer group on one host.

It knows nothing of Kafka: a member is a command line. SIGTERM/SIGINT are forwarded to every
member, and the supervisor waits for each to finish its final checkpoint (no timeout: a
member killed meanwhile loses nothing committed, and systemd or Kubernetes have their own).
A member that exits while nobody asked it to is restarted after a back-off that doubles
with each recent restart; past ``RestartPolicy.limit`` restarts within ``window_s`` the
supervisor stops the others and exits non-zero (the member's own exit code, e.g. 4 for an
unreachable broker, else 1), so the host's own supervisor sees the
failure instead of a service quietly running on fewer members. An exit code restarting
cannot cure (a setting, a taken port) stops everything at once with that code.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from types import FrameType

from pipeline import exit_codes

log = logging.getLogger("tokenwatch.supervisor")

Command = Callable[[int], Sequence[str]]
"""The command line of member ``index``."""


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    """Delay before the first restart of a member; doubles with each restart still in the window."""
    backoff_max_s: float = 30.0
    limit: int = 5
    """Restarts of one member within ``window_s`` after which the supervisor gives up."""
    window_s: float = 300.0


@dataclass
class _Member:
    index: int
    process: subprocess.Popen[bytes] | None = None
    restarts: deque[float] = field(default_factory=deque)  # monotonic times of recent restarts
    restart_at: float | None = None
    exit_code: int | None = None


class Supervisor:
    """Starts ``workers`` members with ``command(index)``; ``run`` returns the exit code."""

    def __init__(self, command: Command, workers: int, policy: RestartPolicy | None = None,
                 lasting_codes: Collection[int] = (), poll_s: float = 0.1) -> None:
        self.command = command
        self.policy = policy or RestartPolicy()
        self.lasting_codes = frozenset(lasting_codes)
        self.poll_s = poll_s
        self.members = [_Member(index) for index in range(workers)]
        self.starts = 0
        self._signals: list[int] = []  # received, not yet forwarded (the handler only notes them)
        self._wake = threading.Event()
        self._stopping = False
        self._result = exit_codes.OK

    # -- control ------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGTERM, _frame: FrameType | None = None) -> None:
        """Signal handler (and a plain call): stop every member with ``signum``."""
        self._signals.append(signum)
        self._wake.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        for member in self.members:
            self._start(member)
        while True:
            self._forward_signals()
            now = time.monotonic()
            for member in self.members:
                self._check(member, now)
            if self._stopping and all(m.process is None or m.process.poll() is not None for m in self.members):
                break
            self._wake.wait(self.poll_s)
            self._wake.clear()
        return self._result

    def pids(self) -> list[int | None]:
        return [m.process.pid if m.process is not None and m.process.poll() is None else None
                for m in self.members]

    # -- members ------------------------------------------------------------------------
    def _start(self, member: _Member) -> None:
        # A process group of its own: a Ctrl-C in the terminal reaches the members once, through
        # the supervisor, not twice.
        member.process = subprocess.Popen(list(self.command(member.index)), process_group=0)
        member.restart_at = None
        member.exit_code = None
        self.starts += 1
        log.info("member started", extra={"member": member.index, "pid": member.process.pid})

    def _forward_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if not self._stopping:
                log.info("stopping members", extra={"signal": signal.Signals(signum).name})
            self._stop_all(signum)

    def _stop_all(self, signum: int) -> None:
        self._stopping = True
        for member in self.members:
            member.restart_at = None
            if member.process is not None and member.process.poll() is None:
                member.process.send_signal(signum)

    def _check(self, member: _Member, now: float) -> None:
        process = member.process
        if process is not None and member.exit_code is None:
            code = process.poll()
            if code is None:
                return
            member.exit_code = code
            if self._stopping:
                self._stopped(member, code)
            else:
                self._died(member, code, now)
        if member.restart_at is not None and now >= member.restart_at and not self._stopping:
            member.restarts.append(now)
            self._start(member)
            log.warning("member restarted", extra={"member": member.index, "restarts_in_window": len(member.restarts)})

    def _stopped(self, member: _Member, code: int) -> None:
        """An exit after the stop: 0, or killed by the very signal forwarded before its handler
        was installed (still starting: nothing consumed), is a clean stop."""
        clean = code == 0 or -code in (signal.SIGTERM, signal.SIGINT)
        if clean:
            log.info("member stopped", extra={"member": member.index})
            return
        log.error("member failed while stopping", extra={"member": member.index, "exit_code": code})
        if self._result == exit_codes.OK:
            self._result = exit_codes.FAILED

    def _died(self, member: _Member, code: int, now: float) -> None:
        how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit {code}"
        if code in self.lasting_codes:
            log.error("member exited with an error restarting cannot fix: stopping the others",
                      extra={"member": member.index, "exit_code": code, "how": how})
            self._result = code
            self._stop_all(signal.SIGTERM)
            return
        window = self.policy.window_s
        while member.restarts and now - member.restarts[0] > window:
            member.restarts.popleft()
        if len(member.restarts) >= self.policy.limit:
            log.error("member keeps failing: giving up, stopping the others",
                      extra={"member": member.index, "how": how, "restarts_in_window": len(member.restarts),
                             "window_s": window})
            self._result = code if code > 0 else exit_codes.FAILED  # its own reason, when it gave one
            self._stop_all(signal.SIGTERM)
            return
        delay = min(self.policy.backoff_s * 2 ** len(member.restarts), self.policy.backoff_max_s)
        member.restart_at = now + delay
        log.error("member exited unexpectedly: restarting", extra={
            "member": member.index, "how": how, "restart_in_s": round(delay, 3),
            "restarts_in_window": len(member.restarts)})
