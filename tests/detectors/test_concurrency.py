"""Concurrent use needs concurrency (issue 14): two holders interleave or move where no
device goes; one device changing network one way is roaming. Each attack beside its
benign twin, through the whole engine (``run``), in any arrival order."""

from __future__ import annotations

import itertools

import orjson
import pytest

from detectors import DETECTORS
from detectors.concurrency import MAX_RUNS, TIMELINE, Match, by_time, network_place, place_of
from detectors.replay import ConcurrentUse, ReplayDetector, concurrent_use_finding
from detectors.state import Observation, StateStore
from schemas.events import CanonicalEvent
from tests.factories import BERLIN_HOME, SINGAPORE_VPS, Place, engine, event, rule_hits, run

ONLY_REPLAY = {name: {"enabled": False} for name in DETECTORS if name != "replay"}
HIT = [("replay.concurrent_use", "at-1")]
O2_BERLIN = Place("84.150.2.2", "DE", "Berlin", 52.52, 13.41, 6805, "Telefonica Germany")
VODAFONE_BERLIN = Place("88.70.14.20", "DE", "Berlin", 52.51, 13.40, 3209, "Vodafone GmbH")
MUNICH = Place("84.151.9.9", "DE", "Munich", 48.14, 11.58, 8881, "1&1 Versatel")
PARIS = Place("90.12.8.31", "FR", "Paris", 48.86, 2.35, 3215, "Orange")


def use(t: float, place: Place = BERLIN_HOME, **kw: object) -> CanonicalEvent:
    return event("used", t, token="at-1", session="s-1", expires_in=3_600 - t, place=place, **kw)  # type: ignore[arg-type]  # kw is typed object; callers pass event's own keywords


def issued() -> CanonicalEvent:
    return event("issued", 0, token="at-1", session="s-1", expires_in=3_600)


def net(ev: CanonicalEvent, **network: object) -> CanonicalEvent:
    return ev.model_copy(update={"network": ev.network.model_copy(update=network)})


def difference(events: list[CanonicalEvent], **engine_kw: object) -> list[str]:
    return [a.details["difference"] for a in run(events, ONLY_REPLAY, **engine_kw)]


# -- interleaving, in any arrival order --------------------------------------------------
@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_b_a_alerts_in_every_arrival_order(order: tuple[int, ...]) -> None:
    uses = [use(10), use(30, O2_BERLIN), use(50)]
    events = [issued(), *(uses[i] for i in order)]
    assert difference(events, allowed_lateness_s=0.0) == ["interleaved"]


def test_one_way_handover_in_one_city_is_roaming_and_counted() -> None:
    eng = engine(ONLY_REPLAY)
    alerts = [a for ev in (issued(), use(10), use(30, O2_BERLIN), use(40, O2_BERLIN)) for a in eng.submit(ev)]
    assert alerts + eng.flush() == []
    timeline = eng.state.table("replay", "timelines", TIMELINE).get("at-1")
    assert timeline is not None
    assert ([r.place for r in timeline.runs], timeline.handovers) == (["deutsche telekom ag", "telefonica germany"], 1)


def test_a_b_a_with_steps_longer_than_the_window_is_going_out_and_coming_back() -> None:
    assert run([issued(), use(10), use(30, O2_BERLIN), use(100, O2_BERLIN), use(170)], ONLY_REPLAY) == []


def test_a_thief_rotating_addresses_cannot_push_the_victims_use_out() -> None:
    thief = [use(20 + i, Place(f"84.150.3.{i}", "DE", "Berlin", 52.52, 13.41, 6805, "Telefonica Germany"))
             for i in range(12)]
    assert difference([issued(), use(10), *thief, use(50)]) == ["interleaved"]


# -- moves no device makes -------------------------------------------------------------------
@pytest.mark.parametrize(("place", "reason"), [(SINGAPORE_VPS, "anonymising"), (MUNICH, "travel"), (PARIS, "travel")])
def test_one_way_move_that_no_device_makes_alerts_at_once(place: Place, reason: str) -> None:
    assert difference([issued(), use(10), use(30, place)]) == [reason]


def test_reputation_listed_network_alerts_even_when_not_hosting() -> None:
    assert difference([issued(), use(10), net(use(30, O2_BERLIN), net_class="reputation")]) == ["anonymising"]


def test_three_networks_within_the_window_alert() -> None:
    assert difference([issued(), use(10), use(20, O2_BERLIN), use(30, VODAFONE_BERLIN)]) == ["networks"]


# -- egress classes -------------------------------------------------------------------------
def test_private_relay_egress_is_one_place_and_not_anonymising() -> None:
    akamai = net(use(30, SINGAPORE_VPS), net_class="relay", net_list="apple-private-relay")
    cloudflare = net(use(40, Place("104.28.1.1", "DE", "Berlin", 52.5, 13.4, 13335, "Cloudflare", hosting=True)),
                     net_class="relay", net_list="apple-private-relay")
    # Home -> relay, one way. (Where a relay address sits is geo_divergence's business.)
    assert run([issued(), use(10), akamai, cloudflare], ONLY_REPLAY) == []
    assert difference([issued(), use(10), akamai, use(50)]) == ["interleaved"]  # a thief behind the relay


def test_provider_infrastructure_acting_for_the_user_is_not_a_second_holder() -> None:
    graph = net(use(30, SINGAPORE_VPS), net_class="provider", net_list="microsoft")
    assert run([issued(), use(10), graph, use(50)], ONLY_REPLAY) == []


def test_allowlisted_vpn_is_one_side_of_a_pair() -> None:
    vpn = Place("3.121.200.7", "DE", "Frankfurt", 50.11, 8.68, 16509, "AMAZON-02", hosting=True, egress="corp-vpn")
    assert run([issued(), use(10), use(30, vpn), use(55, vpn)], ONLY_REPLAY) == []  # connecting the VPN
    assert difference([issued(), use(10, vpn), use(30, O2_BERLIN), use(50, vpn)]) == ["interleaved"]


# -- device drift -----------------------------------------------------------------------------
def test_device_drift_is_evidence_and_a_rule_only_with_a_network_change() -> None:
    firefox = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
    script = "python-requests/2.32.3"
    assert run([issued(), use(10, user_agent=firefox), use(30, user_agent=script)], ONLY_REPLAY) == []
    alerts = run([issued(), use(10, user_agent=firefox), use(30, O2_BERLIN, user_agent=script)], ONLY_REPLAY)
    assert rule_hits(alerts) == HIT
    assert (alerts[0].details["difference"], alerts[0].details["device_drift"]) == ("drift", "agent")
    assert "user agent Firefox on Windows then python-requests" in alerts[0].alert.summary
    # A browser update is no drift: roaming stays quiet.
    newer = firefox.replace("121.0", "122.0")
    assert run([issued(), use(10, user_agent=firefox), use(30, O2_BERLIN, user_agent=newer)], ONLY_REPLAY) == []


# -- bounded state that survives a checkpoint --------------------------------------------------
def test_timeline_is_bounded_expires_and_round_trips() -> None:
    eng = engine(ONLY_REPLAY)
    places = [BERLIN_HOME, O2_BERLIN] * 10
    for i, place in enumerate(places):
        eng.submit(use(10 + 10 * i, place))
    timelines = eng.state.table("replay", "timelines", TIMELINE)
    timeline = timelines.get("at-1")
    assert timeline is not None and len(timeline.runs) <= MAX_RUNS
    assert TIMELINE.decode(orjson.loads(orjson.dumps(TIMELINE.encode(timeline)))) == timeline
    eng.submit(event("used", 2_000, token="other", place=BERLIN_HOME))
    eng.flush()
    assert list(timelines) == []


@pytest.mark.parametrize("network", [
    {}, {"asn": None}, {"as_org": None}, {"asn": None, "as_org": None}, {"egress": "corp-vpn"},
    {"net_class": "relay"}, {"net_class": "in_flight"}, {"net_class": "provider"}, {"net_class": "reputation"},
    {"net_class": "relay", "egress": "corp-vpn"}, {"ip": None, "geo": None},
])
def test_a_use_is_placed_from_its_network_as_from_its_observation(network: dict[str, object]) -> None:
    """``judge_concurrent_use`` places a use from its network, building its observation only
    when there is something to judge: both must name the same place."""
    ev = net(use(10), **network)
    assert network_place(ev.network) == place_of(Observation(ev))


def test_tokens_that_never_change_network_get_no_timeline() -> None:
    store = StateStore()
    eng = engine(ONLY_REPLAY)
    eng.state = store
    for t in range(10, 300, 10):
        eng.submit(use(t))
    assert len(store.table("replay", "timelines", TIMELINE)) == 0


# -- deciding and wording apart (issue 15: decide, then describe) -------------------
def _judged(*events: CanonicalEvent) -> ConcurrentUse | None:
    """``judge_concurrent_use`` of the last event, after the others went through the detector as
    the engine sends them (``process``, then the lineage state applies the event)."""
    detector, state = ReplayDetector(), StateStore()
    *before, last = events
    for ev in before:
        detector.process(ev, state)
        state.apply(ev)
    token_state = state.tokens.get("at-1")
    assert token_state is not None
    return detector.judge_concurrent_use(last, token_state, state)


def test_judge_concurrent_use_returns_the_facts_of_a_b_a() -> None:
    first, other, again = use(10), use(30, O2_BERLIN), use(50)
    found = _judged(issued(), first, other, again)
    assert found is not None
    assert (found.event, found.token_state.token_id, found.handovers, found.window_s) == (again, "at-1", 1, 60.0)
    assert (found.match.reason, found.match.gap_s, found.match.drift, found.match.speed_kmh) == (
        "interleaved", 20.0, (), None)
    assert [use.event_id for use in found.match.uses] == [first.event_id, other.event_id, again.event_id]


def test_judge_concurrent_use_finds_nothing_in_the_benign_twins() -> None:
    """A, B, B in one city is one device roaming; A, B, A with steps longer than the window is
    going out and coming back; a token that never changed network is not even filed."""
    assert _judged(issued(), use(10), use(30, O2_BERLIN), use(40, O2_BERLIN)) is None
    assert _judged(issued(), use(10), use(30, O2_BERLIN), use(100, O2_BERLIN), use(170)) is None
    assert _judged(issued(), use(10), use(30)) is None


def test_concurrent_use_finding_words_a_hand_built_match_exactly() -> None:
    state = StateStore()
    state.apply(issued())
    token_state = state.tokens.get("at-1")
    assert token_state is not None
    first, other, again = use(10), use(30, SINGAPORE_VPS), use(50, user_agent="curl/8.5.0")
    uses = (Observation(first), Observation(other), Observation(again))
    match = Match("interleaved", uses, 20.0, ("agent",))
    finding = concurrent_use_finding(ConcurrentUse(again, token_state, match, 2, 60.0))
    assert finding.summary == (
        "Access token was accepted from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG), 20 s later from "
        "139.59.1.1 (Singapore, SG, DigitalOcean, LLC), and 20 s after that from the first network again; two "
        "holders take turns, one device changing network does not come back at once; the device changed too: "
        "user agent mozilla then curl (token at-1)."
    )
    assert (finding.rule.id, finding.event, finding.key, finding.family_id) == (HIT[0][0], again, "at-1", None)
    assert finding.evidence == tuple(obs.evidence("at-1") for obs in uses)
    assert finding.details == {"gap_s": 20.0, "difference": "interleaved", "device_drift": "agent",
                               "handovers_before": 2, "speed_kmh": None}


def test_evidence_of_equal_times_is_ordered_by_event_id_whatever_the_arrival_order() -> None:
    """The three-networks evidence comes from a set, whose order follows memory addresses:
    without the event-id tie-break the same stream worded its alert differently per run."""
    uses = [Observation(use(10, place)) for place in (BERLIN_HOME, VODAFONE_BERLIN, MUNICH)]
    uses.append(Observation(use(5, PARIS)))
    want = sorted(uses, key=lambda o: (o.time, o.event_id))
    assert want[0].time < want[1].time == want[3].time and len({o.event_id for o in want}) == 4
    for order in itertools.permutations(uses):
        assert by_time(order) == tuple(want) and by_time(set(order)) == tuple(want)
