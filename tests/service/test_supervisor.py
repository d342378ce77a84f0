"""The supervisor of `tokenwatch run --workers N`, with fake members: small Python processes
that note what happened to them in a directory (started, signal received, final checkpoint
done) and, per index, behave like a healthy member, one that crashes once, one that keeps
crashing, one that keeps finding its broker unreachable, or one refused for a setting. The
restart rule itself is tested on a simulated clock (``RestartHistory``)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import exit_codes
from pipeline.service.restarts import GiveUp, Restart, RestartHistory, RestartPolicy
from pipeline.service.supervisor import Supervisor

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
    sys.exit(3 if behaviour == "fail-on-stop" else 0)

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
if behaviour == "unreachable":
    sys.exit(4)
while True:
    time.sleep(0.05)
"""

FAST = RestartPolicy(backoff_s=0.05, backoff_max_s=0.2, limit=3, window_s=60)


def _supervisor(tmp_path: Path, behaviours: list[str], policy: RestartPolicy = FAST) -> Supervisor:
    script = tmp_path / "member.py"
    script.write_text(FAKE_MEMBER)

    def command(index: int) -> list[str]:
        return [sys.executable, str(script), str(tmp_path), str(index), behaviours[index]]

    return Supervisor(command, len(behaviours), policy, lasting_codes=(exit_codes.CONFIG,),
                      transient_codes=(exit_codes.KAFKA_UNREACHABLE,), poll_s=0.02)


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


class _SeenOneLookLate:
    """A member process whose exit shows one look late: it ends between two of the supervisor's looks."""

    def __init__(self, process: Any) -> None:
        self._process, self._hidden = process, True

    def poll(self) -> int | None:
        code = self._process.poll()
        if code is not None and self._hidden:
            self._hidden = False
            return None
        return code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._process, name)


def test_a_member_failing_as_it_stops_is_judged_even_when_it_ends_between_two_looks(
        tmp_path: Path, handlers: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """CI caught the race: both members ended while stopping, one between two looks; the
    supervisor left the loop without judging it, so its "member stopped" line was missing (and
    a failing exit code would have been missed, the run said OK)."""
    supervisor = _supervisor(tmp_path, ["fail-on-stop", "ok"])
    real_start = Supervisor._start  # noqa: SLF001 -- wrapped to make one member's exit show a look late

    def start(self: Supervisor, member: Any) -> None:
        real_start(self, member)
        if member.index == 0:
            member.process = _SeenOneLookLate(member.process)

    monkeypatch.setattr(Supervisor, "_start", start)
    supervisor.install_signal_handlers()
    _stop_later(supervisor, lambda: all(_notes(tmp_path, i) for i in range(2)))
    with caplog.at_level(logging.INFO, logger="tokenwatch.supervisor"):
        assert supervisor.run() == exit_codes.FAILED
    judged = [(r.getMessage(), getattr(r, "member", None)) for r in caplog.records if "stop" in r.getMessage()]
    assert ("member failed while stopping", 0) in judged and ("member stopped", 1) in judged, judged


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


def _starts(tmp_path: Path, index: int) -> int:
    return sum(n.startswith("started") for n in _notes(tmp_path, index))


def test_a_member_whose_broker_is_unreachable_is_restarted_past_the_crash_limit(
        tmp_path: Path, handlers: None, caplog: pytest.LogCaptureFixture) -> None:
    """Exit 4 is an outage, not a crash loop: the member is restarted well past ``limit`` (3 here),
    each restart logged with its member, code and next delay, and SIGTERM still stops cleanly."""
    caplog.set_level(logging.INFO, "tokenwatch.supervisor")
    supervisor = _supervisor(tmp_path, ["ok", "unreachable"])
    supervisor.install_signal_handlers()
    _stop_later(supervisor, lambda: _starts(tmp_path, 1) >= 3 * FAST.limit)
    assert supervisor.run() == exit_codes.OK
    assert _starts(tmp_path, 1) >= 3 * FAST.limit
    assert _starts(tmp_path, 0) == 1 and _notes(tmp_path, 0)[-2:] == ["signal SIGTERM", "checkpointed"]
    retries = [r.__dict__ for r in caplog.records
               if r.getMessage() == "member exited with a transient error: restarting until it recovers"]
    assert len(retries) >= 3 * FAST.limit - 1
    assert {(r["member"], r["exit_code"]) for r in retries} == {(1, exit_codes.KAFKA_UNREACHABLE)}
    assert [r["restart_in_s"] for r in retries[:4]] == [0.05, 0.1, 0.2, 0.2]  # doubling, capped
    assert [r["failures"] for r in retries[:4]] == [1, 2, 3, 4]


def test_a_crash_loop_gives_up_even_when_every_run_counts_as_healthy(tmp_path: Path, handlers: None,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A healthy run resets the back-off, not the crash limit: a member that crashes every
    ``healthy_s`` and a bit still reaches the host's supervisor instead of spinning."""
    caplog.set_level(logging.INFO, "tokenwatch.supervisor")
    policy = RestartPolicy(backoff_s=0.05, backoff_max_s=0.2, limit=3, window_s=60, healthy_s=0.0)
    supervisor = _supervisor(tmp_path, ["ok", "crash"], policy)
    assert supervisor.run() == exit_codes.FAILED
    assert _starts(tmp_path, 1) == 1 + policy.limit
    delays = [r.__dict__["restart_in_s"] for r in caplog.records
              if r.getMessage() == "member exited unexpectedly: restarting"]
    assert delays == [0.05] * policy.limit  # each run was "healthy": no doubling


MINUTE = 60.0
START_S = 30.0
"""How long a member takes to find the broker unreachable (kafka.request_timeout_ms)."""


def _outage(history: RestartHistory, start: float, until: float) -> list[Restart | GiveUp]:
    """A member that exits 4 after ``START_S`` each time it is started, from ``start`` to ``until``
    on a simulated clock (or until the supervisor gives up)."""
    decisions: list[Restart | GiveUp] = []
    started = start
    while (now := started + START_S) < until:
        decision = history.after_exit(exit_codes.KAFKA_UNREACHABLE, now, started)
        decisions.append(decision)
        if isinstance(decision, GiveUp):
            break
        started = now + decision.delay_s
    return decisions


def _history(policy: RestartPolicy | None = None) -> RestartHistory:
    return RestartHistory.of(policy or RestartPolicy(), transient_codes=(exit_codes.KAFKA_UNREACHABLE,),
                             lasting_codes=(exit_codes.CONFIG, exit_codes.PORT_IN_USE))


def _after_a_healthy_run(history: RestartHistory) -> list[Restart | GiveUp]:
    """The member ran 10 minutes until the broker went at 0 s; then it keeps exiting 4."""
    first = history.after_exit(exit_codes.KAFKA_UNREACHABLE, 0.0, -10 * MINUTE)
    assert isinstance(first, Restart)
    return [first, *_outage(history, first.delay_s, 60 * MINUTE)]


def test_an_outage_of_an_hour_is_waited_out_with_capped_back_off() -> None:
    """The old rule gave up after 5 restarts (1 + 2 + 4 + 8 + 16 = 31 s of back-off); now an
    unreachable broker is retried for as long as it is down, at most a minute apart."""
    decisions = _after_a_healthy_run(_history())
    assert all(isinstance(d, Restart) and d.transient for d in decisions)
    delays = [d.delay_s for d in decisions if isinstance(d, Restart)]
    assert delays[:8] == [1, 2, 4, 8, 16, 32, 60, 60] and max(delays) == 60
    assert len(decisions) > 30
    assert decisions[-1].failing_for_s > 57 * MINUTE


def test_an_outage_past_the_give_up_setting_stops_with_its_code() -> None:
    history = _history(RestartPolicy(transient_give_up_s=10 * MINUTE))
    decisions = _after_a_healthy_run(history)
    last = decisions[-1]
    assert isinstance(last, GiveUp) and (last.code, last.why) == (exit_codes.KAFKA_UNREACHABLE, "outage")
    assert 10 * MINUTE <= last.failing_for_s < 10 * MINUTE + 2 * MINUTE  # a delay and a start at most past it
    assert all(isinstance(d, Restart) for d in decisions[:-1])


def test_a_healthy_run_resets_the_back_off_and_the_outage() -> None:
    """After a run of ``healthy_s`` the next exit is a first exit again: 1 s, and an outage that
    follows is timed from there, not from the one before."""
    policy = RestartPolicy(transient_give_up_s=10 * MINUTE)
    history = _history(policy)
    first = _outage(history, 0.0, 8 * MINUTE)  # 8 minutes down: not given up
    assert all(isinstance(d, Restart) for d in first) and history.failures == len(first) > 5
    resumed = 8 * MINUTE + 60  # the broker came back; the member ran 3 minutes
    after = history.after_exit(exit_codes.KAFKA_UNREACHABLE, resumed + 3 * MINUTE, resumed)
    assert isinstance(after, Restart) and (after.delay_s, after.failures, after.failing_for_s) == (1.0, 1, 0.0)
    second = _outage(history, resumed + 3 * MINUTE + 1, resumed + 11 * MINUTE)  # another 8 minutes
    assert all(isinstance(d, Restart) for d in second)
    # A run shorter than healthy_s resets nothing.
    short = history.after_exit(exit_codes.KAFKA_UNREACHABLE, resumed + 12 * MINUTE, resumed + 11 * MINUTE)
    assert isinstance(short, Restart) and short.delay_s == 60 and short.failing_for_s > 8 * MINUTE


def test_crashes_back_off_and_give_up_within_the_window_while_lasting_codes_stop_at_once() -> None:
    history = _history(RestartPolicy(limit=5, window_s=300))
    decisions = [history.after_exit(1, t, t - 1) for t in (0.0, 10.0, 20.0, 30.0, 40.0, 50.0)]
    assert [d.delay_s for d in decisions if isinstance(d, Restart)] == [1, 2, 4, 8, 16]
    assert decisions[-1] == GiveUp(1, "crash loop", 50.0)
    killed = _history().after_exit(-signal.SIGKILL, 0.0, None)
    assert isinstance(killed, Restart) and not killed.transient
    old = _history(RestartPolicy(limit=2, window_s=100))
    for t in (0.0, 10.0):
        assert isinstance(old.after_exit(-signal.SIGKILL, t, t - 1), Restart)
    assert old.after_exit(-signal.SIGKILL, 20.0, 19.0) == GiveUp(exit_codes.FAILED, "crash loop", 20.0)
    assert isinstance(old.after_exit(-signal.SIGKILL, 500.0, 499.0), Restart)  # the old ones left the window
    for code in (exit_codes.CONFIG, exit_codes.PORT_IN_USE):
        assert _history().after_exit(code, 0.0, None) == GiveUp(code, "lasting", 0.0)


def test_a_broker_never_reached_since_the_start_is_given_up_on_after_the_start_window() -> None:
    """A mistyped ``kafka.bootstrap_servers`` exits 4 like an outage: without one healthy run since
    the supervisor started, it ends the service after ``start_give_up_s`` instead of never (7 days
    of it were 9920 restarts)."""
    decisions = _outage(_history(), 0.0, 7 * 24 * 60 * MINUTE)
    last = decisions[-1]
    assert isinstance(last, GiveUp) and (last.code, last.why) == (exit_codes.KAFKA_UNREACHABLE, "never reached")
    assert 10 * MINUTE <= last.failing_for_s < 10 * MINUTE + 2 * MINUTE
    assert all(isinstance(d, Restart) and d.transient for d in decisions[:-1]) and len(decisions) > 5
    # Runs shorter than healthy_s (a broker that answers then drops) do not open the window.
    flapping = _history()
    t = 0.0
    while isinstance(decision := flapping.after_exit(exit_codes.KAFKA_UNREACHABLE, t + 100, t), Restart):
        t += 100 + decision.delay_s
    assert decision.why == "never reached" and t < 13 * MINUTE
    # The shorter of the outage setting and the start window applies before the first healthy run.
    early = _outage(_history(RestartPolicy(transient_give_up_s=3 * MINUTE)), 0.0, 60 * MINUTE)[-1]
    assert isinstance(early, GiveUp) and early.why == "outage" and early.failing_for_s < 5 * MINUTE


def test_after_one_healthy_run_the_start_window_no_longer_applies() -> None:
    """Healthy once, then down: the outage rule (wait for ever by default) holds, where the same
    exits from a member never healthy are given up on."""
    history = _history(RestartPolicy(start_give_up_s=5 * MINUTE))
    decisions = _after_a_healthy_run(history)
    assert all(isinstance(d, Restart) for d in decisions) and decisions[-1].failing_for_s > 57 * MINUTE
    fresh = _history(RestartPolicy(start_give_up_s=5 * MINUTE))
    assert isinstance(_outage(fresh, 0.0, 60 * MINUTE)[-1], GiveUp)
