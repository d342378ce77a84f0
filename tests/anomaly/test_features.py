"""Feature extraction is exact on small hand-built streams."""

from __future__ import annotations

import math

import pytest

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.features import FEATURES, INDEX, active_hours, hour_rarity, resource_key
from detectors.state import StateStore
from schemas.events import Request
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, SINGAPORE_VPS, event


def use(t: float, token: str, path: str, place=BERLIN_HOME, ua: str = "Mozilla/5.0", success: bool = True,
        required: tuple[str, ...] = ()):
    ev = event("used", t, token=token, place=place, user_agent=ua, success=success, required=required,
               scopes=("orders:read", "mail:read"), expires_in=86_400)
    return ev.model_copy(update={"request": Request(id=f"r{t}", method="GET", resource=path)})


def collect(events, window_s: float = 600.0) -> tuple[AnomalyDetector, StateStore, list]:
    det = AnomalyDetector(AnomalyConfig(window_s=window_s, min_profile_windows=1), collect=True)
    state = StateStore()
    rows: list = []
    for ev in events:  # as the engine does: expire (closes windows) before the event
        det.expire(ev.epoch, state)
        det.process(ev, state)
        state.apply(ev)
    det.finish(state)
    return det, state, rows


def test_resource_key_folds_ids_and_queries() -> None:
    assert resource_key("GET", "/orders/42?x=1") == "GET /orders/{id}"
    assert resource_key(None, "/files/3f2a9c1e-77aa-4b1c-9d3e-001122334455") == "GET /files/{id}"
    assert resource_key("GET", None) is None


def test_first_window_only_teaches_the_profile_then_the_second_is_measured_against_it() -> None:
    first = [use(0, "t1", "/orders/1"), use(60, "t1", "/orders/2"), use(120, "t1", "/invoices")]
    # second token, next hour: 4 requests, one new resource, one new network + agent, one failure
    second = [
        use(3600, "t2", "/orders/3"),
        use(3660, "t2", "/mail/7", required=("mail:read",)),
        use(3720, "t2", "/orders/4", place=MUNICH_OTHER_ISP, ua="curl/8"),
        use(3780, "t2", "/invoices", success=False),
    ]
    det, state, _ = collect(first + second)
    rows, times, _ = det.baseline()
    assert len(rows) == 1  # the first window had no profile to compare with
    x = dict(zip(FEATURES, rows[0].tolist(), strict=True))
    assert x["requests"] == pytest.approx(math.log1p(4))
    assert x["rate_ratio"] == pytest.approx(math.log2(5 / 4))  # usual 3 requests per window
    assert x["distinct_resources"] == pytest.approx(math.log1p(3))  # orders/{id}, mail/{id}, invoices
    assert x["resource_ratio"] == pytest.approx(math.log2(4 / 3))  # client's usual 2 distinct
    assert x["new_resource_share"] == pytest.approx(0.25)
    assert x["new_client_resource_share"] == pytest.approx(0.25)
    assert x["distinct_ips"] == 2 and x["distinct_networks"] == 2 and x["distinct_countries"] == 1
    assert x["distinct_user_agents"] == 2
    assert x["new_ip_share"] == pytest.approx(0.25)
    assert x["new_network_share"] == pytest.approx(0.25)
    assert x["new_user_agent_share"] == pytest.approx(0.25)
    assert x["new_country_share"] == 0.0
    assert x["hosting_share"] == 0.0
    assert x["failure_ratio"] == pytest.approx(0.25)
    assert x["scope_breadth"] == 1.0
    assert x["new_scope_share"] == pytest.approx(0.25)
    assert times[0] == second[-1].epoch


def test_window_closes_after_window_s_and_a_later_use_opens_the_next() -> None:
    events = [use(0, "t1", "/a"), use(100, "t1", "/a"), use(700, "t1", "/a"), use(760, "t1", "/a")]
    det, state, _ = collect(events, window_s=600)
    rows, _, _ = det.baseline()
    assert len(rows) == 1  # two windows: the first learned, the second measured
    assert rows[0][INDEX["requests"]] == pytest.approx(math.log1p(2))
    assert det.counters["windows_learning"] == 1


def test_hosting_share_and_new_country() -> None:
    events = [use(0, "t1", "/a"), use(3600, "t2", "/a", place=SINGAPORE_VPS), use(3601, "t2", "/a")]
    det, _, _ = collect(events)
    x = dict(zip(FEATURES, det.baseline()[0][0].tolist(), strict=True))
    assert x["hosting_share"] == pytest.approx(0.5) and x["new_country_share"] == pytest.approx(0.5)
    assert x["distinct_countries"] == 2


def test_hour_profile() -> None:
    hours = [0.0] * 24
    for h in range(8, 18):
        hours[h] = 10.0
    assert active_hours(hours) == (8, 18)
    assert hour_rarity(hours, 12) == 0.0
    assert hour_rarity(hours, 3) == pytest.approx(1 - (1.5 / 112) / (3 / 24))
    assert hour_rarity([0.0] * 24, 3) == 0.0  # no history: no verdict


def test_inactive_without_model_path_keeps_nothing() -> None:
    det = AnomalyDetector(AnomalyConfig())
    state = StateStore()
    assert det.process(use(0, "t1", "/a"), state) == [] and state.tables == {}
    assert det.expire(10_000, state) is None and det.finish(state) == [] and state.tables == {}
