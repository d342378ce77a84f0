"""The behaviour alert, deciding and wording apart (issue 15, "Decide, then describe"): the
detector's batch keeps each flagged window's facts in a frozen ``Anomalous``;
``behaviour_finding`` words hand-built facts, exactly."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.anomaly import detector as anomaly_detector
from detectors.anomaly.detector import Anomalous, behaviour_finding
from detectors.anomaly.window import BehaviourWindow, EvidenceRecord
from detectors.base import Finding
from schemas.alerts import EvidenceItem
from schemas.events import EventKind, Request
from tests.anomaly.test_detector import DAY, config, routine, stolen
from tests.factories import MUNICH_OTHER_ISP, T0, event, run

START = T0.timestamp()


def _window(client: str | None = "portal", **counts: int) -> BehaviourWindow:
    """A closed window of token at-9: its first use from home, then a novelty from another ISP."""
    first = event("used", 0, token="at-9", family="fam-9", session="s-9", scopes=("orders:read",))
    novel = event("used", 420, token="at-9", family="fam-9", session="s-9", scopes=("orders:read",),
                  place=MUNICH_OTHER_ISP, user_agent="python-requests/2.31")
    novel = novel.model_copy(update={"request": Request(id="req-9", method="POST", resource="/files/1")})
    win = BehaviourWindow("at-9", START, START + 420, "alice", client, requests=30, **counts)
    win.evidence = [EvidenceRecord.of(first), EvidenceRecord.of(novel)]
    return win


def test_behaviour_finding_words_a_high_scoring_window_exactly() -> None:
    win = _window(agent_changes=2, network_switches=1)
    contributions = (("networks", 5.5), ("agents", 2.25), ("rate", 1.0), ("hour", 0.5), ("scopes", 0.1))
    found = Anomalous(win, 12.34567, 11.25, "20261124T0900-abcdef1234",
                      ("first use from Telefonica Germany (AS6805)", "user agent python-requests"), contributions)
    finding = behaviour_finding(found)
    assert finding.summary == (
        "Token behaved unlike its owner's baseline: first use from Telefonica Germany (AS6805); user agent "
        "python-requests (anomaly score 12.35, threshold 11.25; token at-9, subject alice, client portal)."
    )
    assert (finding.rule.id, finding.key, finding.family_id, finding.token_id) == (
        "anomaly.behaviour", "at-9", "fam-9", "at-9")
    assert (finding.severity, finding.risk_score) == ("high", 70)  # 0.1 or more over the threshold
    assert finding.details == {
        "score": 12.3457, "threshold": 11.25, "model_version": "20261124T0900-abcdef1234", "requests": 30,
        "window_start": "2026-11-24T09:00:00+00:00", "window_end": "2026-11-24T09:07:00+00:00",
        "contribution.networks": 5.5, "contribution.agents": 2.25, "contribution.rate": 1.0,
        "contribution.hour": 0.5, "agent_changes": 2, "network_switches": 1,
    }
    # The window's last record stands for it as the trigger; every record is evidence.
    last = win.evidence[-1]
    assert (finding.event.event_id, finding.event.kind, finding.event.epoch) == (last.event_id, EventKind.USED,
                                                                                 START + 420)
    assert finding.event.request == Request(id="req-9", method="POST", resource="/files/1")
    assert [item.event_id for item in finding.evidence] == [r.event_id for r in win.evidence]
    assert finding.evidence[-1] == EvidenceItem(
        event_id=last.event_id, kind="used", time=finding.event.time, source="test", token_id="at-9",
        ip="84.150.2.2", country="DE", city="Munich", asn=6805, as_org="Telefonica Germany",
        scopes=["orders:read"], client_id="portal", outcome="success", request_id="req-9",
        resource="POST /files/1",
    )


def test_behaviour_finding_words_a_window_just_over_the_threshold_without_a_client_exactly() -> None:
    found = Anomalous(_window(client=None), 11.3, 11.25, "v1", ("12 requests in 10 min",), (("rate", 0.04),))
    finding = behaviour_finding(found)
    assert finding.summary == (
        "Token behaved unlike its owner's baseline: 12 requests in 10 min (anomaly score 11.30, threshold 11.25; "
        "token at-9, subject alice)."
    )
    assert (finding.severity, finding.risk_score) == (None, None)  # the rule's own: medium, 50
    assert finding.details == {
        "score": 11.3, "threshold": 11.25, "model_version": "v1", "requests": 30,
        "window_start": "2026-11-24T09:00:00+00:00", "window_end": "2026-11-24T09:07:00+00:00",
        "contribution.rate": 0.04,
    }


def test_the_batch_decides_the_facts_it_words(trained: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stolen token's window, as ``_judge`` flagged it: its score over the model's
    threshold, the explainer's reasons, the contributions largest first."""
    model, path = trained
    decided: list[Anomalous] = []

    def words(found: Anomalous) -> Finding:
        decided.append(found)
        return behaviour_finding(found)

    monkeypatch.setattr(anomaly_detector, "behaviour_finding", words)
    alerts = run(routine() + stolen(8 * DAY), config(path))
    assert [found.window.token for found in decided] == ["at-stolen"]
    found = decided[0]
    assert found.score > found.threshold == model.threshold and found.model_version == model.version
    assert found.reasons and "; ".join(found.reasons) in alerts[0].alert.summary
    drops = [drop for _, drop in found.contributions]
    assert drops == sorted(drops, reverse=True)
