"""Ctrl-C ends a `tokenwatch` command with one line and death by SIGINT (a shell reports 130,
and a shell loop running it stops too), never a traceback.

The terminal sends SIGINT to the whole foreground process group: with `detect --workers N`
that is the parent, its fork server and every worker. Before, each printed a traceback of its
own (the server while it still imported its preload, a worker mid-run), and the parent too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import DATA_DIR, exit_codes
from pipeline.cli.interrupt import MESSAGE
from pipeline.service.members import member_command
from tests.conftest import TEST_HASH_KEY

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from pipeline.cli.entry import main; sys.argv[0] = 'tokenwatch'; sys.exit(main())"
STARTED_S = 60.0  # how long a loaded machine may take to start the command (no timing is asserted)


def _group(pid: int) -> list[int]:
    """The processes of process group ``pid`` (the command's: it leads a session of its own)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pid:  # pgrp
                found.append(int(entry.name))
    return found


def _interrupt(tmp_path: Path, argv: list[str], when: str) -> tuple[int, str]:
    """Start ``argv`` (`detect` reading stdin, kept open: it waits for more) and Ctrl-C its
    process group ``when``: shortly after its fork server appears (importing its preload, which
    takes a second or more), or once it has read its first lines; its exit code and stderr, once the group is gone."""
    env = {"PATH": "/usr/bin:/bin", "TOKENWATCH_TOKEN_HASH_KEY": TEST_HASH_KEY.decode()}
    proc = subprocess.Popen([*argv, "-o", str(tmp_path / "alerts.jsonl"), "--dead-letter", str(tmp_path / "dead.jsonl")],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        deadline = time.monotonic() + STARTED_S
        if when == "server starting":
            while len(_group(proc.pid)) < 3 and time.monotonic() < deadline:  # with the resource tracker
                time.sleep(0.005)
            time.sleep(0.3)  # past the server's interpreter start (a signal then kills it silently), in its preload
        else:  # the sample's first lines read: the command is running
            sample = DATA_DIR.joinpath("sample.jsonl").read_bytes().splitlines(keepends=True)
            proc.stdin.write(b"".join(sample[:20]))
            proc.stdin.flush()
            time.sleep(3.0)
        assert proc.poll() is None, proc.stderr.read().decode()
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        code = proc.wait(timeout=60)
        stderr = proc.stderr.read().decode()
        _wait_group_gone(proc.pid)
    finally:
        proc.stdin.close()
        proc.stderr.close()
        if proc.poll() is None:
            proc.kill()
    return code, stderr


def _wait_group_gone(group: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while _group(group):
        if time.monotonic() > deadline:
            os.killpg(group, signal.SIGKILL)
            raise AssertionError("a process of the command outlived it")
        time.sleep(0.05)


@pytest.mark.parametrize(("workers", "when"), [(2, "server starting"), (2, "running"), (1, "running")])
def test_ctrl_c_ends_detect_with_one_line_and_sigint(tmp_path: Path, workers: int, when: str) -> None:
    code, stderr = _interrupt(tmp_path, [sys.executable, "-c", ENTRY, "detect", "-i", "-", "--workers", str(workers)],
                              when)
    assert code == -signal.SIGINT, stderr  # a shell shows 130 and stops its loop
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines() == [MESSAGE]


@pytest.mark.parametrize("module", ["pipeline.cli.entry", "pipeline.cli.main"])
def test_the_modules_report_ctrl_c_the_same_way(tmp_path: Path, module: str) -> None:
    """`run --workers` starts its members with ``python -m pipeline.cli.entry`` (the supervisor
    forwards SIGINT, and a member still starting has no handler of its own yet); the command
    line's own module reports it too."""
    assert member_command(Path("x.toml"), 2)(0)[1:3] == ["-m", "pipeline.cli.entry"]
    code, stderr = _interrupt(tmp_path, [sys.executable, "-m", module, "detect", "-i", "-"], "running")
    assert code == -signal.SIGINT, stderr
    assert stderr.strip().splitlines() == [MESSAGE]


def test_a_ctrl_c_while_the_fork_server_starts_is_taken_once_it_has_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT is blocked, not ignored, while the server starts: a Ctrl-C meanwhile is delivered
    after, and nothing stays blocked (ignored, it was lost and `detect` kept waiting for input)."""
    import multiprocessing.forkserver
    import multiprocessing.resource_tracker

    from pipeline.runtime.worker_server import ensure_server

    monkeypatch.setattr(multiprocessing.resource_tracker, "ensure_running", lambda: None)
    monkeypatch.setattr(multiprocessing.forkserver, "ensure_running", lambda: signal.raise_signal(signal.SIGINT))
    with pytest.raises(KeyboardInterrupt):
        ensure_server()
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, ())
    assert 128 + signal.SIGINT == exit_codes.INTERRUPTED  # what a shell shows for it


def test_a_ctrl_c_while_the_pool_starts_stops_the_workers_already_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a notebook, a KeyboardInterrupt between two workers' starts: the first ignores Ctrl-C
    and waits for lines for ever unless the pool stops it."""
    from multiprocessing.process import BaseProcess

    from pipeline.config import Settings
    from pipeline.runtime.worker_judge import WorkerSpec
    from pipeline.runtime.workers import WorkerPool

    started: list[BaseProcess] = []
    real_start = BaseProcess.start

    def start(process: BaseProcess) -> None:
        if started:
            raise KeyboardInterrupt
        real_start(process)
        started.append(process)

    monkeypatch.setattr(BaseProcess, "start", start)
    with pytest.raises(KeyboardInterrupt):
        WorkerPool(WorkerSpec(Settings(), TEST_HASH_KEY), 2)
    assert len(started) == 1 and not started[0].is_alive()
