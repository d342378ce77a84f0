"""Use history that failures cannot flush: a thief who brackets each stolen, accepted
request with rejected ones (404s from its own addresses) must still be caught using the
token from two networks at once, and a flood of made-up tokens that only fail must not
grow the state. Each attack runs with the trick and without it: the same alerts (rule
ids, token ids, counts). The benign twin — one holder, many failures from its own
network — raises nothing."""

from __future__ import annotations

import secrets

import pytest

from detectors import build_detectors
from detectors.state import StateLimits, StateStore
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from tests.factories import BERLIN_HOME, BERLIN_MOBILE, Place, event, rule_hits, run

CONCURRENT = "replay.concurrent_use"
SESSION = dict(family="fam-1", session="s-1", scopes=("openid", "read"))
STOLEN_AT = (105.0, 255.0, 405.0)  # the thief's accepted requests; the victim's are at 10, 40, 70, …
# Findings: each stolen request (a victim's use 35 s before it), and each of the victim's
# next two uses (25 s and 55 s after it), folded into one alert.
FINDINGS = 3 * len(STOLEN_AT)


def thief(i: int) -> Place:
    """One of the thief's addresses: another ISP than the victim's (AS6805, not AS3320), close
    enough to Berlin that only concurrent use, not travel, can tell the two holders apart."""
    return Place(f"84.150.{i // 250}.{i % 250 + 1}", "DE", "Munich", 48.14, 11.58, 6805, "Telefonica Germany")


def rejected(t: float, i: int) -> CanonicalEvent:
    return event("used", t, token="at-1", place=thief(i), success=False, status=404, expires_in=3_600 - t, **SESSION)


def victim_and_thief() -> list[CanonicalEvent]:
    """The victim logs in and uses its token every 30 s from home; the thief's accepted
    requests come from another network."""
    events = [event("issued", 0, token="at-1", expires_in=3_600, grant_type="authorization_code", **SESSION)]
    events += [event("used", t, token="at-1", expires_in=3_600 - t, **SESSION) for t in range(10, 600, 30)]
    events += [event("used", t, token="at-1", place=thief(0), expires_in=3_600 - t, **SESSION) for t in STOLEN_AT]
    return events


def bracketed(events: list[CanonicalEvent], bracket: int) -> list[CanonicalEvent]:
    """The trick: each stolen request between ``bracket`` rejected requests before and
    ``bracket`` after, within 5 s, each from another of the thief's addresses; in time
    order, as a gateway writes them."""
    noise: list[CanonicalEvent] = []
    for stolen in STOLEN_AT:
        for k in range(bracket):
            noise.append(rejected(stolen - 5 + 5 * k / bracket, len(noise) + 1))
            noise.append(rejected(stolen + 5 * (k + 1) / bracket, len(noise) + 1))
    return sorted([*events, *noise], key=lambda ev: ev.time)


def outcome(alerts: list[Alert]) -> list[tuple[str, str | None, int]]:
    return sorted((a.rule.id, a.token.id, a.alert.count) for a in alerts)


@pytest.mark.parametrize("bracket", [4, 50])
def test_rejected_requests_around_stolen_ones_do_not_hide_concurrent_use(bracket: int) -> None:
    attack = victim_and_thief()
    plain = run(sorted(attack, key=lambda ev: ev.time))
    flooded = run(bracketed(attack, bracket))
    assert outcome(plain) == [(CONCURRENT, "at-1", FINDINGS)]
    assert outcome(flooded) == outcome(plain)
    assert rule_hits(flooded) == [(CONCURRENT, "at-1")]
    assert [e.event_id for e in flooded[0].evidence] == [e.event_id for e in plain[0].evidence]


def test_the_trick_also_fails_when_the_thief_goes_first() -> None:
    """The stolen request is accepted before the victim's next use: the victim's use must
    still find it under the thief's rejected requests."""
    common = dict(token="at-1", **SESSION)
    base = [event("issued", 0, expires_in=3_600, **common), event("used", 100, place=thief(0), **common)]
    victim = event("used", 140, **common)
    noise = [rejected(100 + k * 0.5, k + 1) for k in range(1, 60)]
    plain, flooded = run([*base, victim]), run([*base, *noise, victim])
    assert outcome(flooded) == outcome(plain) == [(CONCURRENT, "at-1", 1)]
    assert flooded[0].evidence[-1].event_id == victim.event_id


def test_one_holder_failing_often_from_its_own_network_raises_nothing() -> None:
    events = [event("issued", 0, token="at-1", expires_in=3_600, grant_type="authorization_code", **SESSION)]
    for t in range(10, 600, 10):
        home = BERLIN_HOME if t % 20 else BERLIN_MOBILE  # one ASN, two addresses
        events.append(event("used", t, token="at-1", place=home, expires_in=3_600 - t, **SESSION))
        for k in range(5):
            events.append(event("used", t + 1 + k, token="at-1", place=home, success=False, status=404,
                                expires_in=3_600 - t, **SESSION))
    assert run(events) == []


def test_made_up_tokens_that_only_fail_leave_bounded_state() -> None:
    """10k random bearer tokens, never issued, each failing once: the state keeps at most
    ``max_unseen_failing_tokens`` of them (the latest), links nothing, and alerts on nothing."""
    cap = 1_000
    eng = Engine(build_detectors(None), StateStore(StateLimits(max_unseen_failing_tokens=cap)), Alerter(), EngineConfig())
    alerts: list[Alert] = []
    names = [f"hmac:{secrets.token_hex(16)}" for _ in range(10_000)]
    for i, name in enumerate(names):
        alerts += eng.submit(event("used", i * 0.02, token=name, token_type="unknown", subject=f"made-up-{i}",
                                   client=None, place=thief(i), success=False, status=401, expires_in=None))
    alerts += eng.flush()
    state = eng.state
    assert alerts == []
    assert len(state.tokens) == len(state.unseen_failing) == cap
    assert list(state.unseen_failing) == names[-cap:]
    assert state.subjects == {} and state.sessions == {} and state.families == {}
    assert StateLimits().max_unseen_failing_tokens == 10_000  # the documented default bound
