"""`tokenwatch detect --workers N` starts its fork server before it imports the command line,
so the server loads while the parent starts; the output is the pool's, as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline import DATA_DIR
from pipeline.cli.entry import asks_for_workers
from tests.conftest import TEST_HASH_KEY

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "asks"),
    [
        (["detect", "--workers", "2"], True),
        (["detect", "-i", "x.jsonl", "--workers=3"], True),
        (["detect", "-w", "4", "-i", "-"], True),
        (["detect", "-w2"], True),
        (["detect", "--workers", "1"], False),
        (["detect", "-w1"], False),
        (["detect"], False),
        (["detect", "--workers"], False),  # argparse says what is missing
        (["detect", "--workers", "two"], False),
        (["detect", "--workers", "\u00b2"], False),  # a digit int() refuses: argparse says so
        (["detect", "-w", "9" * 5000], False),  # more digits than int() takes: argparse says so
        (["detect", "--", "--workers", "2"], False),
        (["run", "--workers", "2"], False),  # `run`'s members are processes of their own
        (["--help", "detect", "--workers", "2"], False),
        ([], False),
    ],
)
def test_only_a_plain_detect_with_two_workers_or_more_starts_the_server_early(argv: list[str], asks: bool) -> None:
    assert asks_for_workers(argv) is asks


def _run(tmp_path: Path, workers: int, entry: str = "pipeline.cli.entry") -> tuple[list[str], bytes]:
    """Run `tokenwatch detect` through ``entry`` on the bundled sample: what it had imported
    when it started the fork server (nothing: never started), and its alerts."""
    output = tmp_path / f"alerts-{workers}-{entry}.jsonl"
    code = (
        "import sys, multiprocessing.util as util\n"
        "real = util.spawnv_passfds\n"
        "def spy(path, args, passfds):\n"
        "    if any('multiprocessing.forkserver' in str(arg) for arg in args):\n"
        "        seen = sorted(m for m in ('pipeline.config', 'pipeline.cli.main', 'pydantic') if m in sys.modules)\n"
        "        print('server started; loaded:', ' '.join(seen) or '-', file=sys.stderr)\n"
        "    return real(path, args, passfds)\n"
        "util.spawnv_passfds = spy\n"
        f"from {entry} import main\n"
        f"sys.argv = ['tokenwatch', 'detect', '--input', {str(DATA_DIR / 'sample.jsonl')!r}, '--output', {str(output)!r},"
        f" '--dead-letter', {str(tmp_path / 'dead.jsonl')!r}, '--workers', '{workers}']\n"
        "sys.exit(main())\n"
    )
    env = {"PATH": "/usr/bin:/bin", "TOKENWATCH_TOKEN_HASH_KEY": TEST_HASH_KEY.decode()}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    started = [line for line in done.stderr.splitlines() if line.startswith("server started")]
    return started, output.read_bytes()


def test_detect_with_two_workers_starts_the_fork_server_before_importing_the_command_line(tmp_path: Path) -> None:
    started, alerts = _run(tmp_path, 2)
    assert started[:1] == ["server started; loaded: -"]  # then the pool finds it running
    late_started, late_alerts = _run(tmp_path, 2, entry="pipeline.cli.main")
    assert late_started[:1] == ["server started; loaded: pipeline.cli.main pipeline.config pydantic"]
    assert alerts == late_alerts and len([orjson.loads(line) for line in alerts.splitlines()]) > 10


def test_one_worker_starts_no_server(tmp_path: Path) -> None:
    started, alerts = _run(tmp_path, 1)
    assert started == [] and alerts.count(b"\n") > 10


def test_a_server_that_cannot_start_early_changes_nothing_the_command_line_says(tmp_path: Path) -> None:
    """A temporary directory too long for the server's socket: help is still help and a bad
    option still a usage error (the pool, were it reached, would say why in one line)."""
    long_tmp = tmp_path / ("t" * 120)
    long_tmp.mkdir()
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(long_tmp), "TOKENWATCH_TOKEN_HASH_KEY": TEST_HASH_KEY.decode()}
    code = "import sys; from pipeline.cli.entry import main; sys.argv[0] = 'tokenwatch'; sys.exit(main())"
    helped = subprocess.run([sys.executable, "-c", code, "detect", "-w", "2", "--help"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=120)
    assert (helped.returncode, "Traceback" in helped.stderr) == (0, False) and "--workers" in helped.stdout
    refused = subprocess.run([sys.executable, "-c", code, "detect", "-i", "-", "-w", "2", "--bogus"], cwd=ROOT,
                             capture_output=True, text=True, env=env, timeout=120)
    assert (refused.returncode, "Traceback" in refused.stderr) == (2, False) and "--bogus" in refused.stderr


def test_the_entry_loads_multiprocessing_only_for_detect_with_workers() -> None:
    code = "import sys, pipeline.cli.entry; print('multiprocessing' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]
