"""Which Kafka error at start is an outage (exit 4: ``run --workers`` waits it out) and which a
refusal no restart cures (exit 2: stops at once, so systemd/Kubernetes see it): the broker that
answers "not authorised" or "replication factor 3 with 1 broker" will answer it again."""

from __future__ import annotations

from kafka.errors import (
    AuthorizationError,
    BrokerNotAvailableError,
    IllegalSaslStateError,
    InvalidConfigurationError,
    InvalidPartitionsError,
    InvalidReplicationAssignmentError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaConfigurationError,
    KafkaError,
    PolicyViolationError,
    RetriableError,
    SaslAuthenticationFailedError,
    UnsupportedSaslMechanismError,
)

from pipeline import exit_codes
from pipeline.kafka.config import KafkaConfig
from pipeline.service.startup import StartupError

UNREACHABLE = (RetriableError, BrokerNotAvailableError)
"""No broker answered, or not yet: KafkaTimeoutError ("Unable to bootstrap"), KafkaConnectionError,
NodeNotReadyError, RequestTimedOutError are all RetriableError (kafka-python 3 has no
NoBrokersAvailable)."""
_ADVICE: tuple[tuple[tuple[type[KafkaError], ...], str], ...] = (
    ((AuthorizationError,),
     "grant the client's principal (kafka.sasl_username, or the kafka.ssl_certfile subject) the ACLs it needs on "
     "the kafka.topics topics and the kafka.group_id group, or create the topics beforehand"),
    ((SaslAuthenticationFailedError, UnsupportedSaslMechanismError, IllegalSaslStateError),
     "check kafka.sasl_mechanism, kafka.sasl_username and the password (kafka.sasl_password / sasl_password_file)"),
    ((PolicyViolationError, InvalidReplicationFactorError, InvalidReplicationAssignmentError, InvalidPartitionsError,
      InvalidConfigurationError, InvalidTopicError),
     "the broker refuses the topic as tokenwatch creates it (the broker's default.replication.factor, the input "
     "topic's partition count, names from kafka.topics): fix the broker's setting or policy, or create it beforehand"),
    ((KafkaConfigurationError,), "check the [kafka] settings"),
)
DETAIL_CHARS = 200


def kafka_start_error(exc: KafkaError, kafka: KafkaConfig) -> StartupError:
    """The one-line start-up failure for ``exc``, with the exit code that tells an outage from a refusal."""
    servers = ",".join(kafka.bootstrap_servers)
    if isinstance(exc, UNREACHABLE):
        return StartupError(exit_codes.KAFKA_UNREACHABLE,
                            f"cannot reach Kafka at {servers} (kafka.bootstrap_servers): {type(exc).__name__}")
    detail = str(exc)[:DETAIL_CHARS]  # the class, and what ensure_topics adds: "creating topic NAME: why"
    for kinds, advice in _ADVICE:
        if isinstance(exc, kinds):
            return StartupError(exit_codes.CONFIG, f"Kafka at {servers} refuses tokenwatch: {detail}; {advice}")
    # Neither: a client or protocol failure of unknown cause, restarted as a crash would be.
    return StartupError(exit_codes.FAILED, f"Kafka client failed at start against {servers}: {detail}")
