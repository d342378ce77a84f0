"""A document a sink refuses for itself becomes a dead letter elsewhere, never nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.service.checkpoint import flush_sinks
from pipeline.sinks.base import FlushResult, MemorySink, Rejected


@dataclass
class RefusingSink(MemorySink):
    """Accepts everything except the document ids in ``refuse`` (like a mapping conflict)."""

    refuse: set[str] = field(default_factory=set)

    def flush(self) -> FlushResult:
        refused = tuple(
            Rejected(kind, doc_id, doc, "mapper_parsing_exception: failed to parse [source.ip]", 400)
            for (kind, doc_id), doc in self._buffer.items() if doc_id in self.refuse
        )
        for item in refused:
            del self._buffer[(item.doc_kind, item.doc_id)]
        result = super().flush()
        return FlushResult(result.written, refused)


def _alert(alert_id: str) -> dict[str, Any]:
    return {"alert": {"id": alert_id}, "source": {"ip": "not-an-ip"}}


def test_refused_alert_is_dead_lettered_in_the_other_sink_within_the_same_flush() -> None:
    es = RefusingSink(name="elasticsearch", refuse={"a-bad"})
    kafka = MemorySink(name="kafka")
    for sink in (es, kafka):
        sink.add("alert", "a-good", _alert("a-good"))
        sink.add("alert", "a-bad", _alert("a-bad"))
    flush_sinks([es, kafka])
    assert set(es.documents) == {("alert", "a-good")}
    assert kafka.pending == 0
    dead = kafka.documents[("dead_letter", "rejected-elasticsearch-alert-a-bad")]
    assert dead["reason"] == ("elasticsearch refused alert a-bad: "
                              "mapper_parsing_exception: failed to parse [source.ip]")
    assert dead["rejected"] == {"kind": "alert", "id": "a-bad", "status": 400}
    assert dead["raw"] == _alert("a-bad")
    assert ("alert", "a-bad") in kafka.documents  # the other sink still has the alert itself


def test_a_sink_refusing_the_dead_letter_too_hands_it_on_without_looping() -> None:
    es = RefusingSink(name="elasticsearch", refuse={"a-bad"})
    kafka = RefusingSink(name="kafka", refuse={"rejected-elasticsearch-alert-a-bad"})
    es.add("alert", "a-bad", _alert("a-bad"))
    flush_sinks([es, kafka])
    # kafka refused the dead letter: it comes back to elasticsearch as a dead letter of a dead letter.
    assert ("dead_letter", "rejected-kafka-dead_letter-rejected-elasticsearch-alert-a-bad") in es.documents
    assert es.pending == 0 and kafka.pending == 0
