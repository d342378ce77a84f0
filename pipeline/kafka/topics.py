"""Create tokenwatch's topics when they are missing (admin client).

Start-up and ``produce --create-topics`` call this; an existing topic is left
as it is (its partition count is reported, never changed: adding partitions
to a keyed topic moves keys, so that is an operator's decision). Measured
against the Tansu broker used in tests: CreateTopics works as in Kafka
(error 36 TOPIC_ALREADY_EXISTS for an existing name, partitions visible to
producers right after the response), so no workaround is needed there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kafka.admin import KafkaAdminClient
from kafka.errors import TopicAlreadyExistsError, for_code

from pipeline.kafka.config import KafkaConfig, client_kwargs


@dataclass(frozen=True)
class TopicStatus:
    name: str
    created: bool
    partitions: int | None


def planned_topics(
    config: KafkaConfig,
    partitions: int,
    revocation_partitions: int = 1,
    changelog_stores: Iterable[str] = (),
    revocation_retention_s: float | None = None,
) -> dict[str, dict[str, object]]:
    """Topic name -> CreateTopics options. The revocations topic defaults to one
    partition: every instance reads all of it, and one partition keeps revocations
    in order; it keeps records as long as the state keeps revocations
    (``revocation_retention_s``), since a restarted instance rebuilds its global
    revocation view from it. Changelogs are compacted and have the input's partition count
    (changelog partition N holds the state of input partition N)."""
    topics: dict[str, dict[str, object]] = {}
    for name in (*config.topics.input, config.topics.dead_letter, config.topics.alerts):
        topics[name] = {"num_partitions": partitions}
    topics[config.topics.revocations] = {"num_partitions": revocation_partitions}
    if revocation_retention_s is not None:
        topics[config.topics.revocations]["configs"] = {"retention.ms": str(int(revocation_retention_s * 1000))}
    for store in changelog_stores:
        topics[config.topics.changelog(store)] = {
            "num_partitions": partitions,
            "configs": {"cleanup.policy": "compact"},
        }
    return topics


def _admin(config: KafkaConfig) -> KafkaAdminClient:
    """An admin client that gives up on an unreachable cluster after ``request_timeout_ms``
    (the first call a command makes, so a wrong bootstrap address fails in that time)."""
    return KafkaAdminClient(**client_kwargs(config), bootstrap_timeout_ms=config.request_timeout_ms)


def existing_topics(config: KafkaConfig) -> set[str]:
    """The topic names the cluster has (a metadata request that never creates one)."""
    admin = _admin(config)
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def ensure_topics(
    config: KafkaConfig,
    partitions: int = 3,
    *,
    revocation_partitions: int = 1,
    changelog_stores: Iterable[str] = (),
    revocation_retention_s: float | None = None,
    replication_factor: int = -1,
    timeout_ms: int = 30_000,
) -> dict[str, TopicStatus]:
    """Create the input, dead-letter, alerts and revocations topics (and changelogs) if missing.

    ``replication_factor=-1`` takes the broker's default. "Already exists" is
    success; any other per-topic error raises.
    """
    plan = planned_topics(config, partitions, revocation_partitions, changelog_stores, revocation_retention_s)
    admin = _admin(config)
    try:
        existing = set(admin.list_topics())
        missing = {
            name: {**options, "replication_factor": replication_factor}
            for name, options in plan.items()
            if name not in existing
        }
        created: set[str] = set()
        if missing:
            response = admin.create_topics(missing, timeout_ms=timeout_ms, raise_errors=False)
            for result in response["topics"]:
                code = result["error_code"]
                if code == 0:
                    created.add(result["name"])
                elif code != TopicAlreadyExistsError.errno:  # a concurrent instance won the race
                    error = for_code(code)
                    raise error(f"creating topic {result['name']}: {result.get('error_message') or error.message}")
        described = admin.describe_topics(list(plan))
        counts = {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}
    finally:
        admin.close()
    return {name: TopicStatus(name, name in created, counts.get(name)) for name in plan}
