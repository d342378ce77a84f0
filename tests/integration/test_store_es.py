"""ElasticsearchStore against osmem (OpenSearch-compatible, flavour "opensearch"): the shared store
contract, the sink rewriting alerts without losing analyst decisions, and the analyst CLI on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import main
from pipeline.config import Settings
from pipeline.es.config import ElasticsearchConfig
from pipeline.sinks import ElasticsearchSink
from pipeline.store import base as store_base
from pipeline.store.base import open_store
from pipeline.store.elasticsearch import ElasticsearchStore
from tests.cli_args import with_actor
from tests.store.contract import Clock, StoreContract
from tests.store.helpers import T0, action, alert_doc


def es_config(url: str) -> ElasticsearchConfig:
    return ElasticsearchConfig(hosts=[url], flavour="opensearch", retry_backoff_s=0.01)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(osmem_clone: Any, clock: Clock) -> Iterator[ElasticsearchStore]:
    s = ElasticsearchStore(es_config(osmem_clone.url), clock=clock)
    yield s
    s.close()


class TestElasticsearchContract(StoreContract):
    pass


def test_documents_land_in_the_alert_and_action_families(store: ElasticsearchStore) -> None:
    store.put_alerts([alert_doc("a1", 0)])
    store.put_action(action("a1", "fam-1"))
    hit = store.client.get(index="tokenwatch-alerts-2026.11.24", id="a1")
    assert hit["_source"]["alert"]["status"] == "open"
    assert "triage" not in hit["_source"]
    found = store.client.search(index="tokenwatch-actions-*", query={"term": {"action.state": "pending"}})
    assert [h["_id"] for h in found["hits"]["hits"]] == [action("a1", "fam-1").id]
    assert found["hits"]["hits"][0]["_index"] == "tokenwatch-actions-2026.11.24"


def test_sink_rewrites_keep_analyst_decisions(store: ElasticsearchStore, osmem_clone: Any) -> None:
    """The service's sink indexes whole alert documents on every fold; triage lives apart and survives."""
    store.put_alerts([alert_doc("a1", 0)])
    store.set_status("a1", "closed", "bob", disposition="benign", note="lab traffic")
    mirrored = store.client.get(index="tokenwatch-alerts-2026.11.24", id="a1")["_source"]
    assert mirrored["alert"]["status"] == "closed"  # mirrored for dashboards
    assert mirrored["kibana"]["alert"]["workflow_status"] == "closed"  # and for Security -> Alerts
    sink = ElasticsearchSink(es_config(osmem_clone.url))
    sink.start()
    sink.add("alert", "a1", alert_doc("a1", 0, count=5))
    assert sink.flush().written == 1
    sink.close()
    store.client.indices.refresh(index="tokenwatch-alerts-*")
    doc = store.get_alert("a1")
    assert doc is not None
    assert (doc["alert"]["count"], doc["alert"]["status"], doc["triage"]["disposition"]) == (5, "closed", "benign")
    assert [a["alert"]["id"] for a in store.list_alerts(status="closed")] == ["a1"]
    assert store.list_alerts(status="open") == []


def test_open_store_picks_elasticsearch(osmem_clone: Any) -> None:
    settings = Settings(store={"backend": "elasticsearch"},
                        elasticsearch={"hosts": [osmem_clone.url], "flavour": "opensearch"})
    store = open_store(settings)
    assert isinstance(store, ElasticsearchStore)
    store.set_flag("breaker", "tripped")
    other = open_store(settings)  # as another process would
    assert other.get_flag("breaker") == "tripped"
    other.close()
    store.close()


def test_analyst_cli_on_elasticsearch(
    osmem_clone: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    now = T0 + timedelta(days=1)
    monkeypatch.setattr(store_base, "utcnow", lambda: now)
    monkeypatch.delenv("COLUMNS", raising=False)
    config = tmp_path / "tokenwatch.toml"
    config.write_text(
        f'[store]\nbackend = "elasticsearch"\n\n[elasticsearch]\nhosts = ["{osmem_clone.url}"]\n'
        'flavour = "opensearch"\n', encoding="utf-8")
    batch = tmp_path / "alerts.jsonl"
    batch.write_text("".join(json.dumps(alert_doc(i, m)) + "\n" for i, m in (("tw-a1", 0), ("tw-a2", 10))))

    def tw(*argv: str) -> int:
        return main(with_actor([*argv, "--config", str(config)], "alice"))

    assert tw("alerts", "import", "--input", str(batch)) == 0
    assert tw("alerts", "ack", "tw-a1", "--note", "on it") == 0
    assert tw("alerts", "suppress", "--user", "mallory", "--for", "1h", "--reason", "red team") == 0
    capsys.readouterr()
    assert tw("alerts", "list") == 0
    assert capsys.readouterr().out.splitlines() == [
        "ID     TIME                  SEVERITY  STATUS        RULE                  USER   COUNT  SUMMARY",
        "tw-a2  2026-11-24 10:10:00Z  high      open          replay.refresh_reuse  alice  1      Token at-tw-a2 misused by alice.",
        "tw-a1  2026-11-24 10:00:00Z  high      acknowledged  replay.refresh_reuse  alice  1      Token at-tw-a1 misused by alice.",
    ]
    assert tw("alerts", "show", "tw-a1") == 0
    shown = capsys.readouterr().out
    assert "Note:        2026-11-25 10:00:00Z alice: on it" in shown
    assert shown.endswith("2026-11-25 10:00:00Z  alice  alert.ack  -       acknowledged  on it\n")
    assert tw("alerts", "show", "tw-nope") == 2
    assert capsys.readouterr().err == "tokenwatch: no alert with id 'tw-nope' in the store\n"
    assert tw("alerts", "close", "--where", "--rule", "replay", "--status", "open", "--disposition", "benign") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "dry run: nothing changed; add --yes to close 1 alerts"
    assert tw("alerts", "close", "--where", "--rule", "replay", "--status", "open", "--disposition", "benign",
              "--link", "https://tickets.example/SOC-7", "--yes") == 0
    assert capsys.readouterr().out.splitlines()[-1] == "close: 1 alerts by alice"
    assert tw("alerts", "ack", "tw-a2") == 2
    assert "is closed" in capsys.readouterr().err
    store = ElasticsearchStore(es_config(osmem_clone.url))
    assert [e.verb for e in store.audit_trail()] == [
        "alerts.import", "alert.ack", "alert.suppress", "alert.close", "alert.bulk"]
    [closed] = store.audit_trail(alert_id="tw-a2")[-1:]
    assert (closed.actor, closed.details["link"]) == ("alice", "https://tickets.example/SOC-7")
    assert store.get_alert("tw-a2")["triage"]["links"][0]["url"] == "https://tickets.example/SOC-7"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
    assert [s.user_id for s in store.active_suppressions(now)] == ["mallory"]
    store.close()
