"""The real servers start and answer: a record round-trips the broker, a document the index."""

from __future__ import annotations

import uuid

from kafka import KafkaConsumer, KafkaProducer


def test_broker_round_trips_a_record(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    producer.send(topic, key=b"k", value=b"hello").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=20_000, check_crcs=True)
    values = []
    for msg in consumer:  # stop at the first record instead of waiting out the timeout
        values.append(msg.value)
        break
    consumer.close()
    assert values == [b"hello"]


def test_search_server_indexes_and_returns_a_document(osmem_clone) -> None:
    from osmem_server import _request  # the plugin's ``osmem_clone`` is an empty cluster per test

    _request("PUT", f"{osmem_clone.url}/smoke/_doc/1?refresh=true", {"a": 1})
    assert _request("GET", f"{osmem_clone.url}/smoke/_doc/1")["_source"] == {"a": 1}
