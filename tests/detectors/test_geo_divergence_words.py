"""Geo divergence, deciding and wording apart (issue 15, "Decide, then describe"): the
detector's checks return frozen facts (``ImpossibleTravel``, ``DivergentUse`` with its
``Divergence`` verdict); ``travel_finding``, ``travel_summary``, ``divergence_finding`` and
``divergence_summary`` word hand-built facts, exactly, the configured speed passed in."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from detectors.geo_divergence import (
    IMPOSSIBLE_TRAVEL,
    ISSUE_USE_DIVERGENCE,
    Divergence,
    DivergentUse,
    GeoDivergenceDetector,
    ImpossibleTravel,
    Travel,
    divergence_finding,
    divergence_summary,
    travel_finding,
    travel_summary,
)
from detectors.geo_divergence_state import SessionPoint
from detectors.state import Observation, StateStore
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent
from tests.factories import (
    BERLIN_HOME,
    FRANKFURT_HOSTING,
    MUNICH_OTHER_ISP,
    NEW_YORK_HOME,
    SINGAPORE_VPS,
    T0,
    Place,
    event,
)

MIN, HOUR = 60.0, 3_600.0
BERLIN_TO_SINGAPORE = Travel(9923.8, 9873.8, 20 * MIN, 29_621.7)


def issued(t: float, place: Place = BERLIN_HOME, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    return event("issued", t, token=token, family="fam-1", place=place, expires_in=86_400.0 - t, **kw)


def used(t: float, place: Place, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    return event("used", t, token=token, family="fam-1", place=place, expires_in=86_400.0 - t, **kw)


# -- impossible travel -------------------------------------------------------------------
def test_token_travel_is_worded_exactly_with_the_earlier_event_first() -> None:
    before, trigger = used(60, BERLIN_HOME), used(60 + 20 * MIN, SINGAPORE_VPS)
    facts = ImpossibleTravel(trigger, Observation(before), "at-1", BERLIN_TO_SINGAPORE, "fam-1", None)
    assert travel_summary(facts, 1000.0) == (
        "Impossible travel: token used in Berlin, DE (Deutsche Telekom AG, AS3320), then used 9,924 km away in "
        "Singapore, SG (DigitalOcean, LLC, AS14061) 20 min later — at least 29,622 km/h against a plausible "
        "1,000 km/h (token at-1)."
    )
    finding = travel_finding(facts, 1000.0)
    assert finding.summary == travel_summary(facts, 1000.0)
    assert (finding.rule, finding.event, finding.key, finding.family_id) == (IMPOSSIBLE_TRAVEL, trigger, "at-1",
                                                                             "fam-1")
    assert finding.evidence == (Observation(before).evidence("at-1"), EvidenceItem.of(trigger))
    assert finding.details == {
        "distance_km": 9923.8, "effective_distance_km": 9873.8, "elapsed_s": 1200.0, "speed_kmh": 29621.7,
        "max_speed_kmh": 1000.0, "other_event_id": before.event_id, "other_token_id": "at-1", "scope": "token",
    }
    # The neighbour came later in event time (out-of-order arrival): the trigger leads.
    later = used(60 + 20 * MIN, BERLIN_HOME)
    early = used(60, SINGAPORE_VPS)
    reversed_facts = ImpossibleTravel(early, Observation(later), "at-1", BERLIN_TO_SINGAPORE, None, None)
    assert travel_summary(reversed_facts, 800.0) == (
        "Impossible travel: token used in Singapore, SG (DigitalOcean, LLC, AS14061), then used 9,924 km away in "
        "Berlin, DE (Deutsche Telekom AG, AS3320) 20 min later — at least 29,622 km/h against a plausible "
        "800 km/h (token at-1)."
    )
    reversed_finding = travel_finding(reversed_facts, 800.0)
    assert reversed_finding.evidence == (EvidenceItem.of(early), Observation(later).evidence("at-1"))
    assert reversed_finding.details["max_speed_kmh"] == 800.0


def test_travel_in_no_time_at_all_is_impossible_at_any_speed() -> None:
    here, there = issued(0), used(0, SINGAPORE_VPS)
    facts = ImpossibleTravel(there, Observation(here), "at-1", Travel(9923.8, 9873.8, 0.0, float("inf")), None, None)
    assert travel_summary(facts, 1000.0) == (
        "Impossible travel: token issued in Berlin, DE (Deutsche Telekom AG, AS3320), then used 9,924 km away in "
        "Singapore, SG (DigitalOcean, LLC, AS14061) in the same second — impossible at any speed (token at-1)."
    )
    assert travel_finding(facts, 1000.0).details["speed_kmh"] is None


def test_session_travel_is_worded_exactly_from_a_remembered_point() -> None:
    start = T0.timestamp()
    point = SessionPoint(start + 60, 52.52, 13.405, 25.0, "at-0", "ev-berlin", "issued", "idp", "DE", "Berlin",
                         3320, "Deutsche Telekom AG", "79.200.1.10")
    trigger = used(60 + 20 * MIN, SINGAPORE_VPS, session="s-1")
    facts = ImpossibleTravel(trigger, point, "at-0", BERLIN_TO_SINGAPORE, None, "s-1")
    assert travel_summary(facts, 1000.0) == (
        "Impossible travel in one session: a token issued in Berlin, DE (Deutsche Telekom AG, AS3320), then a "
        "token used 9,924 km away in Singapore, SG (DigitalOcean, LLC, AS14061) 20 min later — at least 29,622 "
        "km/h against a plausible 1,000 km/h (session s-1, tokens at-0 then at-1)."
    )
    finding = travel_finding(facts, 1000.0)
    assert (finding.key, finding.family_id) == ("s-1", None)
    assert finding.evidence == (
        EvidenceItem(event_id="ev-berlin", kind="issued", time=datetime.fromtimestamp(start + 60, tz=timezone.utc),
                     source="idp", token_id="at-0", ip="79.200.1.10", country="DE", city="Berlin", asn=3320,
                     as_org="Deutsche Telekom AG"),
        EvidenceItem.of(trigger),
    )
    assert (finding.details["scope"], finding.details["session_id"], finding.details["other_token_id"]) == (
        "session", "s-1", "at-0")
    same_token = ImpossibleTravel(trigger, Observation(issued(60)), "at-1", BERLIN_TO_SINGAPORE, None, "s-1")
    assert travel_summary(same_token, 1000.0).endswith("(session s-1, token at-1).")


# -- issue -> use divergence -------------------------------------------------------------
def test_a_country_change_to_hosting_is_worded_exactly() -> None:
    issue, use = issued(0), used(20 * MIN, SINGAPORE_VPS)
    facts = DivergentUse(use, "at-1", "fam-1", Observation(issue), Observation(use), Divergence(True, True, True),
                         "tor-exits")
    assert divergence_summary(facts) == (
        "Token used from another country and network than where it was issued: issued in Berlin, DE (Deutsche "
        "Telekom AG, AS3320), used 20 min later from Singapore, SG (DigitalOcean, LLC, AS14061), a "
        "hosting/anonymising network on the list tor-exits (token at-1)."
    )
    finding = divergence_finding(facts)
    assert finding.summary == divergence_summary(facts)
    assert (finding.rule, finding.event, finding.key, finding.family_id) == (ISSUE_USE_DIVERGENCE, use, "at-1",
                                                                             "fam-1")
    assert (finding.severity, finding.risk_score) == ("high", 70)
    assert finding.evidence == (Observation(issue).evidence("at-1"), EvidenceItem.of(use))
    assert finding.details == {
        "issue_country": "DE", "use_country": "SG", "issue_network": "Deutsche Telekom AG",
        "use_network": "DigitalOcean, LLC", "country_changed": True, "network_changed": True, "use_hosting": True,
        "use_net_list": "tor-exits", "issue_event_id": issue.event_id, "use_event_id": use.event_id,
    }


def test_a_network_change_within_one_country_is_worded_exactly() -> None:
    issue, use = issued(0), used(17 * HOUR, MUNICH_OTHER_ISP)
    facts = DivergentUse(use, "at-1", None, Observation(issue), Observation(use), Divergence(False, True, False), None)
    assert divergence_summary(facts) == (
        "Token used from another network than where it was issued, in the same country (DE): issued on Deutsche "
        "Telekom AG (AS3320) in Berlin, used 17 h later from Telefonica Germany (AS6805) in Munich (token at-1)."
    )
    finding = divergence_finding(facts)
    assert (finding.severity, finding.risk_score, finding.family_id) == ("medium", 45, None)
    assert (finding.details["country_changed"], finding.details["use_hosting"]) == (False, False)


def test_a_late_issue_is_worded_once_for_every_use_it_judges() -> None:
    first, second = used(10 * HOUR, MUNICH_OTHER_ISP), used(17 * HOUR, FRANKFURT_HOSTING)
    issue = issued(0)
    judged = (Observation(first), Observation(second))
    facts = DivergentUse(issue, "at-1", "fam-1", Observation(issue), judged[1], Divergence(False, True, True), None,
                         judged)
    assert divergence_summary(facts) == (
        "Token used from another network than where it was issued, in the same country (DE): issued on Deutsche "
        "Telekom AG (AS3320) in Berlin, used 17 h later from Hetzner Online GmbH (AS24940) in Frankfurt, a "
        "hosting/anonymising network (and 1 more such use) (token at-1)."
    )
    finding = divergence_finding(facts)
    assert finding.evidence == (EvidenceItem.of(issue), judged[0].evidence("at-1"), judged[1].evidence("at-1"))
    assert (finding.event, finding.details["use_event_id"], finding.details["use_net_list"]) == (
        issue, second.event_id, None)


# -- deciding: what the detector raises is the wording of these facts ------------------------
def _processed(*events: CanonicalEvent) -> tuple[GeoDivergenceDetector, StateStore]:
    detector, state = GeoDivergenceDetector(), StateStore()
    for ev in events:
        detector.process(ev, state)
        state.apply(ev)
    return detector, state


def test_a_use_is_judged_into_a_divergence_verdict() -> None:
    issue, use = issued(0), used(17 * HOUR, FRANKFURT_HOSTING)
    detector, state = _processed(issue)
    token_state = state.tokens.get("at-1")
    assert token_state is not None and token_state.issue is not None
    expected = DivergentUse(use, "at-1", "fam-1", token_state.issue, Observation(use), Divergence(False, True, True),
                            None)
    assert detector.process(use, state) == [divergence_finding(expected)]


def test_a_late_issue_judges_the_uses_before_it_hosting_first() -> None:
    """Another country (New York), then a hosting network (Frankfurt): one finding, led by the hosting use."""
    first, second, issue = used(10 * HOUR, NEW_YORK_HOME), used(17 * HOUR, FRANKFURT_HOSTING), issued(0)
    detector, state = _processed(first, second)
    token_state = state.tokens.get("at-1")
    assert token_state is not None
    judged = tuple(token_state.accepted)
    expected = DivergentUse(issue, "at-1", "fam-1", Observation(issue), judged[1], Divergence(False, True, True), None,
                            judged)
    assert detector.process(issue, state) == [divergence_finding(expected)]
