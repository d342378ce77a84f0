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
from pipeline.kafka.config import KafkaConfig
from pipeline.logs import JsonFormatter
from pipeline.response.config import ResponseConfig
from pipeline.service import members
from pipeline.service.config import ServiceConfig
from pipeline.service.members import (
    idle_members,
    member_command,
    member_port,
    member_settings,
    restart_policy,
    tag_logs,
    warn_of_budget,
)
from pipeline.service.restarts import RestartPolicy
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
    assert command(2) == [sys.executable, "-m", "pipeline.cli.entry", "run", "--config", "/etc/tokenwatch.toml",
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


BUDGET_WARNING = ("response.max_auto_per_minute is below the member count: each member still gets 1, so the "
                  "members together may revoke more a minute than the budget")


@pytest.mark.parametrize(("budget", "workers", "together"), [(3, 4, 4), (1, 2, 2), (4, 4, None), (20, 3, None),
                                                             (0, 4, None)])
def test_a_budget_below_the_member_count_is_warned_of(caplog: pytest.LogCaptureFixture, budget: int, workers: int,
                                                      together: int | None) -> None:
    caplog.set_level(logging.WARNING, "tokenwatch.members")
    warn_of_budget(budget, workers)
    warned = [r.__dict__ for r in caplog.records if r.getMessage() == BUDGET_WARNING]
    if together is None:
        assert not warned
    else:
        assert [(w["max_auto_per_minute"], w["workers"], w["members_together"]) for w in warned] == [
            (budget, workers, together)]


class FakeSupervisor:
    """Stands in for ``Supervisor`` in ``run_members``: notes how it was built, starts nothing."""

    built: list[dict[str, Any]] = []

    def __init__(self, command: Any, workers: int, policy: RestartPolicy, **codes: Any) -> None:
        FakeSupervisor.built.append({"workers": workers, "policy": policy, **codes})

    def install_signal_handlers(self) -> None:
        pass

    def run(self) -> int:
        return exit_codes.OK


@pytest.mark.parametrize("enabled", [True, False])
def test_the_supervisor_warns_of_the_budget_at_start_and_waits_for_the_broker(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, enabled: bool) -> None:
    monkeypatch.setattr(members, "configure", lambda *args, **kwargs: None)
    monkeypatch.setattr(members, "input_partitions", lambda kafka: None)
    monkeypatch.setattr(members, "Supervisor", FakeSupervisor)
    monkeypatch.setattr(FakeSupervisor, "built", [])
    caplog.set_level(logging.INFO, "tokenwatch.members")
    settings = Settings(response=ResponseConfig(enabled=enabled, max_auto_per_minute=3),
                        service=ServiceConfig(member_restart_backoff_max_s=45, member_outage_give_up_s=900))
    assert members.run_members(tmp_path / "tokenwatch.toml", settings, 4) == exit_codes.OK
    messages = [r.getMessage() for r in caplog.records]
    # Said before the members start, and only when something revokes at all.
    assert messages[:1] == ([BUDGET_WARNING] if enabled else ["starting members"])
    [built] = FakeSupervisor.built
    assert built["transient_codes"] == (exit_codes.KAFKA_UNREACHABLE,)
    assert exit_codes.KAFKA_UNREACHABLE not in built["lasting_codes"]
    assert (built["policy"].backoff_max_s, built["policy"].transient_give_up_s) == (45, 900)


def test_the_restart_policy_waits_for_the_broker_for_ever_by_default() -> None:
    policy = restart_policy(Settings())
    assert policy.transient_give_up_s is None and policy.backoff_max_s == 60 and policy.healthy_s == 120
    assert restart_policy(Settings(service=ServiceConfig(member_outage_give_up_s=600))).transient_give_up_s == 600
    # A start that waits 100 s for an absent broker is no healthy run.
    slow = Settings(kafka=KafkaConfig(request_timeout_ms=100_000))
    assert restart_policy(slow).healthy_s == 200
