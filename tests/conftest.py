"""Shared fixtures: a fixed token-hash key so ids are stable and no key file is written."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as _hypothesis_settings

from pipeline import compiled
from schemas.redaction import make_token_hasher

# Which build the tests import (``make test`` names it; tests/compiled/test_build.py checks it): ``pure``
# imports the sources of the modules ``make compile`` builds. A build older than its sources would
# test code that is no longer there (worker processes import it too), so it stops the run.
if os.environ.get(compiled.BUILD_ENV) == "pure":
    compiled.use_pure_python()
elif compiled.built_paths() and compiled.stale():
    raise pytest.UsageError(
        f"the compiled build is older than {', '.join(compiled.stale())}: run `make compile`, "
        "or `python -m pipeline.build_compiled --clean` to test pure Python"
    )

TEST_HASH_KEY = b"tokenwatch-test-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _isolated_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("TOKENWATCH_TOKEN_HASH_KEY", TEST_HASH_KEY.decode())
    monkeypatch.setenv("TOKENWATCH_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture
def hasher():
    return make_token_hasher(TEST_HASH_KEY)


# CI runs the property tests with a fixed derivation of examples, so a landing is
# never blocked by a chance draw; local runs keep exploring new examples.
_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")
