"""Learning period: a subject first seen less than ``learning_period_s`` ago raises no anomaly
alert (its windows are scored and learned); past it, the same behaviour alerts. A new client
has none: a token of an app the subject never used stays judged (consent phishing)."""

from __future__ import annotations

from typing import Any

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from schemas.alerts import Alert
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, engine, event, rule_hits

DAY = 86_400.0
ROUTINE = ["/orders", "/orders/1", "/invoices", "/calendar"]


def use(t: float, token: str, path: str, subject: str, place=BERLIN_HOME, ua: str = "Mozilla/5.0 Firefox/120.0",
        client: str = "portal") -> Any:
    ev = event("used", t, token=token, place=place, user_agent=ua, scopes=("orders:read",), subject=subject,
               required=("orders:read",), expires_in=None, client=client)
    return ev.model_copy(update={"request": ev.request.model_copy(update={"id": f"{token}-{t}", "resource": path})})


def routine(subject: str, first_day: int, last_day: int = 8) -> list:
    """Working days ``first_day``..``last_day - 1`` at 09:00 and 14:00 UTC: 6 requests from home."""
    out = []
    for d in range(first_day, last_day):
        for hour in (0, 5):  # factories' T0 is 09:00 UTC
            token = f"at-{subject}-{d}-{hour}"
            t0 = d * DAY + hour * 3600
            out.append(event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=12 * 3600,
                             subject=subject))
            out += [use(t0 + 60 * k, token, ROUTINE[k % 4], subject) for k in range(6)]
    return out


def stolen(subject: str, t0: float, client: str = "portal") -> list:
    """03:00 UTC: another German ISP, a script, 30 pages in 8 minutes."""
    token = f"at-stolen-{subject}"
    head = [event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=24 * 3600, subject=subject,
                  client=client)]
    return head + [use(t0 + 16 * k, token, f"/files{k % 15}/x", subject, place=MUNICH_OTHER_ISP,
                       ua="python-requests/2.31", client=client) for k in range(30)]


def detect(events: list, path, **anomaly: Any) -> tuple[list[Alert], AnomalyDetector]:
    eng = engine({"anomaly": {"model_path": str(path), **anomaly}})
    detector = next(d for d in eng.detectors if isinstance(d, AnomalyDetector))
    alerts: list[Alert] = []
    for ev in sorted(events, key=lambda e: e.epoch):
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    return alerts, detector


NIGHT = 8 * DAY + 18 * 3600  # day 9, 03:00 UTC


def stream() -> list:
    """alice seen since day 0, bob since day 6 (six routine windows, under three days before the
    theft): both past min_profile_windows, only alice past the week."""
    return routine("alice", 0, 9) + routine("bob", 6, 9) + stolen("alice", NIGHT) + stolen("bob", NIGHT)


def test_default_learning_period_is_a_week() -> None:
    assert AnomalyConfig().learning_period_s == 7 * DAY


def test_a_subject_inside_its_learning_period_raises_no_alert(trained) -> None:
    _, path = trained
    alerts, detector = detect(stream(), path)
    assert rule_hits(alerts) == [("anomaly.behaviour", "at-stolen-alice")]
    assert detector.counters["windows_in_learning_period"] == 1  # bob's stolen window: flagged, not alerted


def test_past_its_learning_period_the_same_subject_alerts(trained) -> None:
    _, path = trained
    alerts, detector = detect(stream(), path, learning_period_s=2 * DAY)
    assert rule_hits(alerts) == [("anomaly.behaviour", "at-stolen-alice"), ("anomaly.behaviour", "at-stolen-bob")]
    assert detector.counters["windows_in_learning_period"] == 0


def test_a_new_client_has_no_learning_period(trained) -> None:
    _, path = trained
    alerts, _ = detect(routine("alice", 0, 9) + stolen("alice", NIGHT, client="consent-app"), path)
    assert rule_hits(alerts) == [("anomaly.behaviour", "at-stolen-alice")]
