"""`tokenwatch detect --workers N` when a worker dies: the run stops at once with exit 1, naming the
worker and how it ended and what output is incomplete, and leaves no worker behind; it never waits
for good. When the command itself is killed, its workers and fork server follow it. Each run is a
child process with a timeout, so a hang fails its test instead of hanging the suite."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.traffic import generate as generate_traffic
from pipeline import DATA_DIR
from pipeline.runtime import workers
from pipeline.runtime.worker_answers import exit_words

ROOT = Path(__file__).resolve().parents[2]
HANG_S = 60.0
"""Far beyond a run that stops as it should (a few seconds, start-up included)."""
STOP_S = 15.0
"""From a worker's death to the command's exit: the survivors stopped and joined too."""
ORPHAN_S = 5.0
"""From the command's SIGKILL until its workers and fork server are gone (they notice at once)."""


@dataclass
class Ended:
    code: int
    err: str
    seconds: float  # from the worker's death (or the start) to the command's exit


def detect_command(tmp_path: Path, source: Path | str, serve: str | None = None, *extra: str) -> list[str]:
    """`tokenwatch detect --workers 2` over ``source`` as a command line; its workers run ``serve``,
    a function of this module, if given."""
    patch = f"from pipeline.runtime import workers; from {__name__} import {serve}; workers.serve = {serve}; " if serve else ""
    code = patch + "import sys; from pipeline.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return [sys.executable, "-c", code, "detect", "-i", str(source), "-o", str(tmp_path / "alerts.jsonl"),
            "--dead-letter", str(tmp_path / "dead.jsonl"), "--workers", "2", *extra]


def run_detect(tmp_path: Path, source: Path, serve: str | None = None, kill_worker: bool = False,
               ) -> tuple[Ended, list[int]]:
    """`tokenwatch detect --workers 2` over ``source`` in a child process (its workers run
    ``serve``, a function of this module, if given); ``kill_worker``: SIGKILL one busy worker.
    The run, and with ``kill_worker`` the pids of the worker killed, the other and their fork server."""
    started = time.monotonic()
    tree: list[int] = []
    with subprocess.Popen(detect_command(tmp_path, source, serve), cwd=ROOT, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            if kill_worker:
                server, found = busy_workers(proc.pid, 2)
                tree = [found[1], found[0], server]
                os.kill(tree[0], signal.SIGKILL)
                started = time.monotonic()
            _, err = proc.communicate(timeout=HANG_S)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)  # the command, its fork server and workers: our own session
            raise
    return Ended(proc.returncode, err, time.monotonic() - started), tree


# -- the process tree, from /proc: detect -> its fork server -> the workers -----------------------


def stat_of(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (the name, which may hold spaces, cut off)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2:].split()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_of(int(entry))
            if fields is not None and int(fields[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def is_fork_server(pid: int) -> bool:
    try:
        return b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def busy_workers(detect_pid: int, count: int, cpu_s: float = 0.5) -> tuple[int, list[int]]:
    """The pids of ``detect_pid``'s fork server and its workers, once each worker has spent
    ``cpu_s`` judging lines."""
    ticks = cpu_s * os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        for server in (pid for pid in children_of(detect_pid) if is_fork_server(pid)):
            found = children_of(server)
            used = [stat_of(pid) for pid in found]
            if len(found) == count and all(fields and int(fields[11]) + int(fields[12]) >= ticks for fields in used):
                return server, found
        time.sleep(0.05)
    raise AssertionError(f"no {count} busy workers under pid {detect_pid}")


def ended(pid: int) -> bool:
    """``pid`` is no more (or a zombie its new parent has yet to reap)."""
    fields = stat_of(pid)
    return fields is None or fields[0] == "Z"


def gone(pid: int, within_s: float = 5.0) -> bool:
    """True once ``pid`` has ended."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ended(pid):
            return True
        time.sleep(0.05)
    return False


def assert_stopped_incomplete(ended: Ended) -> None:
    """Exit 1 soon, a one-line reason saying the output is incomplete, and no summary."""
    assert ended.code == 1, ended.err
    assert ended.seconds < STOP_S
    assert "tokenwatch: detect stopped: detect worker " in ended.err and "are incomplete" in ended.err
    assert "tokenwatch detect:" not in ended.err and "Traceback" not in ended.err


# -- a real SIGKILL of a real worker ---------------------------------------------------------


def test_a_worker_killed_with_sigkill_mid_run_stops_detect_at_once_naming_it_and_its_signal(tmp_path: Path) -> None:
    source = tmp_path / "traffic.jsonl"
    source.write_bytes(b"\n".join(generate_traffic(40_000)) + b"\n")
    ended, (victim, other, server) = run_detect(tmp_path, source, kill_worker=True)
    assert_stopped_incomplete(ended)
    assert re.search(rf"detect worker [01] \(pid {victim}\) died \(killed by SIGKILL, exit code -9; ", ended.err)
    assert gone(other) and gone(server)  # stopped with the command, not left running as orphans


# -- the command itself killed: nothing it started may wait on as an orphan -------------------------


def still_running(pids: list[int], within_s: float) -> list[int]:
    """Those of ``pids`` that have not ended after ``within_s``."""
    deadline = time.monotonic() + within_s
    left = pids
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if not ended(pid)]
    return left


def idle_workers(detect_pid: int, count: int) -> tuple[int, list[int]]:
    """As ``busy_workers``, once each worker has judged lines and then used no CPU for 0.5 s:
    all of them wait for lines."""
    server, found = busy_workers(detect_pid, count, cpu_s=0.2)
    deadline = time.monotonic() + HANG_S
    used: list[tuple[str, int] | None] = []
    while time.monotonic() < deadline:
        now = [(fields[0], int(fields[11]) + int(fields[12])) if fields else None for fields in map(stat_of, found)]
        if now == used and all(state and state[0] == "S" for state in now):
            return server, found
        used = now
        time.sleep(0.5)
    raise AssertionError(f"the workers under pid {detect_pid} never waited for lines")


def test_detect_killed_with_sigkill_leaves_no_worker_and_no_fork_server_behind(tmp_path: Path) -> None:
    """The input is a pipe that stays open (`tail -f ... | tokenwatch detect`): the workers wait
    for lines the dead command will never send. (Workers busy judging when it dies stop anyway:
    their next answer finds its pipe's reader gone.)"""
    with subprocess.Popen(detect_command(tmp_path, "-"), cwd=ROOT, stdin=subprocess.PIPE,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True) as proc:
        try:
            assert proc.stdin is not None
            proc.stdin.write(b"\n".join(generate_traffic(20_000)) + b"\n")
            proc.stdin.flush()
            server, found = idle_workers(proc.pid, 2)
            started = [*found, *children_of(proc.pid)]  # the workers, their fork server, the resource tracker
            assert server in started and len(started) >= 3
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            assert still_running(started, ORPHAN_S) == []
        finally:
            with contextlib.suppress(ProcessLookupError):  # what the command left: our own session
                os.killpg(proc.pid, signal.SIGKILL)


# -- deaths at the worst moments, staged by the worker itself -----------------------------------


def _exit_zero_unanswered(index: int, spec: Any, inbox: Any, outbox: Any) -> None:
    """Worker 1 takes its first batch and exits with code 0 without a word."""
    if index == 1:
        inbox.get()
        os._exit(0)
    workers.serve(index, spec, inbox, outbox)


def _killed_mid_answer(index: int, spec: Any, inbox: Any, outbox: Any) -> None:
    """Worker 1 writes the first 4 KiB of a 1 MiB answer and is killed, as the OOM killer would."""
    if index == 1:
        inbox.get()
        os.write(outbox.fileno(), struct.pack("!i", 1 << 20) + b"\x80" * 4096)
        os.kill(os.getpid(), signal.SIGKILL)
    workers.serve(index, spec, inbox, outbox)


@pytest.mark.parametrize(("serve", "says"), [
    ("_exit_zero_unanswered", "died (exit code 0) before it answered all its lines"),
    ("_killed_mid_answer", "died (killed by SIGKILL, exit code -9; the kernel's out-of-memory killer sends it)"),
])
def test_a_worker_dying_before_its_answer_is_whole_stops_detect_with_exit_1(
    tmp_path: Path, serve: str, says: str,
) -> None:
    ended, _ = run_detect(tmp_path, DATA_DIR / "sample.jsonl", serve)
    assert_stopped_incomplete(ended)
    assert re.search(r"detect worker 1 \(pid \d+\) " + re.escape(says), ended.err)


def test_exit_words_name_the_signal_and_the_exit_code() -> None:
    assert exit_words(3) == "exit code 3"
    assert exit_words(-signal.SIGTERM) == "killed by SIGTERM, exit code -15"
    assert exit_words(None) == "closed its answer pipe without exiting"
