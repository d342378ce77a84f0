"""A small demo run shared by the notebook, screenshot and sampling tests.

``tokenwatch demo --size 20 --duration 6h`` (~3 s) writes the alert store, the generated
events and their labels into a temporary directory, once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_HASH_KEY


def demo_env(out: Path) -> dict[str, str]:
    """The environment the demo ran with: its token-hash key, so hashed token ids join."""
    return {**os.environ, "TOKENWATCH_TOKEN_HASH_KEY": TEST_HASH_KEY.decode(), "TOKENWATCH_STATE_DIR": str(out / "state")}


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "demo", "--size", "20", "--duration", "6h", "--output-dir", str(out)],
        env=demo_env(out), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("tokenwatch.toml", "tokenwatch.db", "labels.json", "events"):
        assert (out / name).exists(), f"the demo did not write {name}"
    return out
