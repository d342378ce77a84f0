"""Fixtures for tests against real servers (never skipped: the test extra installs them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import tansu_broker


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A Tansu broker shared by the session; tests use their own topic names."""
    with tansu_broker() as bootstrap:
        yield bootstrap
