"""Kafka connection, topic and consumer-group settings (the ``[kafka]`` table).

One model for producers, consumers and the admin client, so TLS and SASL are
configured once. Passwords are ``SecretStr`` (masked in reprs and in
``config check``) and must come from the environment
(``TOKENWATCH_KAFKA__SASL_PASSWORD``) or a file (``sasl_password_file``),
never from the TOML file: ``reject_secrets_in_file`` enforces that for the
loader. ``client_kwargs`` / ``consumer_kwargs`` / ``producer_kwargs`` turn the
model into kafka-python keyword arguments; they hold the plaintext password,
so never log them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode


class KafkaTopics(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: list[str] = Field(
        default=["tokenwatch.events"], min_length=1, description="Topics of audit events (any mix of formats)"
    )
    dead_letter: str = Field(
        default="tokenwatch.dead-letters",
        description="Rejected records: the redacted record, its SHA-256 and size, reason, source offset "
        "(original bytes only with service.dead_letter_keep_original)",
    )
    alerts: str = Field(default="tokenwatch.alerts", description="Alert documents, keyed by alert id")
    revocations: str = Field(
        default="tokenwatch.revocations", description="Revocation events, read by every instance (global state)"
    )
    changelog_prefix: str = Field(
        default="tokenwatch.changelog", description="Changelog topic per state store: <prefix>.<store>"
    )

    def changelog(self, store: str) -> str:
        return f"{self.changelog_prefix}.{store}"


class KafkaConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: Annotated[list[str], NoDecode] = Field(
        default=["127.0.0.1:9092"], min_length=1, description="host:port of brokers (a list, or one comma-separated string)"
    )
    client_id: str = Field(default="tokenwatch", description="Client id the brokers see (logs, quotas)")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    ssl_cafile: Path | None = Field(default=None, description="CA bundle to verify brokers (default: system CAs)")
    ssl_certfile: Path | None = Field(default=None, description="Client certificate (mTLS)")
    ssl_keyfile: Path | None = Field(default=None, description="Client key (mTLS)")
    ssl_password: SecretStr | None = Field(default=None, description="Client key password: environment only")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(
        default=None, description="SASL password: TOKENWATCH_KAFKA__SASL_PASSWORD only, or sasl_password_file"
    )
    sasl_password_file: Path | None = Field(default=None, description="File holding the SASL password")
    group_id: str = Field(default="tokenwatch", description="Consumer group of the service instances")
    topics: KafkaTopics = KafkaTopics()
    session_timeout_ms: int = Field(default=10_000, gt=0, description="Consumer group session timeout")
    heartbeat_interval_ms: int = Field(default=3_000, gt=0, description="Below a third of session_timeout_ms")
    max_poll_records: int = Field(default=500, gt=0, description="Records per poll (one processing batch at most)")
    max_poll_interval_ms: int = Field(default=300_000, gt=0, description="Longest gap between polls before eviction")
    request_timeout_ms: int = Field(default=30_000, gt=0)
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a new group starts (earliest: process the backlog)"
    )
    acks: Literal["all", "1", "0"] = Field(default="all", description="Producer acknowledgements")
    linger_ms: int = Field(default=5, ge=0, description="Producer batching delay")
    compression_type: Literal["gzip", "snappy", "lz4", "zstd"] | None = None
    max_request_size: int = Field(default=1_048_576, gt=0, description="Largest producer request (bytes)")

    @field_validator("bootstrap_servers", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):  # "a:9092,b:9092" from an environment variable or the CLI
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bootstrap_servers", mode="after")
    @classmethod
    def _no_credentials(cls, servers: list[str]) -> list[str]:
        """``user:password@host:9092`` (or ``SASL_SSL://user:password@…``) would put the SASL
        secret in the config file and in `config check` output: refused with advice."""
        for server in servers:
            if "@" in server:
                where = server.rpartition("@")[2]
                raise ValueError(
                    f"bootstrap server ***@{where} carries a user name or password: set kafka.sasl_username, "
                    "and the password in TOKENWATCH_KAFKA__SASL_PASSWORD or kafka.sasl_password_file"
                )
        return servers

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL_"):
            if self.sasl_mechanism is None or not self.sasl_username:
                raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism and sasl_username")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise ValueError("SASL needs TOKENWATCH_KAFKA__SASL_PASSWORD or sasl_password_file")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be below session_timeout_ms")
        return self

    def password(self) -> str | None:
        """The SASL password, read from the file at use so a rotated file is picked up."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            return self.sasl_password_file.read_text(encoding="utf-8").strip()
        return None


def client_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """Connection arguments every kafka-python client accepts (producer, consumer, admin)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": list(config.bootstrap_servers),
        "client_id": config.client_id,
        "security_protocol": config.security_protocol,
        "request_timeout_ms": config.request_timeout_ms,
    }
    if config.security_protocol in ("SSL", "SASL_SSL"):
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(config, name)
            if path is not None:
                kwargs[name] = str(path)
        if config.ssl_password is not None:
            kwargs["ssl_password"] = config.ssl_password.get_secret_value()
    if config.security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = config.sasl_mechanism
        kwargs["sasl_plain_username"] = config.sasl_username
        kwargs["sasl_plain_password"] = config.password()
    return kwargs


def consumer_kwargs(config: KafkaConfig, group: bool = True) -> dict[str, Any]:
    """``KafkaConsumer`` arguments. CRC checks stay on (``crc32c`` makes them cheap);
    offsets are committed by the checkpoint, never automatically."""
    kwargs = client_kwargs(config) | {
        "check_crcs": True,
        "allow_auto_create_topics": False,  # a mistyped topic is an error, never a new empty topic
        "enable_auto_commit": False,
        "auto_offset_reset": config.auto_offset_reset,
        "max_poll_records": config.max_poll_records,
    }
    if group:
        kwargs |= {
            "group_id": config.group_id,
            "session_timeout_ms": config.session_timeout_ms,
            "heartbeat_interval_ms": config.heartbeat_interval_ms,
            "max_poll_interval_ms": config.max_poll_interval_ms,
        }
    else:
        kwargs["group_id"] = None
    return kwargs


def producer_kwargs(config: KafkaConfig) -> dict[str, Any]:
    """``KafkaProducer`` arguments; ``acks=all`` by default so a flushed record survives a broker loss."""
    acks: int | str = "all" if config.acks == "all" else int(config.acks)
    return client_kwargs(config) | {
        "acks": acks,
        "linger_ms": config.linger_ms,
        "compression_type": config.compression_type,
        "max_request_size": config.max_request_size,
    }

