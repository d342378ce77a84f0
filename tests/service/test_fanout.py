"""One fan-out hands each document to every sink; the service builds its sinks by name."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.service.config import ServiceConfig
from pipeline.sinks import ElasticsearchSink, Fanout, MemorySink, build_sinks
from pipeline.sinks.background import BackgroundSink

DEAD = {"reason": "r", "format": "f", "origin": "in:0:1", "ingested_at": "2026-11-24T09:00:00Z"}


def test_a_document_reaches_every_sink_and_the_original_only_a_dead_letter() -> None:
    alerts_only = MemorySink(name="alerts", kinds=frozenset({"alert", "dead_letter"}))
    everything = MemorySink(name="all")
    fanout = Fanout([alerts_only, everything])
    assert fanout.add("dead_letter", "in-0-1", DEAD, b"original") == 2
    assert fanout.add("event", "e1", {"n": 1}) == 2
    fanout.add("alert", "a1", {"alert": {"id": "a1"}}, b"ignored")
    assert (alerts_only.pending, everything.pending, fanout.pending) == (2, 3, 5)
    for sink in fanout:
        sink.flush()
        assert sink.originals == {("dead_letter", "in-0-1"): b"original"}
    assert set(alerts_only.documents) == {("dead_letter", "in-0-1"), ("alert", "a1")}
    assert ("event", "e1") in everything.documents


def test_keeps_without_and_where_select_sinks() -> None:
    early = MemorySink(name="early", kinds=frozenset({"alert"}))
    late = BackgroundSink(MemorySink(name="late"))
    fanout = Fanout([early, late])
    assert fanout.keeps("event") and not Fanout([early]).keeps("event")
    assert list(fanout.without(early)) == [late]
    assert list(fanout.where(flush_early=True)) == [early] and list(fanout.where(flush_early=False)) == [late]
    assert Fanout.of(fanout) is fanout and len(Fanout.of([early])) == 1
    assert Fanout().add("alert", "a", {}) == 0  # nowhere to go: the caller is told


def test_the_service_builds_the_sinks_its_settings_name_in_order() -> None:
    sinks = build_sinks(("memory", "elasticsearch"), Settings())
    first, second = sinks
    assert isinstance(first, MemorySink)
    assert isinstance(second, BackgroundSink) and isinstance(second.inner, ElasticsearchSink)  # off the loop
    second.close()
    assert ServiceConfig().sinks == ("kafka", "elasticsearch")


@pytest.mark.parametrize(("names", "message"), [
    (("kafka", "elastic"), "unknown sink 'elastic': choose from elasticsearch, kafka, memory"),
    (("kafka", "kafka"), "a sink is named twice"),
    ((), "at least 1 item"),
])
def test_sink_names_are_checked_at_start(names: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ServiceConfig(sinks=names)
