"""Settings of the service loop itself (metrics endpoint, checkpoint cadence):
the ``[service]`` table of the configuration (``TOKENWATCH_SERVICE__<KEY>``).

Part of the configuration layer (README "Layout"): it imports nothing from the service or
the sinks, so the sink names it accepts are listed here (``SINK_NAMES``) and a test keeps
them equal to the registry ``pipeline.sinks.SINKS``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SINK_NAMES = ("elasticsearch", "kafka", "memory")
"""The names ``pipeline.sinks.SINKS`` registers: checked when the settings load (a typo fails
``config check`` and ``run`` before anything connects)."""


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics_host: str = Field(default="127.0.0.1", description="Address of /metrics and /healthz")
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Port of /metrics and /healthz (0: any)")
    checkpoint_interval_s: float = Field(default=5.0, gt=0, description="Checkpoint at least this often")
    checkpoint_records: int = Field(default=10_000, gt=0, description="Checkpoint after this many records")
    checkpoint_idle_s: float = Field(
        default=1.0, gt=0,
        description="Once the input is caught up (a poll brought nothing and every owned partition is at its end), "
        "checkpoint what was processed as soon as this long has passed since the last checkpoint, instead of "
        "waiting for checkpoint_interval_s: a pause in the traffic leaves no offset uncommitted and every alert "
        "in Elasticsearch within about a second (at least checkpoint_interval_s: only the periodic checkpoints)",
    )
    poll_timeout_ms: int = Field(default=200, gt=0, description="Longest wait of one poll")
    backpressure_backoff_s: float = Field(default=1.0, gt=0, description="First retry delay of a failed flush")
    backpressure_backoff_max_s: float = Field(default=30.0, gt=0, description="Cap of that delay")
    member_restart_backoff_max_s: float = Field(
        default=60.0, gt=0,
        description="run --workers: cap of the delay before a member that exited is restarted (1 s, doubling with "
        "each exit since its last healthy run of 2 minutes)",
    )
    member_outage_give_up_s: float = Field(
        default=0.0, ge=0,
        description="run --workers: stop the service (exit 4) once a member has kept exiting because no Kafka "
        "broker answers for this long; 0: wait for the broker for ever, as one process does mid-run (but a member "
        "not yet healthy for 2 minutes since the start is given up on after 10 minutes: a mistyped bootstrap server)",
    )
    restore_idle_polls: int = Field(
        default=2, gt=0, description="Changelog restore ends after this many empty fetches past the end offset"
    )
    log_level: str = Field(default="INFO", description="Level of the JSON logs")
    client_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="WARNING",
        description="Level of the Kafka and Elasticsearch client libraries' own logs (their INFO is connection "
        "chatter: 134 of 140 lines in 15 s); DEBUG or INFO to diagnose a connection",
    )
    progress_every_s: float = Field(default=10.0, gt=0, description="Backlog replay: a progress log line this often")
    backlog_threshold: int = Field(
        default=10_000, ge=1, description="Consumer lag (records) above which the service reports backlog progress"
    )
    sinks: tuple[str, ...] = Field(
        default=("kafka", "elasticsearch"), min_length=1,
        description="Where alerts, dead letters (and events, with elasticsearch.index_events) go, by registered "
        "sink name (pipeline.sinks.SINKS), in order: kafka first, so an alert reaches its topic without waiting "
        "for a bulk request",
    )
    dead_letter_keep_original: bool = Field(
        default=False,
        description="Dead-letter topic records carry the original record bytes (tokens included; "
        "tokenwatch_handle removed) instead of the redacted record: only for a topic protected like the input",
    )

    @field_validator("sinks")
    @classmethod
    def _registered_sinks(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in names if name not in SINK_NAMES]
        if unknown:
            raise ValueError(f"unknown sink {', '.join(map(repr, unknown))}: choose from {', '.join(sorted(SINK_NAMES))}")
        if len(set(names)) != len(names):
            raise ValueError("a sink is named twice")
        return names
