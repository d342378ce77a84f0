"""Event time that one line cannot move: in a replay of last month's logs, lines dated
"now" (the normalizer lets them through: they are not beyond the wall clock) are held
apart instead of moving the watermark, so no lineage is expired under the attack. Each
attack runs with the trick and without it: the same alerts (rule ids and token ids). A
real jump (old data, then live data) still moves the clock and alerts on the live part."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from detectors.state import StateStore
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from tests.factories import BERLIN_HOME, SINGAPORE_VPS, T0, at, engine, event, rule_hits

DAY = 86_400.0
NOW = (datetime.now(timezone.utc) - T0).total_seconds()  # wall clock, in factory seconds
MONTH_AGO = NOW - 31 * DAY  # past the 30-day revocation retention: a jump expires everything


def refresh_reuse(t: float, tag: str) -> list[CanonicalEvent]:
    """Login, rotation of rt-{tag}, then the stolen rt-{tag} redeemed again from elsewhere."""
    family = dict(family=f"fam-{tag}", session=f"s-{tag}", scopes=("openid",), subject=f"user-{tag}")
    return [
        event("issued", t, token=f"rt-{tag}", token_type="refresh", expires_in=DAY,
              grant_type="authorization_code", **family),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
        event("refreshed", t + 60, token=f"rt-{tag}-2", token_type="refresh", parent=f"rt-{tag}",
              expires_in=DAY, grant_type="refresh_token", **family),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
        event("refreshed", t + 360, token=f"rt-{tag}-x", token_type="refresh", parent=f"rt-{tag}",
              expires_in=DAY, grant_type="refresh_token", place=SINGAPORE_VPS, **family),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
    ]


def after_revocation(t: float) -> list[CanonicalEvent]:
    """An access token revoked, then used by whoever kept it."""
    common = dict(family="fam-r", session="s-r", subject="carol", scopes=("read",))
    return [
        event("issued", t, token="at-r", expires_in=3_600.0, **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
        event("revoked", t + 100, token="at-r", revoke="token", **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
        event("used", t + 400, token="at-r", required=("read",), **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
    ]


def benign(t: float, n: int, prefix: str) -> list[CanonicalEvent]:
    """Everyday traffic: one token issued per user and used from home, one event a second."""
    events: list[CanonicalEvent] = []
    for i in range(n // 2):
        who = f"{prefix}-{i % 50}"
        events.append(event("issued", t + 2 * i, token=f"at-{prefix}-{i}", subject=who, session=f"s-{who}"))
        events.append(event("used", t + 2 * i + 1, token=f"at-{prefix}-{i}", subject=who, session=f"s-{who}",
                            place=BERLIN_HOME))
    return events


def month_old_replay() -> list[CanonicalEvent]:
    """Two attacks a month ago, interleaved with everyday traffic, in arrival order."""
    noise = benign(MONTH_AGO, 400, "old")
    reuse, revocation = refresh_reuse(MONTH_AGO + 10, "a"), after_revocation(MONTH_AGO + 20)
    return [*noise[:100], reuse[0], revocation[0], reuse[1], *noise[100:200], revocation[1],
            *noise[200:300], reuse[2], revocation[2], *noise[300:]]


def unrelated(t: float, tag: str) -> CanonicalEvent:
    return event("used", t, token=f"at-now-{tag}", subject="mallory", place=BERLIN_HOME)


def with_lines_at(events: list[CanonicalEvent], times: list[float], after: int = 150) -> list[CanonicalEvent]:
    """``events`` with unrelated lines dated ``times`` written in the middle (after the
    rotation and before the reuse)."""
    lines = [unrelated(t, str(i)) for i, t in enumerate(times)]
    return [*events[:after], *lines, *events[after:]]


def replay(events: list[CanonicalEvent], **engine_kw: float) -> tuple[list[Alert], Engine]:
    eng = engine(**engine_kw)
    alerts: list[Alert] = []
    for ev in events:
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    return alerts, eng


EXPECTED = [
    ("geo_divergence.impossible_travel", "rt-a-x"),  # Berlin, then Singapore 5 minutes later
    ("post_revocation_use.after_revocation", "at-r"),
    ("replay.refresh_reuse", "rt-a"),
]


def test_the_month_old_replay_alone_finds_both_attacks() -> None:
    alerts, eng = replay(month_old_replay())
    assert rule_hits(alerts) == EXPECTED
    assert eng.counters["held_events"] == 0 and eng.counters["clock_jumps"] == 0


@pytest.mark.parametrize("times", [
    pytest.param([NOW], id="one line dated now"),
    pytest.param([NOW - 60 * i for i in range(5)], id="a handful of lines dated now"),
    pytest.param([MONTH_AGO + DAY * i for i in (2, 9, 17, 30)], id="lines spread up to now"),
])
def test_lines_dated_now_do_not_expire_the_lineages(times: list[float]) -> None:
    events = month_old_replay()
    alerts, eng = replay(with_lines_at(events, times))
    assert rule_hits(alerts) == EXPECTED  # the same alerts as without the lines
    assert eng.counters["held_events"] == len(times)
    assert eng.counters["held_flushed"] == len(times)  # judged at the end, never lost
    assert eng.counters["clock_jumps"] == 0


def test_a_first_line_dated_now_sets_the_clock_but_no_lineage_is_lost() -> None:
    """No stream time exists before the first line, so it sets the clock; the replay behind
    it is then judged in arrival order and nothing expires until the end (see README)."""
    alerts, eng = replay([unrelated(NOW, "first"), *month_old_replay()])
    assert rule_hits(alerts) == EXPECTED
    assert eng.counters["held_events"] == 0


def test_held_lines_are_pending_until_the_end() -> None:
    events = with_lines_at(month_old_replay(), [NOW])
    eng = engine()
    for ev in events:
        eng.submit(ev)
    assert "at-now-0" not in eng.state.tokens
    assert events[150].event_id in eng.pending_event_ids()  # a checkpoint must not commit past it
    assert eng.watermark < at(MONTH_AGO + DAY).timestamp()  # the clock stayed with the replay
    eng.flush()
    assert "at-now-0" in eng.state.tokens and eng.pending_event_ids() == set()


def test_an_old_backfill_then_live_data_moves_the_clock_and_alerts_on_the_live_part() -> None:
    live_start = NOW - 1_200
    live = benign(live_start, 1_000, "live")
    attack = refresh_reuse(live_start + 30, "live")
    live = [*live[:200], attack[0], attack[1], *live[200:600], attack[2], *live[600:]]
    eng = engine()
    alerts: list[Alert] = []
    for ev in [*benign(MONTH_AGO, 1_000, "old"), *live]:
        alerts.extend(eng.submit(ev))
    # The jump is confirmed at the 101st live event (held, and the majority of the last 200).
    assert eng.counters["clock_jumps"] == 1 and eng.counters["held_confirmed"] == 101
    assert eng.counters["held_events"] == 101 and eng.counters["held_flushed"] == 0
    assert eng.watermark > live_start + 900  # the clock follows the live data, before the end
    live_hits = [("geo_divergence.impossible_travel", "rt-live-x"), ("replay.refresh_reuse", "rt-live")]
    assert sorted((a.rule.id, a.token.id) for a in eng.alerter.snapshot()) == live_hits
    alerts.extend(eng.flush())
    assert rule_hits(alerts) == live_hits


def test_a_replay_of_two_periods_follows_the_second() -> None:
    """A replay that concatenates two months: the second is confirmed as quickly."""
    first, second = benign(MONTH_AGO - 30 * DAY, 600, "jan"), benign(MONTH_AGO, 600, "feb")
    attack = refresh_reuse(MONTH_AGO + 100, "feb")
    alerts, eng = replay([*first, *second[:300], *attack, *second[300:]])
    assert rule_hits(alerts) == [("geo_divergence.impossible_travel", "rt-feb-x"), ("replay.refresh_reuse", "rt-feb")]
    assert eng.counters["clock_jumps"] == 1 and eng.counters["held_flushed"] == 0


def test_lines_ahead_beyond_a_full_hold_are_out_of_range() -> None:
    """The hold is bounded: an attacker who keeps writing lines dated now (fewer than the
    stream itself) gets them refused, for the caller to dead-letter."""
    config = EngineConfig(max_held_events=3)
    eng = Engine(engine().detectors, StateStore(), Alerter(), config)
    events, refused, alerts = month_old_replay(), [], []
    for i, ev in enumerate(events):
        alerts += eng.submit(ev)
        if i % 40 == 0:
            alerts += eng.submit(unrelated(NOW, f"flood-{i}"))
            refused += [e.token.id for e in eng.take_out_of_range() if e.token]
    flood = range(0, len(events), 40)
    assert eng.counters["held_events"] == 3 and eng.counters["out_of_range_events"] == len(flood) - 3
    assert refused == [f"at-now-flood-{i}" for i in flood[3:]]
    assert rule_hits(alerts + eng.flush()) == EXPECTED


def test_detect_dead_letters_what_the_full_hold_refuses_and_keeps_reading() -> None:
    """`tokenwatch detect`: far-ahead lines beyond the hold's bound end as dead letters with
    the reason, the attack in range still alerts."""
    import orjson

    from tests.detect_helpers import NOW as CLOCK
    from tests.detect_helpers import detect_lines

    now = (CLOCK - T0).total_seconds()  # detect_lines' wall clock
    attack = refresh_reuse(now - 31 * DAY, "d")
    ahead = [event("used", now - 60 + i, token=f"at-now-{i}", subject="x") for i in range(5)]

    def lines(events: list[CanonicalEvent]) -> list[bytes]:
        return [orjson.dumps(ev.model_dump(mode="json")) for ev in events]

    settings = {"engine": {"max_held_events": 2}}
    plain = detect_lines(lines(attack), settings)
    assert ("replay.refresh_reuse", "rt-d") in plain.hits
    found = detect_lines(lines([*attack[:2], *ahead, attack[2]]), settings)
    assert found.hits == plain.hits
    reasons = [letter["reason"] for letter in found.dead_letters]
    assert reasons == ["event time out of range: ahead of the stream beyond the held-event bound"] * 3
    assert [letter["event"]["token"]["id"] for letter in found.dead_letters] == ["at-now-2", "at-now-3", "at-now-4"]
    assert found.summary.engine["out_of_range_events"] == 3
