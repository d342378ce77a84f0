"""End to end: a stolen token's behaviour raises exactly one explained alert; its benign
twin raises none; retraining swaps the model without interrupting detection."""

from __future__ import annotations

import threading
from datetime import timedelta

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from pipeline.model.retrain import retrain_once, start_retraining
from schemas.events import Request
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, event, rule_hits, run
from tests.wording_style import faults

DAY = 86_400.0
ROUTINE = ["/orders", "/orders/1", "/invoices", "/calendar"]


def use(t: float, token: str, path: str, place=BERLIN_HOME, ua: str = "Mozilla/5.0 Firefox/120.0"):
    ev = event("used", t, token=token, place=place, user_agent=ua, scopes=("orders:read",),
               required=("orders:read",), expires_in=None)
    return ev.model_copy(update={"request": Request(id=f"{token}-{t}", method="GET", resource=path)})


def routine(days: int = 8) -> list:
    """alice: every working day at 09:00 and 14:00 UTC, 6 requests from home to her usual pages."""
    out = []
    for d in range(days):
        for hour in (0, 5):  # factories' T0 is 09:00 UTC
            token = f"at-{d}-{hour}"
            t0 = d * DAY + hour * 3600
            out.append(event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=12 * 3600))
            out += [use(t0 + 60 * k, token, ROUTINE[k % 4]) for k in range(6)]
    return out


def stolen(t0: float) -> list:
    token = "at-stolen"
    head = [event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=24 * 3600),
            use(t0, token, "/orders")]
    night = t0 + 18 * 3600  # 03:00 UTC: another German ISP, a script, 30 pages in 8 minutes
    return head + [use(night + 16 * k, token, f"/files{k % 15}/x", place=MUNICH_OTHER_ISP, ua="python-requests/2.31")
                   for k in range(30)]


def benign_twin(t0: float) -> list:
    token = "at-stolen"
    head = [event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=24 * 3600),
            use(t0, token, "/orders")]
    return head + [use(t0 + 5 * 3600 + 60 * k, token, ROUTINE[k % 4]) for k in range(6)]


def config(path) -> dict:
    return {"anomaly": {"model_path": str(path)}}


def test_stolen_token_raises_one_explained_alert(trained) -> None:
    _, path = trained
    alerts = run(routine() + stolen(8 * DAY), config(path))
    assert rule_hits(alerts) == [("anomaly.behaviour", "at-stolen")]
    alert = alerts[0]
    summary = alert.alert.summary
    assert alert.rule.category == "anomaly" and "at-stolen" in summary
    assert summary.startswith("Token behaved unlike its owner's baseline: ") and faults(summary) == []
    assert "first use from Telefonica Germany (AS6805)" in summary or "python-requests" in summary or \
        "distinct resources" in summary
    assert alert.details["model_version"] and alert.evidence
    assert "Bearer" not in alert.model_dump_json()


def test_benign_twin_raises_nothing(trained) -> None:
    _, path = trained
    assert run(routine() + benign_twin(8 * DAY), config(path)) == []


def test_no_model_configured_means_no_anomaly_alert() -> None:
    assert run(routine() + stolen(8 * DAY)) == []


def test_retraining_swaps_the_model_without_interrupting_detection(trained, tmp_path) -> None:
    model, _ = trained
    path = tmp_path / "live.skops"
    detector = AnomalyDetector(AnomalyConfig(model_path=path, min_training_windows=10), collect=True)
    assert detector.model is None and detector.counters["model_errors"] == 1  # no file yet
    from detectors.state import StateStore
    from pipeline.runtime.alerting import Alerter
    from pipeline.runtime.config import EngineConfig
    from pipeline.runtime.engine import Engine

    engine = Engine([detector], StateStore(), Alerter(), EngineConfig(max_lead_s=86_400))
    events = routine(days=12)
    half = len(events) * 2 // 3
    for ev in events[:half]:
        engine.submit(ev)
    swapped: list = []
    worker = threading.Thread(target=lambda: swapped.append(retrain_once([detector])))
    worker.start()  # detection goes on while the model trains
    for ev in events[half:half + 10]:
        engine.submit(ev)
    worker.join()
    assert swapped[0] is not None and detector.model is swapped[0] and path.is_file()
    assert detector.counters["model_swaps"] == 1
    for ev in events[half + 10:]:
        engine.submit(ev)
    engine.flush()
    assert detector.counters["windows_scored"] > 0
    assert AnomalyDetector(AnomalyConfig(model_path=path)).model is not None  # the written file loads
    # the scheduler wiring: a job that runs retrain_once on an interval
    scheduler = start_retraining([detector], AnomalyConfig(model_path=path, retrain_every_s=3600))
    try:
        job = scheduler.get_job("anomaly-retrain")
        assert job is not None and job.trigger.interval == timedelta(hours=1)
    finally:
        scheduler.shutdown(wait=False)
