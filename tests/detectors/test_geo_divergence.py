"""Geo divergence: impossible travel and issue -> use divergence, attacks and benign twins.

Tokens here live a day (``expires_in`` keeps one expiry on every event) so
that multi-hour trips stay realistic for every other detector too.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from detectors import DETECTORS, build_detectors
from detectors.geo_divergence import GeoDivergenceDetector
from detectors.geo_divergence_state import SESSION_TRAIL
from detectors.state import StateStore
from schemas.events import CanonicalEvent
from tests.factories import (
    BERLIN_HOME,
    BERLIN_MOBILE,
    CORP_VPN_TOKYO,
    FRANKFURT_HOSTING,
    HAMBURG_SAME_ASN,
    MUNICH_OTHER_ISP,
    NEW_YORK_HOME,
    SINGAPORE_VPS,
    Place,
    event,
    rule_hits,
    run,
)

TRAVEL = "geo_divergence.impossible_travel"
DIVERGENCE = "geo_divergence.issue_use_divergence"
SCOPES = ("profile", "read")
EXPIRES = 86_400.0
MIN, HOUR = 60.0, 3_600.0

# Two points 612 km apart, geolocated only to country-database precision.
HAMBURG_COARSE = replace(HAMBURG_SAME_ASN, accuracy_km=300.0)
MUNICH_COARSE = replace(MUNICH_OTHER_ISP, asn=3320, as_org="Deutsche Telekom AG", accuracy_km=300.0)


def issued(t: float, place: Place | None = BERLIN_HOME, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    return event("issued", t, token=token, family="fam-1", scopes=SCOPES, place=place,
                 grant_type="authorization_code", expires_in=EXPIRES - t, **kw)


def used(t: float, place: Place | None, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    return event("used", t, token=token, family="fam-1", scopes=SCOPES, required=("read",), place=place,
                 expires_in=EXPIRES - t, **kw)


def refreshed(t: float, place: Place, token: str, parent: str, **kw: Any) -> CanonicalEvent:
    return event("refreshed", t, token=token, parent=parent, family="fam-1", scopes=SCOPES, place=place,
                 grant_type="refresh_token", expires_in=EXPIRES - t, **kw)


def by_rule(alerts: list[Any]) -> dict[str, Any]:
    return {a.rule.id: a for a in alerts}


# -- impossible travel ---------------------------------------------------------


def test_berlin_to_singapore_in_20_minutes() -> None:
    events = [issued(0), used(60, BERLIN_HOME), used(60 + 20 * MIN, SINGAPORE_VPS)]
    alerts = run(events)
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    travel = by_rule(alerts)[TRAVEL]
    assert travel.alert.severity == "high" and travel.alert.risk_score == 75
    assert travel.response.action == "revoke_token"
    assert [t.id for t in travel.threat.technique] == ["T1550.001", "T1078"]
    summary = travel.alert.summary
    for fact in ("at-1", "Berlin, DE (Deutsche Telekom AG, AS3320)", "9,924 km away",
                 "Singapore, SG (DigitalOcean, LLC, AS14061)", "20 min later", "km/h"):
        assert fact in summary, summary
    assert [e.event_id for e in travel.evidence] == [events[1].event_id, events[2].event_id]
    assert travel.details["distance_km"] == pytest.approx(9923.8)
    assert travel.details["elapsed_s"] == 1200
    # speed is taken over the distance less both accuracy radii (25 km each)
    assert travel.details["speed_kmh"] == pytest.approx((9923.8 - 50) * 3, abs=1)


def test_issue_to_first_use_counts_as_travel() -> None:
    alerts = run([issued(0), used(10 * MIN, NEW_YORK_HOME)])
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert by_rule(alerts)[TRAVEL].alert.summary.startswith("Impossible travel: token issued in Berlin, DE")


def test_same_instant_far_apart_is_infinite_speed() -> None:
    alerts = run([issued(0, place=None), used(60, BERLIN_HOME), used(60, NEW_YORK_HOME)])
    # two places in the same second is also the replay detector's concurrent use
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), ("replay.concurrent_use", "at-1")]
    travel = by_rule(alerts)[TRAVEL]
    assert "in the same second — impossible at any speed" in travel.alert.summary
    assert travel.details["speed_kmh"] is None and travel.details["elapsed_s"] == 0


def test_late_use_is_compared_with_its_successor() -> None:
    """A use delivered after a later use (past the allowed lateness) still pairs with it."""
    events = [issued(0, place=None), used(25 * MIN, BERLIN_HOME), used(5 * MIN, SINGAPORE_VPS)]
    alerts = run(events, allowed_lateness_s=0)
    assert rule_hits(alerts) == [(TRAVEL, "at-1")]
    summary = alerts[0].alert.summary
    assert summary.index("Singapore") < summary.index("Berlin")  # told in event-time order
    assert "20 min later" in summary


def test_session_travel_across_two_tokens() -> None:
    """The refresh token leaks; the thief redeems it in Singapore 20 minutes after
    the owner used the session's access token in Berlin."""
    events = [
        issued(0, token="rt-1", token_type="refresh", session="s-1"),
        issued(0, token="at-1", session="s-1"),
        used(60, BERLIN_HOME, token="at-1", session="s-1"),
        refreshed(60 + 20 * MIN, SINGAPORE_VPS, token="at-2", parent="rt-1", session="s-1"),
        used(61 + 20 * MIN, SINGAPORE_VPS, token="at-2", session="s-1"),
    ]
    alerts = run(events)
    assert rule_hits(alerts) == [(TRAVEL, "at-2")]
    summary = alerts[0].alert.summary
    assert summary.startswith("Impossible travel in one session: a token used in Berlin")
    assert "then a token issued by a refresh 9,924 km away in Singapore" in summary
    assert summary.endswith("(session s-1, tokens at-1 then at-2).")
    assert alerts[0].details["session_id"] == "s-1"


def test_session_keeps_interleaved_tokens_in_one_alert() -> None:
    events = [
        issued(0, token="at-1", session="s-1"),
        used(60, BERLIN_HOME, token="at-1", session="s-1"),
        used(20 * MIN, SINGAPORE_VPS, token="at-9", session="s-1"),
        used(21 * MIN, BERLIN_HOME, token="at-1", session="s-1"),
    ]
    alerts = run(events)
    travel = [a for a in alerts if a.rule.id == TRAVEL]
    assert len(travel) == 1 and travel[0].alert.count == 2  # folded on the session key


# -- issue -> use divergence ---------------------------------------------------


def test_issue_in_berlin_use_from_singapore_vps_is_high() -> None:
    alerts = run([issued(0), used(12 * HOUR, SINGAPORE_VPS)])  # 827 km/h: a plausible flight
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    alert = alerts[0]
    assert alert.alert.severity == "high" and alert.alert.risk_score == 70
    summary = alert.alert.summary
    for fact in ("Token used from another country and network than where it was issued: issued in Berlin, DE",
                 "used 12 h later from Singapore, SG (DigitalOcean, LLC, AS14061), a hosting/anonymising network",
                 "(token at-1)."):
        assert fact in summary, summary
    assert alert.details["use_hosting"] is True


def test_move_to_hosting_in_the_same_country_is_high() -> None:
    alerts = run([issued(0), used(5 * MIN, FRANKFURT_HOSTING)])  # 424 km: below minimum distance
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    assert alerts[0].alert.severity == "high"
    assert alerts[0].details["country_changed"] is False and alerts[0].details["network_changed"] is True


def test_country_change_without_hosting_is_medium() -> None:
    alerts = run([issued(0), used(10 * HOUR, NEW_YORK_HOME)])
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    assert alerts[0].alert.severity == "medium" and alerts[0].alert.risk_score == 45
    assert alerts[0].response.action == "none"


def test_isp_change_in_country_alerts_when_not_ignored() -> None:
    events = [issued(0), used(5 * HOUR, MUNICH_OTHER_ISP)]
    assert run(events) == []
    alerts = run(events, config={"geo_divergence": {"ignore_same_country_isp_change": False}})
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    assert alerts[0].alert.severity == "medium"


def test_hosting_toggle() -> None:
    events = [issued(0), used(5 * MIN, FRANKFURT_HOSTING)]
    assert run(events, config={"geo_divergence": {"alert_on_asn_change_to_hosting": False}}) == []


def test_repeated_uses_fold_into_one_alert() -> None:
    events = [issued(0), used(12 * HOUR, SINGAPORE_VPS), used(12 * HOUR + 10 * MIN, SINGAPORE_VPS)]
    alerts = run(events)
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    assert alerts[0].alert.count == 2
    assert [e.event_id for e in alerts[0].evidence] == [e.event_id for e in events]


@pytest.mark.parametrize("lateness", [900.0, 0.0], ids=["reordered-by-engine", "processed-late"])
def test_issue_arriving_after_the_use(lateness: float) -> None:
    """The IdP log lags the gateway: the issue is delivered after the use it precedes."""
    issue, use = issued(0), used(10 * MIN, SINGAPORE_VPS)
    alerts = run([use, issue], allowed_lateness_s=lateness)
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    divergence = by_rule(alerts)[DIVERGENCE]
    assert divergence.alert.severity == "high"
    assert {e.event_id for e in divergence.evidence} == {issue.event_id, use.event_id}
    assert "issued in Berlin, DE" in divergence.alert.summary


def test_late_issue_judges_every_recorded_use_once() -> None:
    events = [used(10 * HOUR, NEW_YORK_HOME), used(17 * HOUR, FRANKFURT_HOSTING), issued(0)]
    alerts = run(events, allowed_lateness_s=0, max_lead_s=86_400)  # the 7 h gap is not an outlier here
    assert rule_hits(alerts) == [(DIVERGENCE, "at-1")]
    alert = alerts[0]
    assert alert.alert.severity == "high" and alert.alert.count == 1
    # the hosting use is the one told, though the New York one came first
    assert alert.alert.summary == (
        "Token used from another network than where it was issued, in the same country (DE): issued on "
        "Deutsche Telekom AG (AS3320) in Berlin, used 17 h later from Hetzner Online GmbH (AS24940) in Frankfurt, "
        "a hosting/anonymising network (and 1 more such use) (token at-1)."
    )
    assert len(alert.evidence) == 3


def test_duplicate_delivery_counts_once() -> None:
    use = used(20 * MIN, SINGAPORE_VPS)
    alerts = run([issued(0), used(60, BERLIN_HOME), use, use])
    assert rule_hits(alerts) == [(TRAVEL, "at-1"), (DIVERGENCE, "at-1")]
    assert [a.alert.count for a in alerts] == [1, 1]


# -- benign twins --------------------------------------------------------------


def test_benign_nat_and_mobile_hops_in_one_asn() -> None:
    events = [issued(0), used(60, BERLIN_HOME), used(120, BERLIN_MOBILE), used(180, BERLIN_HOME)]
    assert run(events) == []


def test_benign_train_berlin_to_hamburg() -> None:
    events = [issued(0), used(60, BERLIN_HOME), used(3 * HOUR, HAMBURG_SAME_ASN)]
    assert run(events) == []


def test_benign_flight_berlin_to_new_york_is_not_impossible_travel() -> None:
    """640 km/h is a flight. The country change itself is still reported by the
    other rule; with country-change alerts turned off nothing fires at all."""
    events = [issued(0), used(60, BERLIN_HOME), used(10 * HOUR, NEW_YORK_HOME)]
    assert rule_hits(run(events)) == [(DIVERGENCE, "at-1")]
    assert run(events, config={"geo_divergence": {"alert_on_country_change": False}}) == []


def test_benign_flight_then_refresh_in_new_york() -> None:
    """The traveller refreshes on landing: a new token issued in New York, same session."""
    events = [
        issued(0, token="rt-1", token_type="refresh", session="s-1"),
        issued(0, token="at-1", session="s-1"),
        used(60, BERLIN_HOME, token="at-1", session="s-1"),
        refreshed(10 * HOUR, NEW_YORK_HOME, token="at-2", parent="rt-1", session="s-1"),
        used(10 * HOUR + 60, NEW_YORK_HOME, token="at-2", session="s-1"),
    ]
    assert run(events) == []


def test_benign_corporate_vpn_egress() -> None:
    events = [issued(0), used(60, BERLIN_HOME), used(5 * MIN, CORP_VPN_TOKYO), used(10 * MIN, BERLIN_HOME)]
    assert run(events) == []
    assert run([issued(0, place=CORP_VPN_TOKYO), used(5 * MIN, BERLIN_HOME)]) == []


def test_benign_same_use_delivered_twice() -> None:
    use = used(60, BERLIN_HOME)
    assert run([issued(0), use, use, used(120, BERLIN_HOME)]) == []


def test_benign_coarse_geolocation_within_accuracy() -> None:
    events = [issued(0, place=HAMBURG_COARSE), used(60, MUNICH_COARSE)]
    assert run(events) == []
    # the same 612 km with city-level accuracy is impossible in a minute
    precise = [issued(0, place=HAMBURG_SAME_ASN), used(60, replace(MUNICH_COARSE, accuracy_km=25.0))]
    assert rule_hits(run(precise)) == [(TRAVEL, "at-1")]


def test_benign_missing_accuracy_uses_the_configured_default() -> None:
    def no_accuracy(ev: CanonicalEvent) -> CanonicalEvent:
        geo = ev.network.geo.model_copy(update={"accuracy_km": None})  # type: ignore[union-attr]  # the factory place has a geo: a None fails the test just the same
        return ev.model_copy(update={"network": ev.network.model_copy(update={"geo": geo})})

    events = [no_accuracy(issued(0, place=HAMBURG_SAME_ASN)), no_accuracy(used(60, MUNICH_COARSE))]
    assert rule_hits(run(events)) == [(TRAVEL, "at-1")]
    assert run(events, config={"geo_divergence": {"default_accuracy_km": 300.0}}) == []


def test_benign_no_coordinates_and_failed_uses() -> None:
    assert run([issued(0), used(60, None)]) == []
    assert run([issued(0), used(60, BERLIN_HOME), used(120, SINGAPORE_VPS, success=False)]) == []


# -- state and wiring ----------------------------------------------------------


def test_session_locations_expire_after_the_travel_horizon() -> None:
    detector = GeoDivergenceDetector()
    state = StateStore()
    for ev in (issued(0, session="s-1"), used(60, BERLIN_HOME, session="s-1")):
        detector.process(ev, state)
        state.apply(ev)
    sessions = state.table("geo_divergence", "sessions", SESSION_TRAIL)
    trail = sessions.get("s-1")
    assert trail is not None
    assert [(p.token_id, p.city) for p in trail.points] == [("at-1", "Berlin"), ("at-1", "Berlin")]
    start = issued(0).time.timestamp()
    detector.expire(start + 19 * HOUR, state)
    assert "s-1" in sessions
    detector.expire(start + 21 * HOUR, state)
    assert len(sessions) == 0


def test_session_evidence_survives_the_token_state_being_forgotten() -> None:
    detector = GeoDivergenceDetector()
    state = StateStore()
    berlin = used(60, BERLIN_HOME, token="at-1", session="s-1")
    detector.process(berlin, state)
    state.apply(berlin)
    del state.tokens["at-1"]  # e.g. expired from lineage state
    findings = detector.process(used(20 * MIN, SINGAPORE_VPS, token="at-2", session="s-1"), state)
    assert [f.rule.id for f in findings] == [TRAVEL]
    first = findings[0].evidence[0]
    assert (first.event_id, first.city, first.asn, first.token_id) == (berlin.event_id, "Berlin", 3320, "at-1")
    assert "a token used in Berlin, DE (Deutsche Telekom AG, AS3320)" in findings[0].summary
    assert "(session s-1, tokens at-1 then at-2)" in findings[0].summary


def test_network_compares_by_as_name_when_the_asn_is_missing() -> None:
    def without_asn(ev: CanonicalEvent) -> CanonicalEvent:
        return ev.model_copy(update={"network": ev.network.model_copy(update={"asn": None})})

    assert run([issued(0), without_asn(used(60, BERLIN_MOBILE))]) == []
    assert rule_hits(run([issued(0), without_asn(used(5 * MIN, FRANKFURT_HOSTING))])) == [(DIVERGENCE, "at-1")]


def test_as_names_compare_whatever_their_case() -> None:
    """Okta writes AS names lower-cased ("digitalocean-asn"), GeoIP databases as registered:
    the same network spelt two ways is not a network change."""
    def spelt(ev: CanonicalEvent, name: str) -> CanonicalEvent:
        return ev.model_copy(update={"network": ev.network.model_copy(update={"asn": None, "as_org": name})})

    vps = used(0, FRANKFURT_HOSTING).network.as_org
    assert vps
    issued_on_vps = issued(0).model_copy(update={"network": used(0, FRANKFURT_HOSTING).network})
    assert run([spelt(issued_on_vps, vps.lower()), spelt(used(5 * MIN, FRANKFURT_HOSTING), vps.upper())]) == []
    # Another network still is one, however it is spelt.
    assert rule_hits(run([spelt(issued(0), "deutsche telekom ag"), spelt(used(5 * MIN, FRANKFURT_HOSTING), vps.upper())])) \
        == [(DIVERGENCE, "at-1")]


def test_session_history_is_bounded() -> None:
    detector = GeoDivergenceDetector(GeoDivergenceDetector.Config(session_history=2))
    state = StateStore()
    for i in range(5):
        ev = used(60 * i, BERLIN_HOME, session="s-1")
        detector.process(ev, state)
        state.apply(ev)
    trail = state.table("geo_divergence", "sessions", SESSION_TRAIL).get("s-1")
    assert trail is not None and len(trail.points) == 2


def test_registered_and_configured() -> None:
    assert DETECTORS["geo_divergence"] is GeoDivergenceDetector
    assert {r.id for r in GeoDivergenceDetector.rules} == {TRAVEL, DIVERGENCE}
    with pytest.raises(ValueError):
        build_detectors({"geo_divergence": {"max_speed_kmh": 0}})
    with pytest.raises(ValueError):
        build_detectors({"geo_divergence": {"max_sped_kmh": 900}})
    for name, field in GeoDivergenceDetector.Config.model_fields.items():
        assert field.description or name == "enabled"
