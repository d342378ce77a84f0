"""`tokenwatch detect --workers N` starts its fork server before it imports the command line,
so the server loads while the parent starts; the output is the pool's, as before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pipeline import DATA_DIR
from pipeline.runtime.worker_server import asks_for_workers
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
