"""Kafka plumbing: connection settings, the message-key rule, producing and topic creation.

``pipeline.kafka.keys`` holds the key rule (see its docstring); the service
(``tokenwatch run``) builds on these pieces.
"""

from pipeline.kafka.config import KafkaConfig, KafkaTopics, client_kwargs, consumer_kwargs, producer_kwargs
from pipeline.kafka.keys import KEY_ORDER, LineKey, line_key, partition_key

__all__ = [
    "KEY_ORDER",
    "KafkaConfig",
    "KafkaTopics",
    "LineKey",
    "client_kwargs",
    "consumer_kwargs",
    "line_key",
    "partition_key",
    "producer_kwargs",
]
