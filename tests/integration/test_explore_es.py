"""pipeline.analyst.explore on Elasticsearch (osmem, flavour "opensearch"): the notebooks' alert and
event frames read from the cluster equal the frames read from the local store and files."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from pipeline.analyst import explore
from pipeline.cli.demo import DEMO_CONFIG
from pipeline.cli.main import SAMPLE_STREAM
from pipeline.config import load_settings
from pipeline.es.config import ElasticsearchConfig
from pipeline.sinks import ElasticsearchSink
from pipeline.store.base import open_store
from pipeline.store.config import StoreConfig
from tests.pipeline.test_explore import SAMPLE_ALERTS, pairs


def test_alert_and_event_frames_from_elasticsearch(osmem_clone: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWATCH_EVENTS", raising=False)
    es = {"hosts": [osmem_clone.url], "flavour": "opensearch", "retry_backoff_s": 0.01}
    local = load_settings(DEMO_CONFIG)  # the sample's corporate VPN is allowlisted there
    settings = local.model_copy(update={"store": StoreConfig(backend="elasticsearch"),
                                        "elasticsearch": ElasticsearchConfig(**es)})
    events = explore.read_events(explore.read_lines(SAMPLE_STREAM), local)
    alerts = explore.replay(events, {}, local)

    store = open_store(settings)
    store.put_alerts(alerts)
    store.close()
    sink = ElasticsearchSink(ElasticsearchConfig(**es))
    sink.start()
    for event in events:
        sink.add("event", event.event_id, event.model_dump(mode="json"))
    assert sink.flush().written == len(events)
    sink.close()

    from_es = explore.alerts_frame(settings)
    assert pairs(from_es) == SAMPLE_ALERTS
    pd.testing.assert_frame_equal(from_es.drop(columns=["status", "disposition"]),
                                  explore.alerts_frame_of(alerts).drop(columns=["status", "disposition"]),
                                  check_dtype=False)

    def by_id(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values("event_id").reset_index(drop=True)

    expected = by_id(explore.events_frame_of(events))
    got = by_id(explore.events_frame(settings=settings))
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
