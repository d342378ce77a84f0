"""The engine's per-event costs that issue 17 cut, pinned: each event id is hashed once,
closing alerts takes only the due ones (in the order they were opened), and enrichment
neither rebuilds a memoised network nor ``model_copy``s the event."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import pytest

from detectors.base import Detector, Finding, RuleMeta
from detectors.state import StateStore
from pipeline.ingest.enrich import Enricher
from pipeline.ingest.enrich_config import EnrichConfig
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import AlertingConfig, EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, Network
from tests.factories import T0, event

START = T0.timestamp()
RULE = RuleMeta(
    id="test.every_use", name="Every use", category="replay", severity="low", risk_score=10,
    techniques=(("T1550.001", "Use Alternate Authentication Material"),), response="none",
    description="test rule",
)


class EveryUse(Detector):
    """A finding per use, keyed by its token."""

    name: ClassVar[str] = "every_use"
    rules: ClassVar[tuple[RuleMeta, ...]] = (RULE,)

    def process(self, ev: CanonicalEvent, state: StateStore) -> list[Finding]:
        if ev.kind.value != "used" or ev.token is None:
            return []
        return [Finding(rule=RULE, event=ev, key=ev.token.id, summary="used", evidence=(EvidenceItem.of(ev),))]


# -- each event id hashed once ---------------------------------------------------------------
def test_each_event_id_is_hashed_once_in_order_reordered_held_and_flushed(monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    blake2b = hashlib.blake2b

    def counting(data: bytes, **kwargs: Any) -> Any:
        """Counts ``stable_hash`` by the digest it makes: ``stable_hash`` itself is bound in the
        compiled engine (``make compile``), where replacing the module's name changes nothing."""
        hashed.append(data.decode())
        return blake2b(data, **kwargs)

    monkeypatch.setattr(hashlib, "blake2b", counting)
    eng = Engine([EveryUse()], StateStore(), Alerter(), EngineConfig(allowed_lateness_s=100, max_lead_s=600))
    ids = []
    for t, eid in ((0, "in-order"), (20, "next"), (5, "reordered"), (30, "last"), (5_000, "held-ahead")):
        ids.append(eid)
        eng.submit(event("used", t, token="at-1", event_id=eid))
    eng.submit(event("used", 30, token="at-1", event_id="last"))  # a redelivery: hashed to find it
    eng.flush()
    assert sorted(hashed) == sorted([*ids, "last"])
    counters = eng.counters
    # "reordered" waits in the buffer, and what follows it for its token waits behind it
    assert (counters["reordered_events"], counters["held_events"], counters["duplicates"]) == (3, 1, 1)
    assert counters["findings.test.every_use"] == len(ids)  # every one judged


# -- alerts close by a heap, in the order they were opened ---------------------------------
def finding(t: float, token: str) -> Finding:
    ev = event("used", t, token=token)
    return Finding(rule=RULE, event=ev, key=token, summary="used", evidence=(EvidenceItem.of(ev),))


def test_close_ready_takes_only_alerts_whose_window_ended_and_follows_folds() -> None:
    alerter = Alerter(AlertingConfig(fold_window_s=100))
    alerter.add(finding(0, "at-a"))
    alerter.add(finding(10, "at-b"))
    alerter.add(finding(90, "at-a"))  # folds: at-a's window now ends at 190
    assert alerter.close_ready(START + 105) == []
    [closed] = alerter.close_ready(START + 150)
    assert (closed.token.id, closed.alert.count) == ("at-b", 1)
    [closed] = alerter.close_ready(START + 191)
    assert (closed.token.id, closed.alert.count) == ("at-a", 2)
    assert alerter.open_count == 0 and alerter.close_ready(START + 10_000) == []


def test_alerts_due_together_close_in_the_order_they_were_opened() -> None:
    """A later-opened alert may have an earlier last sighting (a late finding): the heap
    finds it first, the output keeps the order of opening all the same."""
    alerter = Alerter(AlertingConfig(fold_window_s=100))
    for t, token in ((50, "at-a"), (40, "at-b"), (10, "at-c"), (60, "at-d")):
        alerter.add(finding(t, token))
    assert [a.token.id for a in alerter.close_ready(START + 1_000)] == ["at-a", "at-b", "at-c", "at-d"]


def test_an_alert_started_anew_under_the_same_key_closes_once() -> None:
    alerter = Alerter(AlertingConfig(fold_window_s=100))
    alerter.add(finding(0, "at-a"))
    [first] = alerter.add(finding(500, "at-a"))  # too far: the first closes, a new one opens
    assert first.alert.last_seen.timestamp() == START
    assert alerter.close_ready(START + 550) == []  # the first one's heap entry is not the open one
    [second] = alerter.close_ready(START + 601)
    assert second.alert.first_seen.timestamp() == START + 500


# -- enrichment: keyed on the network object, no model_copy ---------------------------------
@pytest.fixture
def enricher() -> Enricher:
    return Enricher(EnrichConfig())


def test_a_memoised_network_is_enriched_once_and_the_event_not_model_copied(
    enricher: Enricher, monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = Network(ip="79.200.1.10", user_agent="Mozilla/5.0")
    first = event("used", 0, token="at-1", place=None).model_copy(update={"network": shared})
    second = event("used", 1, token="at-2", place=None).model_copy(update={"network": shared})
    expected = first.model_copy(update={"network": enricher(first).network})
    by_content = enricher._networks  # noqa: SLF001 -- the content path files every network it enriches here
    by_content.clear()  # (a method patched on the compiled class would go unseen by its own calls)

    def no_copy(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the event was model_copy'd")

    monkeypatch.setattr(CanonicalEvent, "model_copy", no_copy)
    enriched, again = enricher(first), enricher(second)
    assert by_content == {}  # both found by the network object's identity, not by content
    assert enriched == expected and enriched.model_dump() == expected.model_dump()
    assert enriched.epoch == first.epoch and enriched.model_fields_set == expected.model_fields_set
    assert again.network is enriched.network and again.event_id == second.event_id
    assert first.network is shared  # the original is untouched


def test_a_new_network_object_is_enriched_by_its_content(enricher: Enricher) -> None:
    one = event("used", 0, token="at-1", place=None).model_copy(
        update={"network": Network(ip="79.200.1.10", user_agent="a")})
    other = event("used", 0, token="at-1", place=None).model_copy(
        update={"network": Network(ip="139.59.1.1", user_agent="a")})
    same = event("used", 0, token="at-1", place=None).model_copy(
        update={"network": Network(ip="79.200.1.10", user_agent="a")})
    a, b, c = enricher(one), enricher(other), enricher(same)
    assert (a.network.as_org, b.network.as_org) == ("Deutsche Telekom AG", "DIGITALOCEAN-ASN")
    assert c.network is a.network  # the same content: the whole-network cache's answer
