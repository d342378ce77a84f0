"""Keeps N child processes running until told to stop: what `tokenwatch run --workers N` uses
to run N members of one consumer group on one host.

It knows nothing of Kafka: a member is a command line, and its exit code says which of three
kinds of exit it was. SIGTERM/SIGINT are forwarded to every member, and the supervisor waits
for each to finish its final checkpoint (no timeout: a member killed meanwhile loses nothing
committed, and systemd or Kubernetes have their own). A member that exits while nobody asked
it to is restarted after a back-off that doubles with each exit since its last healthy run
(one that lasted ``RestartPolicy.healthy_s``), up to ``backoff_max_s``:

- a *transient* code (an unreachable broker: it comes back) is restarted for as long as it
  takes, or until ``transient_give_up_s``, so an outage of minutes is waited out as one
  process waits for its broker (until the member's first healthy run, ``start_give_up_s`` at
  most: a broker never reached is likelier a typo than an outage);
- any other unexpected exit (a crash, a signal) is restarted at most ``limit`` times within
  ``window_s``; then the supervisor stops the others and exits non-zero (the member's own
  code, else 1), so the host's own supervisor sees a crash loop instead of a service quietly
  running on fewer members;
- a *lasting* code (a setting, a taken port, refused credentials) stops everything at once
  with that code: no restart can cure it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from types import FrameType

from pipeline import exit_codes
from pipeline.service.restarts import GiveUp, RestartHistory, RestartPolicy

log = logging.getLogger("tokenwatch.supervisor")

Command = Callable[[int], Sequence[str]]
"""The command line of member ``index``."""


@dataclass
class _Member:
    index: int
    history: RestartHistory
    process: subprocess.Popen[bytes] | None = None
    started_at: float | None = None
    restart_at: float | None = None
    exit_code: int | None = None


class Supervisor:
    """Starts ``workers`` members with ``command(index)``; ``run`` returns the exit code."""

    def __init__(self, command: Command, workers: int, policy: RestartPolicy | None = None,
                 lasting_codes: Collection[int] = (), transient_codes: Collection[int] = (), poll_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.policy = policy or RestartPolicy()
        self.poll_s = poll_s
        self.clock = clock
        self.transient_codes = frozenset(transient_codes)
        self.members = [_Member(index, RestartHistory.of(self.policy, transient_codes, lasting_codes))
                        for index in range(workers)]
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
            now = self.clock()
            # Whether all are gone is asked before each is looked at, so that every exit, even
            # one between two looks, is judged (and logged) before the loop ends.
            done = self._stopping and all(m.process is None or m.process.poll() is not None for m in self.members)
            for member in self.members:
                self._check(member, now)
            if done:
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
        member.started_at = self.clock()
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
            self._start(member)
            log.warning("member restarted", extra={"member": member.index, "failures": member.history.failures})

    def _stopped(self, member: _Member, code: int) -> None:
        """An exit after the stop: 0, or killed by the very signal forwarded before its handler
        was installed (still starting: nothing consumed), or a transient code (a start that
        found its broker unreachable: nothing consumed either) is a clean stop."""
        clean = code == 0 or -code in (signal.SIGTERM, signal.SIGINT) or code in self.transient_codes
        if clean:
            log.info("member stopped", extra={"member": member.index, "exit_code": code})
            return
        log.error("member failed while stopping", extra={"member": member.index, "exit_code": code})
        if self._result == exit_codes.OK:
            self._result = exit_codes.FAILED

    def _died(self, member: _Member, code: int, now: float) -> None:
        how = f"signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals() else f"exit {code}"
        decision = member.history.after_exit(code, now, member.started_at)
        facts = {"member": member.index, "exit_code": code, "how": how, "failures": member.history.failures,
                 "failing_for_s": round(decision.failing_for_s, 3)}
        if isinstance(decision, GiveUp):
            log.error(GIVE_UP_MESSAGES[decision.why], extra=facts)
            self._result = decision.code
            self._stop_all(signal.SIGTERM)
            return
        member.restart_at = now + decision.delay_s
        message = ("member exited with a transient error: restarting until it recovers" if decision.transient
                   else "member exited unexpectedly: restarting")
        log.error(message, extra={**facts, "restart_in_s": round(decision.delay_s, 3)})


GIVE_UP_MESSAGES = {
    "lasting": "member exited with an error restarting cannot fix: stopping the others",
    "crash loop": "member keeps failing: giving up, stopping the others",
    "outage": "member kept exiting with a transient error for too long: giving up, stopping the others",
    "never reached": "member never reached its broker since the start (check kafka.bootstrap_servers): giving up, "
                     "stopping the others",
}
