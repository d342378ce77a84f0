"""Ctrl-C ends a `tokenwatch` command with one line and exit code 130, never a traceback.

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
from tests.conftest import TEST_HASH_KEY

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "import sys; from pipeline.cli.entry import main; sys.argv[0] = 'tokenwatch'; sys.exit(main())"


def _interrupt(tmp_path: Path, workers: int, after_s: float) -> tuple[int, str]:
    """Start `detect` reading stdin (kept open: it waits for more), Ctrl-C its process group
    ``after_s`` later; its exit code and stderr, once every process of the group is gone."""
    env = {"PATH": "/usr/bin:/bin", "TOKENWATCH_TOKEN_HASH_KEY": TEST_HASH_KEY.decode()}
    argv = [sys.executable, "-c", ENTRY, "detect", "-i", "-", "-o", str(tmp_path / f"alerts-{workers}-{after_s}.jsonl"),
            "--workers", str(workers)]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdin is not None and proc.stderr is not None
    proc.stdin.write(b"".join(DATA_DIR.joinpath("sample.jsonl").read_bytes().splitlines(keepends=True)[:20]))
    proc.stdin.flush()
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    try:
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
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(group, signal.SIGKILL)
    raise AssertionError("a process of the command outlived it")


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("after_s", [0.15, 0.6, 3.0])  # starting (the server's interpreter, its preload), waiting for input
def test_ctrl_c_ends_detect_with_one_line_and_130(tmp_path: Path, workers: int, after_s: float) -> None:
    code, stderr = _interrupt(tmp_path, workers, after_s)
    assert code == exit_codes.INTERRUPTED == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "tokenwatch: interrupted"
