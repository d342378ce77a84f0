"""Run a command in a terminal of a given size and capture what it printed, colours included.

The CLI colours and fits its tables only when its output is a terminal, so a screenshot must
come from one: a detached tmux session (``capture-pane -e`` keeps the SGR colours, and the
rows are what the pane showed) when tmux is installed, else a pseudo-terminal of the same size.
Either way the command also gets ``COLUMNS``/``LINES``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pty
import select
import shlex
import shutil
import struct
import subprocess
import tempfile
import termios
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

Method = Literal["tmux", "pty"]


def default_method() -> Method:
    return "tmux" if shutil.which("tmux") else "pty"


def terminal_env(columns: int, rows: int, env: Mapping[str, str] | None = None) -> dict[str, str]:
    out = dict(os.environ if env is None else env)
    out.update(COLUMNS=str(columns), LINES=str(rows), TERM="xterm-256color")
    out.pop("NO_COLOR", None)
    return out


def capture(command: Sequence[str], columns: int, rows: int = 200, env: Mapping[str, str] | None = None,
            method: Method | None = None, timeout_s: float = 120.0) -> str:
    """What ``command`` printed (stdout and stderr, ANSI escapes kept) in a terminal
    ``columns`` wide and ``rows`` high (tall enough that nothing scrolls away)."""
    method = method or default_method()
    full_env = terminal_env(columns, rows, env)
    if method == "tmux":
        return _tmux(command, columns, rows, full_env, timeout_s)
    return _pty(command, columns, rows, full_env, timeout_s)


def _tmux(command: Sequence[str], columns: int, rows: int, env: dict[str, str], timeout_s: float) -> str:
    tmux = shutil.which("tmux")
    if tmux is None:
        raise FileNotFoundError("tmux is not installed")
    with tempfile.TemporaryDirectory(prefix="tw-shots-") as tmp:
        folder = Path(tmp)  # private (0700): the environment written below stays the caller's
        socket, conf, script = str(folder / "tmux.sock"), folder / "tmux.conf", folder / "run.sh"
        conf.write_text("set -g status off\nset -g remain-on-exit on\nset -g history-limit 20000\n"
                        "set -g default-terminal screen-256color\n")
        # the pane starts from the tmux server's environment: the script sets the command's own
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()
                          if k.isidentifier() and k != "TERM")
        script.write_text(f"{exports}exec {shlex.join(command)}\n")
        script.chmod(0o700)
        base = [tmux, "-S", socket, "-f", str(conf)]
        subprocess.run([*base, "new-session", "-d", "-s", "shots", "-x", str(columns), "-y", str(rows),
                        f"/bin/sh {shlex.quote(str(script))}"], env=env, check=True, timeout=30)
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                dead = subprocess.run([*base, "display-message", "-p", "-t", "shots", "#{pane_dead}"],
                                      capture_output=True, text=True, check=True, timeout=30).stdout.strip()
                if dead == "1":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{command[0]} did not finish within {timeout_s:g} s")
                time.sleep(0.1)
            shown = subprocess.run([*base, "capture-pane", "-p", "-e", "-S", "-", "-E", "-", "-t", "shots"],
                                   capture_output=True, text=True, check=True, timeout=30).stdout
        finally:
            subprocess.run([*base, "kill-server"], capture_output=True, timeout=30)
    return _without_exit_note(shown)


def _without_exit_note(text: str) -> str:
    """tmux writes "Pane is dead …" under a finished command when it remains on exit."""
    lines = text.rstrip("\n").split("\n")
    while lines and ("Pane is dead" in lines[-1] or not lines[-1].strip()):
        lines.pop()
    return "\n".join(lines) + "\n"


def _pty(command: Sequence[str], columns: int, rows: int, env: dict[str, str], timeout_s: float) -> str:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    try:
        process = subprocess.Popen(list(command), stdin=slave, stdout=slave, stderr=slave, env=env,
                                   start_new_session=True)
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise TimeoutError(f"{command[0]} did not finish within {timeout_s:g} s")
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer of the terminal has closed it
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        process.wait(timeout=30)
    return b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
