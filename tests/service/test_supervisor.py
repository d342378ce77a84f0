"""The supervisor of `tokenwatch run --workers N`, with fake members: small Python processes
that note what happened to them in a directory (started, signal received, final checkpoint
done) and, per index, behave like a healthy member, one that crashes once, one that keeps
crashing, or one refused for a setting."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline import exit_codes
from pipeline.service.supervisor import RestartPolicy, Supervisor

FAKE_MEMBER = """
import os, signal, sys, time
from pathlib import Path

notes, index, behaviour = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
def note(text):
    with open(notes / f"member-{index}", "a") as out:
        out.write(text + "\\n")

def stop(signum, frame):
    note(f"signal {signal.Signals(signum).name}")
    time.sleep(0.3)  # the final checkpoint
    note("checkpointed")
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
starts = (notes / f"member-{index}").read_text().count("started") if (notes / f"member-{index}").exists() else 0
note(f"started {os.getpid()}")
while behaviour != "ok" and not (notes / "member-0").exists():  # the healthy one can take a signal
    time.sleep(0.01)
if behaviour == "crash-once" and starts == 0 or behaviour == "crash":
    sys.exit(1)
if behaviour == "refused":
    sys.exit(2)
while True:
    time.sleep(0.05)
"""

FAST = RestartPolicy(backoff_s=0.05, backoff_max_s=0.2, limit=3, window_s=60)


def _supervisor(tmp_path: Path, behaviours: list[str], policy: RestartPolicy = FAST) -> Supervisor:
    script = tmp_path / "member.py"
    script.write_text(FAKE_MEMBER)

    def command(index: int) -> list[str]:
        return [sys.executable, str(script), str(tmp_path), str(index), behaviours[index]]

    return Supervisor(command, len(behaviours), policy, lasting_codes=(exit_codes.CONFIG,), poll_s=0.02)


def _notes(tmp_path: Path, index: int) -> list[str]:
    path = tmp_path / f"member-{index}"
    return path.read_text().splitlines() if path.exists() else []


def _when(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _stop_later(supervisor: Supervisor, ready: object, signum: int = signal.SIGTERM) -> threading.Thread:
    """Once ``ready``, deliver ``signum`` to this process (the test's main thread runs the
    supervisor, whose handler takes it), as systemd or a terminal would."""
    def deliver() -> None:
        _when(ready)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=deliver, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_reaches_every_member_and_the_supervisor_waits_for_their_checkpoint(
        tmp_path: Path, handlers: None, signum: int) -> None:
    supervisor = _supervisor(tmp_path, ["ok", "ok", "ok"])
    supervisor.install_signal_handlers()
    _stop_later(supervisor, lambda: all(_notes(tmp_path, i) for i in range(3)), signum)
    assert supervisor.run() == exit_codes.OK
    for index in range(3):
        notes = _notes(tmp_path, index)
        # One signal each (the members have their own process group: no second copy from a
        # terminal), and run() returned only after the final checkpoint.
        assert notes[1:] == [f"signal {signal.Signals(signum).name}", "checkpointed"], notes
    assert supervisor.starts == 3


def test_a_member_that_dies_is_restarted_and_logged(tmp_path: Path, handlers: None,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tokenwatch.supervisor")
    supervisor = _supervisor(tmp_path, ["ok", "crash-once"])
    supervisor.install_signal_handlers()
    restarted = lambda: sum(n.startswith("started") for n in _notes(tmp_path, 1)) == 2  # noqa: E731 -- a condition
    _stop_later(supervisor, restarted)
    assert supervisor.run() == exit_codes.OK
    first, second = [n.split()[1] for n in _notes(tmp_path, 1) if n.startswith("started")]
    assert first != second  # a new process
    assert _notes(tmp_path, 1)[-2:] == ["signal SIGTERM", "checkpointed"]
    assert sum(n.startswith("started") for n in _notes(tmp_path, 0)) == 1  # the healthy one untouched
    died = [r for r in caplog.records if r.getMessage() == "member exited unexpectedly: restarting"]
    assert [(r.__dict__["member"], r.__dict__["how"]) for r in died] == [(1, "exit 1")]
    assert any(r.getMessage() == "member restarted" and r.__dict__["member"] == 1 for r in caplog.records)


def test_a_member_killed_by_a_signal_is_restarted(tmp_path: Path, handlers: None) -> None:
    supervisor = _supervisor(tmp_path, ["ok", "ok"])
    supervisor.install_signal_handlers()

    def kill_then_stop() -> None:
        _when(lambda: _notes(tmp_path, 1))
        pid = int(_notes(tmp_path, 1)[0].split()[1])
        os.kill(pid, signal.SIGKILL)
        _when(lambda: len(_notes(tmp_path, 1)) == 2)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_then_stop, daemon=True).start()
    assert supervisor.run() == exit_codes.OK
    assert [n.split()[0] for n in _notes(tmp_path, 1)] == ["started", "started", "signal", "checkpointed"]


def test_a_member_that_keeps_failing_stops_everything_with_a_failure(tmp_path: Path, handlers: None) -> None:
    supervisor = _supervisor(tmp_path, ["ok", "crash"])
    started = time.monotonic()
    assert supervisor.run() == exit_codes.FAILED
    # 1 start + FAST.limit restarts, with back-off between them (0.05 + 0.1 + 0.2 at least).
    assert sum(n.startswith("started") for n in _notes(tmp_path, 1)) == 1 + FAST.limit
    assert time.monotonic() - started >= 0.35
    assert _notes(tmp_path, 0)[-2:] == ["signal SIGTERM", "checkpointed"]  # the healthy one stopped cleanly


def test_an_exit_code_restarting_cannot_cure_stops_everything_at_once(tmp_path: Path, handlers: None) -> None:
    supervisor = _supervisor(tmp_path, ["ok", "refused"])
    assert supervisor.run() == exit_codes.CONFIG
    assert sum(n.startswith("started") for n in _notes(tmp_path, 1)) == 1  # never restarted
    assert _notes(tmp_path, 0)[-2:] == ["signal SIGTERM", "checkpointed"]


def test_restarts_back_off_and_old_ones_leave_the_window(tmp_path: Path) -> None:
    """The delay doubles per restart still in the window, up to the cap; a member that ran
    longer than the window starts afresh."""
    policy = RestartPolicy(backoff_s=1.0, backoff_max_s=3.0, limit=10, window_s=100)
    supervisor = _supervisor(tmp_path, ["ok"], policy)
    [member] = supervisor.members
    delays = []
    for now in (0.0, 1.0, 3.0, 7.0):
        supervisor._died(member, 1, now)  # noqa: SLF001 -- the back-off rule without sleeping through it
        assert member.restart_at is not None
        delays.append(member.restart_at - now)
        member.restarts.append(member.restart_at)
    assert delays == [1.0, 2.0, 3.0, 3.0]
    supervisor._died(member, 1, 500.0)  # noqa: SLF001 -- as above
    assert member.restart_at == 501.0
