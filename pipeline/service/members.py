"""`tokenwatch run --workers N`: N members of one consumer group on this host.

Each member is the whole service (``runner.Service``) in a process of its own, started as
``tokenwatch run --member I``: Kafka's group assignment divides the partitions among them,
and each keeps what a single instance keeps (per-partition restore, checkpoints, commits of
only what it checkpointed), so a member killed with -9 is replayed by whoever takes its
partitions, as an instance on another host would be. ``supervisor.Supervisor`` keeps them
running.

What differs per member: the metrics/health port (``service.metrics_port`` + I; 0 stays 0)
and a ``member`` field on every log line. What is shared and why it is fine: the revocations
feed (each member reads all of it, as every instance does), the response (each member acts on
its own alerts; claims are compare-and-set in the shared store), the retraining schedule (each
member retrains on the baseline of its own partitions and writes ``model_path`` atomically;
README "Service"). The breaker's global budget lives in each member's memory, so it is
divided among the members: N members never revoke more per minute than one would, except
that a share is never below 1 (0 would trip a member's breaker at its first automatic
revocation), so a budget below N lets the members together revoke N a minute: warned of at start.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import KafkaError

from pipeline import exit_codes
from pipeline.config import Settings
from pipeline.kafka.config import KafkaConfig, consumer_kwargs
from pipeline.logs import configure
from pipeline.service.restarts import RestartPolicy
from pipeline.service.startup import StartupError
from pipeline.service.supervisor import Command, Supervisor

log = logging.getLogger("tokenwatch.members")

LASTING_CODES = (exit_codes.CONFIG, exit_codes.NOT_FOUND, exit_codes.PORT_IN_USE, exit_codes.ELASTICSEARCH_REFUSED)
"""A member's exit codes that restarting cannot cure (``pipeline.exit_codes``): the supervisor
stops every member and exits with the code."""
TRANSIENT_CODES = (exit_codes.KAFKA_UNREACHABLE,)
"""A member's exit codes that clear by themselves: an unreachable broker comes back, so the
member is restarted until it does (``service.member_outage_give_up_s``: 0, for ever), as one
process rides out a broker gone mid-run."""
PARENT_CHECK_S = 1.0


def member_port(base: int, index: int) -> int:
    """Member ``index``'s metrics port: ``base + index``; 0 (any free port) stays 0."""
    if base == 0:
        return 0
    port = base + index
    if port > 65535:
        raise StartupError(exit_codes.CONFIG, f"member {index} would listen on port {port}: service.metrics_port "
                                              f"{base} leaves no room for the members; lower it, or 0 (any port)")
    return port


def budget_share(budget: int, workers: int) -> int:
    """Each member's share of the breaker's global budget: at least 1 (a share of 0 would trip
    its breaker at its first automatic revocation), and 0 (no automatic revocation) stays 0."""
    return max(1, budget // workers) if budget else 0


def member_settings(settings: Settings, index: int, workers: int) -> Settings:
    """The settings member ``index`` of ``workers`` runs with (its own port, its share of the
    breaker's global budget)."""
    service = settings.service.model_copy(update={"metrics_port": member_port(settings.service.metrics_port, index)})
    share = budget_share(settings.response.max_auto_per_minute, workers)
    response = settings.response.model_copy(update={"max_auto_per_minute": share})
    return settings.model_copy(update={"service": service, "response": response})


def warn_of_budget(budget: int, workers: int) -> None:
    """Say at start when the members together may revoke more per minute than the budget."""
    together = budget_share(budget, workers) * workers
    if together > budget:
        log.warning("response.max_auto_per_minute is below the member count: each member still gets 1, so the "
                    "members together may revoke more a minute than the budget", extra={
                        "max_auto_per_minute": budget, "workers": workers, "members_together": together})


def restart_policy(settings: Settings) -> RestartPolicy:
    """The supervisor's restart rule, from the ``[service]`` settings. A healthy run outlasts two
    Kafka request timeouts: a start that finds no broker takes about one, and must not count."""
    service = settings.service
    healthy_s = max(RestartPolicy.healthy_s, 2 * settings.kafka.request_timeout_ms / 1000)
    return RestartPolicy(backoff_max_s=service.member_restart_backoff_max_s, healthy_s=healthy_s,
                         transient_give_up_s=service.member_outage_give_up_s or None)


def tag_logs(index: int) -> None:
    """Every log record of this process carries ``member`` (the JSON logs show it as a field).
    ``pipeline.logs`` is imported above on purpose: it notes a record's standard attributes when
    imported, and imported after this factory it would count ``member`` among them and drop it."""
    make_record = logging.getLogRecordFactory()

    def tagged(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.member = index
        return record

    logging.setLogRecordFactory(tagged)


def stop_with_parent(parent: int, check_s: float = PARENT_CHECK_S) -> threading.Thread:
    """SIGTERM ourselves once the supervisor is gone (kill -9): the member checkpoints and leaves
    the group instead of running on unsupervised."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(check_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="tokenwatch-parent-watch", daemon=True)
    thread.start()
    return thread


SUPERVISOR_PID_ENV = "TOKENWATCH_SUPERVISOR_PID"
"""Set by the supervisor for its members: the parent a member watches. Read from the member's
own ``getppid()`` instead, a supervisor killed while the member starts would already have been
replaced by init, and the member would watch init and run on unsupervised."""


def supervisor_pid() -> int:
    named = os.environ.get(SUPERVISOR_PID_ENV, "")
    return int(named) if named.isdigit() else os.getppid()


def run_member(settings: Settings, index: int, workers: int) -> int:
    """``tokenwatch run --member I``: one member, started by ``run_members``."""
    from pipeline.service.runner import run_service

    tag_logs(index)
    stop_with_parent(supervisor_pid())
    try:
        mine = member_settings(settings, index, workers)
        return run_service(mine, mine.service)
    except StartupError as exc:  # the supervisor's stderr carries every member's: say whose
        raise StartupError(exc.code, f"member {index}: {exc}") from None


def member_command(config: Path, workers: int) -> Command:
    """The command line of member ``index``: this interpreter, this package, the same file."""
    def command(index: int) -> list[str]:
        return [sys.executable, "-m", "pipeline.cli.entry", "run", "--config", str(config),
                "--workers", str(workers), "--member", str(index)]
    return command


def input_partitions(kafka: KafkaConfig) -> int | None:
    """Partitions of the largest input topic (members past it stay idle), or None when unknown
    (a missing topic, an unreachable broker: the members report those with their exit codes)."""
    try:
        consumer = KafkaConsumer(**consumer_kwargs(kafka, group=False))
    except KafkaError:
        return None
    try:
        counts = [len(consumer.partitions_for_topic(topic) or ()) for topic in kafka.topics.input]
    except KafkaError:
        return None
    finally:
        consumer.close()
    return max(counts, default=0) or None


def idle_members(workers: int, partitions: int) -> int:
    """Members the range assignment leaves without a partition (it divides each topic apart)."""
    return max(0, workers - partitions)


def run_members(config: Path, settings: Settings, workers: int, policy: RestartPolicy | None = None) -> int:
    """``tokenwatch run --workers N``: supervise N members until SIGTERM/SIGINT."""
    from pipeline.runtime.build import token_hasher

    service = settings.service
    configure(token_hasher(), service.log_level, client_level=service.client_log_level)
    member_port(service.metrics_port, workers - 1)  # fails before any member starts
    partitions = input_partitions(settings.kafka)
    if partitions is not None and idle_members(workers, partitions):
        log.warning("more members than input partitions: the extra members stay idle (they take partitions over "
                    "when another member leaves)", extra={"workers": workers, "partitions": partitions,
                                                          "idle": idle_members(workers, partitions)})
    if settings.response.enabled:
        warn_of_budget(settings.response.max_auto_per_minute, workers)
    os.environ[SUPERVISOR_PID_ENV] = str(os.getpid())  # the members inherit it
    supervisor = Supervisor(member_command(config, workers), workers, policy or restart_policy(settings),
                            lasting_codes=LASTING_CODES, transient_codes=TRANSIENT_CODES)
    supervisor.install_signal_handlers()
    log.info("starting members", extra={"workers": workers, "group": settings.kafka.group_id,
                                        "metrics_ports": [member_port(service.metrics_port, i) for i in range(workers)]})
    code = supervisor.run()
    log.info("members stopped", extra={"exit_code": code})
    return code
