"""`tokenwatch run` at start tells a Kafka outage (exit 4, which `run --workers` waits out) from a
refusal no restart cures (exit 2, which stops at once): an ACL, SASL, a topic policy or a
replication factor the cluster cannot meet used to exit 4 and be retried for ever."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.errors import (
    BrokerNotAvailableError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalStateError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    PolicyViolationError,
    RequestTimedOutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)

from pipeline import exit_codes
from pipeline.config import Settings
from pipeline.kafka import topics
from pipeline.service.runner import run_service
from pipeline.service.startup import StartupError

CHANGELOG = "tokenwatch-changelog-state"


def _start_failing_with(monkeypatch: pytest.MonkeyPatch, error: KafkaError, *, at: str) -> StartupError:
    """Run ``run_service`` with the input topic present and ``error`` raised by the Kafka call ``at``
    (``existing_topics``: the first one; ``changelog``: creating the changelog topic)."""
    monkeypatch.setattr("pipeline.logs.configure", lambda *a, **k: None)
    settings = Settings()
    calls: list[str] = []

    def existing(_kafka: Any) -> set[str]:
        if at == "existing_topics":
            raise error
        return set(settings.kafka.topics.input)

    def ensure(_kafka: Any, *args: Any, **kwargs: Any) -> dict[str, topics.TopicStatus]:
        calls.append("ensure")
        if kwargs.get("changelog_stores"):
            raise error
        return {name: topics.TopicStatus(name, False, 3) for name in settings.kafka.topics.input}

    monkeypatch.setattr(topics, "existing_topics", existing)
    monkeypatch.setattr(topics, "ensure_topics", ensure)
    with pytest.raises(StartupError) as raised:
        run_service(settings, settings.service)
    assert raised.value.__suppress_context__  # one line, no chained traceback
    return raised.value


@pytest.mark.parametrize("error", [KafkaTimeoutError("Unable to bootstrap from ['127.0.0.1:9092']"),
                                   KafkaConnectionError(), NodeNotReadyError(), RequestTimedOutError(),
                                   BrokerNotAvailableError()], ids=lambda e: type(e).__name__)
def test_no_broker_answering_is_exit_4(monkeypatch: pytest.MonkeyPatch, error: KafkaError) -> None:
    failure = _start_failing_with(monkeypatch, error, at="existing_topics")
    assert failure.code == exit_codes.KAFKA_UNREACHABLE
    assert str(failure) == f"cannot reach Kafka at 127.0.0.1:9092 (kafka.bootstrap_servers): {type(error).__name__}"


@pytest.mark.parametrize(("error", "names"), [
    (TopicAuthorizationFailedError(f"creating topic {CHANGELOG}: denied"), ("kafka.sasl_username", CHANGELOG)),
    (ClusterAuthorizationFailedError(f"creating topic {CHANGELOG}: CREATE denied"), ("ACLs", CHANGELOG)),
    (GroupAuthorizationFailedError(), ("kafka.group_id",)),
    (PolicyViolationError(f"creating topic {CHANGELOG}: retention too short"), ("policy", CHANGELOG)),
    (InvalidReplicationFactorError(f"creating topic {CHANGELOG}: 3 larger than 1 broker"),
     ("default.replication.factor", CHANGELOG)),
    (SaslAuthenticationFailedError("bad credentials"), ("kafka.sasl_mechanism",)),
], ids=lambda e: type(e).__name__ if isinstance(e, KafkaError) else "")
def test_a_refusal_no_restart_cures_is_exit_2_naming_the_error_and_what_to_fix(
        monkeypatch: pytest.MonkeyPatch, error: KafkaError, names: tuple[str, ...]) -> None:
    failure = _start_failing_with(monkeypatch, error, at="changelog")
    assert failure.code == exit_codes.CONFIG
    message = str(failure)
    assert message.startswith(f"Kafka at 127.0.0.1:9092 refuses tokenwatch: [Error {error.errno}] {type(error).__name__}")
    assert "cannot reach" not in message and "\n" not in message
    assert all(name in message for name in names)


def test_another_kafka_client_error_is_a_crash_not_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarted by `run --workers` as crashes are (a few times), not waited on for ever."""
    failure = _start_failing_with(monkeypatch, IllegalStateError("no"), at="existing_topics")
    assert failure.code == exit_codes.FAILED
    assert "IllegalStateError" in str(failure) and "cannot reach" not in str(failure)


def test_a_long_broker_message_is_cut() -> None:
    from pipeline.kafka.config import KafkaConfig
    from pipeline.service.kafka_refusals import DETAIL_CHARS, kafka_start_error

    failure = kafka_start_error(PolicyViolationError("x" * 5000), KafkaConfig())
    assert failure.code == exit_codes.CONFIG and len(str(failure)) < DETAIL_CHARS + 400
