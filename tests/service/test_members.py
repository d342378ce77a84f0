"""What differs between the members of `tokenwatch run --workers N`: port, log field, the
breaker's share; and how the command line dispatches to them."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline import exit_codes
from pipeline.cli.main import main
from pipeline.config import Settings
from pipeline.logs import JsonFormatter
from pipeline.response.config import ResponseConfig
from pipeline.service import members
from pipeline.service.config import ServiceConfig
from pipeline.service.members import idle_members, member_command, member_port, member_settings, tag_logs
from pipeline.service.startup import StartupError


def test_member_i_listens_on_the_port_plus_i_and_any_port_stays_any() -> None:
    assert [member_port(9464, i) for i in range(3)] == [9464, 9465, 9466]
    assert [member_port(0, i) for i in range(3)] == [0, 0, 0]
    with pytest.raises(StartupError) as refused:
        member_port(65535, 1)
    assert refused.value.code == exit_codes.CONFIG and "service.metrics_port" in str(refused.value)


def test_member_settings_differ_in_port_and_breaker_share_only() -> None:
    settings = Settings(service=ServiceConfig(metrics_port=9500), response=ResponseConfig(max_auto_per_minute=20))
    second = member_settings(settings, 1, 3)
    assert second.service.metrics_port == 9501
    assert second.response.max_auto_per_minute == 6  # 3 members never revoke more than 20 a minute
    assert second.service.model_copy(update={"metrics_port": 9500}) == settings.service
    assert second.kafka == settings.kafka and second.detectors == settings.detectors
    few = Settings(response=ResponseConfig(max_auto_per_minute=1))
    assert member_settings(few, 0, 4).response.max_auto_per_minute == 1  # a budget never becomes 0 ...
    off = Settings(response=ResponseConfig(max_auto_per_minute=0))
    assert member_settings(off, 0, 4).response.max_auto_per_minute == 0  # ... and 0 stays 0


def test_every_log_line_of_a_member_names_it(hasher: Any) -> None:
    saved = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(hasher))
    logger = logging.getLogger("tokenwatch.test-members")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        tag_logs(2)
        logger.warning("partition restored", extra={"partition": 1})
    finally:
        logging.setLogRecordFactory(saved)
        logger.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert (line["member"], line["partition"], line["message"]) == (2, 1, "partition restored")


def test_members_past_the_partition_count_are_idle() -> None:
    assert idle_members(2, 3) == 0
    assert idle_members(3, 3) == 0
    assert idle_members(5, 3) == 2


def test_a_member_is_the_run_command_with_its_index() -> None:
    command = member_command(Path("/etc/tokenwatch.toml"), 3)
    assert command(2) == [sys.executable, "-m", "pipeline.cli.main", "run", "--config", "/etc/tokenwatch.toml",
                          "--workers", "3", "--member", "2"]


@pytest.mark.parametrize(("argv", "expected"), [
    ([], "service"),
    (["--workers", "1"], "service"),
    (["--workers", "3"], "members 3"),
    (["--workers", "3", "--member", "1"], "member 1 of 3"),
])
def test_run_dispatches_on_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                   expected: str) -> None:
    import pipeline.service.runner as runner

    called: list[str] = []

    def note(what: str) -> int:
        called.append(what)
        return 0

    monkeypatch.setattr(runner, "run_service", lambda settings, config: note("service"))
    monkeypatch.setattr(members, "run_members", lambda config, settings, workers: note(f"members {workers}"))
    monkeypatch.setattr(members, "run_member", lambda settings, index, workers: note(f"member {index} of {workers}"))
    config = tmp_path / "tokenwatch.toml"
    config.write_text("")
    assert main(["run", "--config", str(config), *argv]) == 0
    assert called == [expected]


def test_workers_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["run", "--config", str(tmp_path / "x.toml"), "--workers", "0"])
    assert usage.value.code == 2


def test_a_member_whose_supervisor_died_before_it_looked_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """The supervisor's pid comes from it, not from the member's getppid(): killed while the
    member starts, the supervisor is already replaced by init, and the member must stop."""
    import signal

    gone = 2 ** 22 + 7  # not our parent: the supervisor that named itself is gone
    monkeypatch.setenv(members.SUPERVISOR_PID_ENV, str(gone))
    assert members.supervisor_pid() == gone
    got: list[int] = []
    monkeypatch.setattr(members.os, "kill", lambda pid, sig: got.append(sig))
    members.stop_with_parent(members.supervisor_pid(), check_s=0.01).join(timeout=5)
    assert got == [signal.SIGTERM]
    monkeypatch.delenv(members.SUPERVISOR_PID_ENV)
    assert members.supervisor_pid() == os.getppid()
