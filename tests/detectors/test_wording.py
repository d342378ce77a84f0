"""One style for every alert summary (issue 16, "Wording"): the shared wording helpers in
``detectors.describe``, then the house style checked over every rule's summaries — the demo
world, the sample file and the vendor format samples through ``detect``, and the wording of
each rule's branches built from the per-rule tests' events. ``anomaly.behaviour`` needs a
trained model: tests/anomaly/test_detector.py runs the same check over its summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors import DETECTORS, describe
from detectors.concurrency import Match
from detectors.post_revocation_use import AFTER_DISABLE, AFTER_REVOCATION, LateUse, late_use_finding
from detectors.replay import ConcurrentUse, concurrent_use_finding
from detectors.revocation_policy import Revocation
from detectors.scope_escalation import Overreach, Widening, overreach_finding, widening_finding
from detectors.state import Observation, StateStore
from pipeline.cli.demo import demo_settings, detect
from pipeline.synthetic.world import WorldSpec, generate
from schemas.events import CanonicalEvent
from tests.detect_helpers import detect_lines
from tests.detectors import test_replay as replay
from tests.factories import (
    BERLIN_HOME,
    BERLIN_MOBILE,
    FRANKFURT_HOSTING,
    NEW_YORK_HOME,
    SINGAPORE_VPS,
    Place,
    event,
    run,
)
from tests.wording_style import as_name_spellings, compact_durations, faults

ROOT = Path(__file__).resolve().parents[2]
ANOMALY = "anomaly.behaviour"  # checked in tests/anomaly/test_detector.py (needs a trained model)
OKTA_DO = Place("159.89.7.26", "DE", "Munich", 48.14, 11.58, 14061, "digitalocean-asn", hosting=True)
FRA_DO = Place("159.89.3.215", "DE", "Frankfurt", 50.11, 8.68, 14061, "DIGITALOCEAN-ASN", hosting=True)


# -- the helpers ---------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "words"), [
    (0.2, "under 1 s"), (1, "1 s"), (45, "45 s"), (119, "119 s"), (150, "2 min 30 s"), (900, "15 min"),
    (909, "15 min 9 s"), (1538, "25 min 38 s"), (7200, "2 h"), (9000, "2 h 30 min"), (-60, "60 s"),
    (3 * 86_400 + 4 * 3_600, "3 d 4 h"), (364 * 86_400, "364 d"),
])
def test_one_compact_duration_style(seconds: float, words: str) -> None:
    assert describe.duration(seconds) == words


@pytest.mark.parametrize(("given", "canonical"), [
    ("DIGITALOCEAN-ASN", "DIGITALOCEAN-ASN"),  # a registry handle, as published
    ("digitalocean-asn", "DIGITALOCEAN-ASN"),  # the same handle as Okta's asOrg folds it
    ("Deutsche Telekom AG", "Deutsche Telekom AG"),
    ("deutsche telekom ag", "Deutsche Telekom AG"),
    ("starhub ltd", "Starhub Ltd"),
    ("vodafone  gmbh", "Vodafone GmbH"),
    ("digitalocean, llc", "Digitalocean, LLC"),
    ("DigitalOcean, LLC", "DigitalOcean, LLC"),
])
def test_an_as_name_reads_the_same_whichever_source_spelled_it(given: str, canonical: str) -> None:
    assert describe.as_name(given) == canonical
    assert describe.as_name(None, 14061) == "AS14061" and describe.as_name("", None) is None
    assert describe.network("starhub ltd", 4657) == "Starhub Ltd (AS4657)"


def test_counts_agree_with_their_nouns() -> None:
    assert [describe.counted(n, "network") for n in (0, 1, 2)] == ["0 networks", "1 network", "2 networks"]
    assert describe.counted(2, "country", "countries") == "2 countries"
    assert describe.named("scope", ["write"]) == "scope write"
    assert describe.named("scope", ["write", "admin"]) == "scopes admin write"
    assert [describe.listing(x) for x in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a and b", "a, b and c"]


@pytest.mark.parametrize(("summary", "fault"), [
    ("Refresh token redeemed again 25 minutes 38 seconds after it was rotated.", "a duration not in the compact style"),
    ("Token at-1 was issued in DE (Vodafone GmbH) but used from DE (DIGITALOCEAN-ASN), 3 min later.",
     "issued in DE and used from the same DE"),
    ("Privileged scope(s) admin were issued.", '"(s)"'),
    ("Refresh token redeemed again", "no full stop"),
    ("Refresh token 521b71f2-ff99-427a-9597-1deaba67b44d of family f was redeemed again.", "an id"),
    ("Session 102Apd9cX1aPXUsEeo7CCGhWb: token was used.", "an id"),
])
def test_the_style_check_catches_what_issue_16_found(summary: str, fault: str) -> None:
    """The check fails on the summaries of before: it is not vacuous."""
    assert any(found.startswith(fault) for found in faults(summary)), faults(summary)


# -- every rule's summaries ------------------------------------------------------------------

def _variants() -> list[tuple[str, str]]:
    """(rule id, summary) of the branches a world rarely shows: each way a rule words its facts."""
    hits = []
    for events in (
        [*replay.login(), replay.refresh(60, "rt-2"), replay.refresh(70, "rt-2x", place=SINGAPORE_VPS)],
        [*replay.login(), replay.refresh(60, "rt-2"), replay.refresh(600, "rt-none", place=OKTA_DO, success=False)],
        [replay.reported(500, place=OKTA_DO)],
        [*replay.login(bound=replay.KEY_A), replay.use(10)],
        [*replay.login(bound=replay.KEY_A), replay.use(10, proof=replay.KEY_B)],
        [replay.pod_token(0, replay.NODE_IP, "issued"), replay.pod_token(10, replay.POD_IP),
         replay.pod_token(30, replay.OTHER_IP)],
        [*replay.login(), replay.use(10, request_id="r-1"), replay.use(40, request_id="r-1", place=FRA_DO)],
        [event("issued", 0, token="at-1", session="s-1", expires_in=86_400),
         event("used", 12 * 3_600, token="at-1", session="s-1", expires_in=3_600, place=SINGAPORE_VPS)],
        [event("issued", 0, token="at-1", session="s-1", expires_in=86_400),
         event("used", 10 * 60, token="at-1", session="s-1", expires_in=3_600, place=NEW_YORK_HOME)],
        [event("used", 10 * 3_600, token="at-1", expires_in=86_400, place=NEW_YORK_HOME),
         event("used", 17 * 3_600, token="at-1", expires_in=86_400, place=FRANKFURT_HOSTING),
         event("issued", 0, token="at-1", expires_in=86_400)],
    ):
        hits += [(a.rule.id, a.alert.summary) for a in run(events, allowed_lateness_s=0, max_lead_s=86_400)]
    return hits + _hand_built()


def _hand_built() -> list[tuple[str, str]]:
    """The pure wording functions over hand-built facts: every concurrency reason, every
    revocation kind, both widenings and both overreaches."""
    state = StateStore()
    state.apply(event("issued", 0, token="at-1", session="s-1", expires_in=3_600))
    token_state = state.tokens.get("at-1")
    assert token_state is not None

    def used(t: float, place: Place = BERLIN_HOME, **kw: object) -> CanonicalEvent:
        return event("used", t, token="at-1", session="s-1", scopes=("read",), place=place, **kw)  # type: ignore[arg-type]  # kw is typed object; callers pass event's own keywords

    a, b, c = used(10), used(30, SINGAPORE_VPS), used(50, user_agent="curl/8.5.0")
    obs = (Observation(a), Observation(b), Observation(c))
    matches = [Match("interleaved", obs, 20.0, ("agent",)), Match("networks", obs, 20.0),
               Match("travel", obs[:2], 20.0, speed_kmh=1.7e6), Match("country", obs[:2], 20.0),
               Match("anonymising", obs[:2], 20.0), Match("drift", obs[:2], 20.0, ("agent",))]
    found = [concurrent_use_finding(ConcurrentUse(c, token_state, match, 0, 60.0)) for match in matches]
    late = used(700, BERLIN_MOBILE)
    for what in ("token", "family", "session", "logout", "subject", "disabled"):
        rule = AFTER_DISABLE if what == "disabled" else AFTER_REVOCATION
        revoked = Revocation(what, "alice" if what in ("subject", "disabled") else "s-1", Observation(a))
        found.append(late_use_finding(LateUse(rule, late, token_state, revoked, 690.0, 60.0)))
    minted = event("refreshed", 100, token="rt-2", token_type="refresh", parent="rt-1", scopes=("read", "admin"),
                   audience=("api", "billing"))
    found += [widening_finding(Widening(minted, None, "fam-1", False, ("admin",), frozenset({"read"}), (), frozenset())),
              widening_finding(Widening(minted, None, None, True, (), frozenset(), ("billing",), frozenset({"api"}))),
              overreach_finding(Overreach(used(10, required=("write",)), None, ("write",), None)),
              overreach_finding(Overreach(used(10), None, ("write", "admin"), frozenset({"read"})))]
    return [(f.rule.id, f.summary) for f in found]


@pytest.fixture(scope="module")
def summaries(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str]]:
    """(rule id, summary) of every alert the demo world, the sample file, the vendor format
    samples (with every detector on, those that ship off too) and the rule variants raise."""
    out = tmp_path_factory.mktemp("demo")
    alerts, _ = detect(demo_settings(out), out, generate(WorldSpec(users=40, seed=11, hours=8)), False)
    every_detector_on = {"detectors": {name: {"enabled": True} for name in DETECTORS}}  # a new rule ships off
    for path in [ROOT / "pipeline" / "data" / "sample.jsonl", *sorted((ROOT / "tests" / "data" / "formats").glob("*.jsonl"))]:
        alerts += detect_lines([*path.read_bytes().splitlines()], every_detector_on).alerts
    return [(a["rule"]["id"], a["alert"]["summary"]) for a in alerts] + _variants()


def test_every_rule_that_ships_on_is_worded_here(summaries: list[tuple[str, str]]) -> None:
    """A rule that ships off checks its summaries in its own test (README "Add a detector")."""
    rules = {rule.id for cls in DETECTORS.values() for rule in cls.rules}
    shipped_on = {rule.id for cls in DETECTORS.values() if cls.Config().enabled for rule in cls.rules}
    assert shipped_on - {ANOMALY} <= {rule for rule, _ in summaries} <= rules - {ANOMALY}


def test_every_summary_keeps_the_house_style(summaries: list[tuple[str, str]]) -> None:
    broken = [(rule, summary, faults(summary)) for rule, summary in summaries if faults(summary)]
    assert broken == []
    assert any(compact_durations(summary) for _, summary in summaries)  # durations were checked


def test_an_as_name_is_spelled_one_way_in_every_summary(summaries: list[tuple[str, str]]) -> None:
    """Okta folds AS names to lower case, the ASN database does not: both read as the registry's."""
    names = ["DIGITALOCEAN-ASN", "Deutsche Telekom AG", "Vodafone GmbH", "Starhub Ltd", "Hetzner Online GmbH",
             "Stiftung Erneuerbare Freiheit", "DigitalOcean, LLC"]
    spellings = as_name_spellings((summary for _, summary in summaries), names)
    assert spellings["digitalocean-asn"] == {"DIGITALOCEAN-ASN"}  # seen from Okta and from enrichment
    assert {key: found for key, found in spellings.items() if len(found) > 1} == {}


def test_a_same_country_divergence_names_the_networks_not_the_country_twice(
    summaries: list[tuple[str, str]],
) -> None:
    divergences = [summary for rule, summary in summaries if rule == "geo_divergence.issue_use_divergence"]
    same_country = [s for s in divergences if "in the same country" in s]
    assert same_country and all(" on " in s and "issued in" not in s for s in same_country)
    assert any(s.startswith("Token used from another country") for s in divergences)
