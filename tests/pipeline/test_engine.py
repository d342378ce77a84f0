"""Engine and alerter: event-time order, lateness, dedup, folding, deterministic ids."""

from __future__ import annotations

from typing import ClassVar

from detectors.base import Detector, Finding, RuleMeta
from detectors.state import StateStore
from pipeline.runtime.alerting import Alerter, alert_id
from pipeline.runtime.config import AlertingConfig, EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent
from tests.factories import at, event, run

RULE = RuleMeta(
    id="test.every_use", name="Every use", category="replay", severity="low", risk_score=10,
    techniques=(("T1550.001", "Use Alternate Authentication Material"),), response="none",
    description="test rule",
)


class Recorder(Detector):
    """Records the order events reach detectors; raises a finding per use."""

    name: ClassVar[str] = "recorder"
    rules: ClassVar[tuple[RuleMeta, ...]] = (RULE,)

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def process(self, ev: CanonicalEvent, state: StateStore) -> list[Finding]:
        self.seen.append(ev.event_id)
        if ev.kind.value != "used":
            return []
        return [Finding(rule=RULE, event=ev, key=ev.token.id if ev.token else "-", summary="used",
                        evidence=(EvidenceItem.of(ev),))]


def _engine(fold: float = 3600, **kw: float) -> tuple[Engine, Recorder]:
    recorder = Recorder()
    return Engine([recorder], StateStore(), Alerter(AlertingConfig(fold_window_s=fold)), EngineConfig(**kw)), recorder


def test_an_event_in_order_for_its_keys_is_judged_at_once() -> None:
    """No waiting for the watermark: the lateness only matters to what arrives out of order."""
    eng, rec = _engine(allowed_lateness_s=300)
    for t, eid in ((0, "a"), (5, "b"), (9, "c")):
        eng.submit(event("used", t, token="at-1", event_id=eid))
    assert rec.seen == ["a", "b", "c"] and eng.pending_event_ids() == set()
    assert eng.counters["reordered_events"] == 0


def test_what_arrives_out_of_order_for_a_key_is_reordered_with_that_key_only() -> None:
    eng, rec = _engine(allowed_lateness_s=10)
    for t, eid, token in ((5, "b", "at-1"), (1, "a", "at-1"), (8, "c", "at-1"), (6, "other", "at-2"),
                          (30, "d", "at-1")):
        eng.submit(event("used", t, token=token, event_id=eid, subject=f"u-{token}", session=f"s-{token}"))
    # b in order; a arrived after it: a waits, and c and d (same token) wait behind it until the
    # watermark (30 - 10) passes them; at-2's event is in order for its own keys.
    assert rec.seen == ["b", "other", "a", "c"] and eng.pending_event_ids() == {"d"}
    eng.flush()
    assert rec.seen[-1] == "d" and eng.counters["late_events"] == 0
    assert eng.counters["reordered_events"] == 3


def test_events_later_than_the_lateness_are_processed_and_counted() -> None:
    eng, rec = _engine(allowed_lateness_s=2)
    for t, eid in ((10, "a"), (20, "b"), (5, "late")):
        eng.submit(event("used", t, token="at-1", event_id=eid))
    eng.flush()
    assert sorted(rec.seen) == ["a", "b", "late"]
    assert eng.counters["late_events"] == 1


def test_duplicate_deliveries_count_once_and_the_window_expires() -> None:
    eng, rec = _engine(allowed_lateness_s=0, dedup_window_s=60, expire_every_s=1)
    dup = event("used", 0, token="at-1", event_id="same")
    for ev in (dup, dup, event("used", 30, token="at-1"), dup):
        eng.submit(ev)
    assert rec.seen.count("same") == 1 and eng.counters["duplicates"] == 2
    eng.submit(event("used", 200, token="at-1"))  # moves the watermark past the window
    eng.submit(dup)
    assert rec.seen.count("same") == 2  # remembered for dedup_window_s only


def test_findings_fold_within_the_window_and_split_beyond_it() -> None:
    eng, _ = _engine(fold=600, allowed_lateness_s=0)
    alerts = []
    for t in (0, 100, 200, 2000):
        alerts += eng.submit(event("used", t, token="at-1", event_id=f"u{t}"))
    alerts += eng.flush()
    assert [(a.alert.count, a.alert.first_seen, a.alert.last_seen) for a in alerts] == [
        (3, at(0), at(200)), (1, at(2000), at(2000))
    ]
    assert alerts[0].alert.id == alert_id("test.every_use", "at-1", "u0")
    assert [e.event_id for e in alerts[0].evidence] == ["u0", "u100", "u200"]


def test_alert_is_emitted_once_its_window_closes_in_event_time() -> None:
    eng, _ = _engine(fold=60, allowed_lateness_s=0, expire_every_s=1)
    assert eng.submit(event("used", 0, token="at-1")) == []
    emitted = eng.submit(event("issued", 500, token="other"))
    assert [a.token.id for a in emitted] == ["at-1"]
    assert eng.flush() == []


def test_replaying_the_same_input_gives_the_same_alert_ids() -> None:
    from tests.factories import BERLIN_HOME, SINGAPORE_VPS

    events = [event("issued", 0, token="at-1", scopes=("a",), event_id="i1"),
              event("used", 10, token="at-1", scopes=("a",), event_id="u1"),
              event("used", 20, token="at-1", scopes=("a",), place=SINGAPORE_VPS, event_id="u2"),
              event("used", 30, token="at-1", scopes=("a",), place=BERLIN_HOME, event_id="u3")]
    first, second = run(events), run(events)
    assert first and [a.alert.id for a in first] == [a.alert.id for a in second]


def test_release_idle_judges_buffered_events_and_keeps_alerts_open() -> None:
    eng, rec = _engine(allowed_lateness_s=300)
    eng.submit(event("used", 10, token="at-1", event_id="b"))
    eng.submit(event("used", 0, token="at-1", event_id="a"))  # out of order: waits
    assert rec.seen == ["b"] and eng.pending_event_ids() == {"a"}
    watermark = eng.watermark
    assert eng.release_idle() == []  # findings fold into an alert that stays open
    assert rec.seen == ["b", "a"] and eng.pending_event_ids() == set()
    assert [a.alert.count for a in eng.alerter.snapshot()] == [2]
    assert eng.watermark == watermark  # wall time moves no event time: expiry waits as in a replay


def test_take_changed_hands_out_new_and_updated_open_alerts_once() -> None:
    eng, _ = _engine(allowed_lateness_s=0)
    eng.submit(event("used", 0, token="at-1", event_id="a"))
    [(first, new)] = eng.alerter.take_changed()
    assert new and first.alert.count == 1
    assert eng.alerter.take_changed() == []
    eng.submit(event("used", 10, token="at-1", event_id="b"))
    [(update, new)] = eng.alerter.take_changed()
    assert not new and update.alert.id == first.alert.id and update.alert.count == 2


def test_after_a_restore_applied_events_are_duplicates_and_buffered_ones_are_not() -> None:
    from detectors.state_codec import dirty_records, restore

    store = StateStore(track_changes=True)
    eng = Engine([Recorder()], store, Alerter(), EngineConfig(allowed_lateness_s=10))
    events = [event("used", t, token="at-1", event_id=eid) for t, eid in ((0, "a"), (30, "b"), (25, "c"))]
    for ev in events:
        eng.submit(ev)
    assert eng.pending_event_ids() == {"c"}  # a and b are applied; c (out of order) waits
    eng.keep_for_replay(["a", "b"])  # a checkpoint whose commit stops before c holds back a and b too
    changelog = dirty_records(store)  # what a checkpoint writes

    recorder = Recorder()
    successor = Engine([recorder], restore(StateStore(track_changes=True), changelog), Alerter(),
                       EngineConfig(allowed_lateness_s=10))
    successor.restored()
    for ev in events:  # the replay from the last committed offset
        successor.submit(ev)
    successor.flush()
    assert recorder.seen == ["c"] and successor.counters["duplicates"] == 2


# -- event time: a line far ahead of the stream is held, a confirmed jump moves the clock --


class FakeClock:
    """Monotonic wall seconds the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _leading(clock: FakeClock | None = None, **kw: float) -> tuple[Engine, Recorder]:
    recorder = Recorder()
    config = EngineConfig(**{"allowed_lateness_s": 0, "max_lead_s": 100, "jump_confirm_events": 3, **kw})
    return Engine([recorder], StateStore(), Alerter(), config, clock=clock or FakeClock()), recorder


def _feed(eng: Engine, *times_ids: tuple[float, str]) -> None:
    for t, eid in times_ids:
        eng.submit(event("used", t, token="at-1", event_id=eid))


def test_an_event_far_ahead_is_held_and_does_not_move_the_clock() -> None:
    eng, rec = _leading()
    _feed(eng, (0, "a"), (10, "b"), (10_000, "ahead"), (20, "c"), (30, "d"))
    assert rec.seen == ["a", "b", "c", "d"] and eng.watermark == at(30).timestamp()
    assert eng.pending_event_ids() == {"ahead"}
    assert eng.counters["held_events"] == 1 and eng.counters["late_events"] == 0
    eng.submit(event("used", 10_000, token="at-1", event_id="ahead"))  # a redelivery of a held event
    assert eng.counters["duplicates"] == 1
    eng.flush()
    assert rec.seen[-1] == "ahead" and eng.counters["held_flushed"] == 1 and eng.pending_event_ids() == set()


def test_a_jump_is_confirmed_once_held_events_are_the_recent_majority() -> None:
    eng, rec = _leading()
    _feed(eng, *((t, f"old{t}") for t in range(5)), (10_000, "j0"), (10_001, "j1"), (10_002, "j2"))
    assert eng.counters["clock_jumps"] == 0  # 3 held of the last 6: not a majority yet
    _feed(eng, (10_003, "j3"))
    assert eng.counters["clock_jumps"] == 1 and eng.counters["held_confirmed"] == 4
    assert rec.seen[-4:] == ["j0", "j1", "j2", "j3"] and eng.watermark == at(10_003).timestamp()
    _feed(eng, (3, "straggler"))
    assert eng.counters["late_events"] == 1 and rec.seen[-1] == "straggler"


def test_the_jump_lands_on_the_median_of_the_held_events() -> None:
    eng, rec = _leading()
    _feed(eng, (0, "a"), (500_000, "far"), *((10_000 + t, f"j{t}") for t in range(4)))
    assert eng.counters["clock_jumps"] == 1 and eng.pending_event_ids() == {"far"}
    assert eng.watermark == at(10_003).timestamp()


def test_in_range_events_keep_held_ones_from_confirming_and_the_hold_is_bounded() -> None:
    eng, rec = _leading(max_held_events=3)
    for i in range(6):
        _feed(eng, (i, f"in{i}"), (10_000 + i, f"ahead{i}"))
    assert eng.counters["clock_jumps"] == 0 and eng.counters["held_events"] == 3
    assert eng.counters["out_of_range_events"] == 3
    assert eng.pending_event_ids() == {"ahead0", "ahead1", "ahead2"}
    assert [e.event_id for e in eng.take_out_of_range()] == ["ahead3", "ahead4", "ahead5"]
    assert eng.take_out_of_range() == []
    eng.flush()
    assert rec.seen[-3:] == ["ahead0", "ahead1", "ahead2"]


def test_held_events_enter_once_the_clock_comes_within_reach() -> None:
    eng, rec = _leading()
    _feed(eng, (0, "a"), (250, "held"), (100, "b"))
    assert eng.pending_event_ids() == {"held"}
    _feed(eng, (160, "c"))
    assert eng.counters["held_caught_up"] == 1 and rec.seen == ["a", "b", "c", "held"]


def test_a_live_stream_that_was_quiet_is_not_ahead() -> None:
    clock = FakeClock()
    eng, rec = _leading(clock)
    _feed(eng, (0, "a"))
    clock.now += 7_200  # two hours without events, in wall time
    _feed(eng, (7_000, "b"))
    assert rec.seen == ["a", "b"] and eng.counters["held_events"] == 0
    _feed(eng, (20_000, "c"))  # but ahead of the stream by more than the quiet time
    assert eng.counters["held_events"] == 1


def test_release_idle_admits_held_events_nothing_in_range_followed() -> None:
    eng, rec = _leading()
    _feed(eng, (0, "a"), (5_000, "sparse"), (5_060, "sparse2"))  # a sparse stream: each event hours apart
    assert eng.pending_event_ids() == {"sparse", "sparse2"}
    eng.release_idle()
    assert rec.seen == ["a", "sparse", "sparse2"] and eng.counters["held_idle"] == 2
    assert eng.pending_event_ids() == set()


def test_release_idle_keeps_contradicted_held_events_until_the_quiet_time_reaches_them() -> None:
    clock = FakeClock()
    eng, rec = _leading(clock)
    _feed(eng, (0, "a"), (1_000, "outlier"), (5, "b"))  # the stream went on behind the outlier
    assert eng.release_idle() == [] and eng.pending_event_ids() == {"outlier"}
    clock.now += 1_000
    eng.release_idle()
    assert rec.seen == ["a", "b", "outlier"] and eng.counters["held_caught_up"] == 1


def test_revocations_fed_from_other_partitions_neither_move_the_clock_nor_block_a_sparse_stream() -> None:
    """`run` feeds every partition the revocations the others read: they are another stream's
    events, judged in this one's time order but no evidence about its clock."""
    eng, rec = _leading()
    _feed(eng, (0, "a"), (5_000, "sparse"))
    for i in range(5):  # a restart replays the revocations topic into every partition
        eng.submit(event("revoked", 1 + i, token=f"other-{i}", event_id=f"rev{i}", revoke="token"), external=True)
    far = event("revoked", 90_000, token="other-far", event_id="rev-far", revoke="token")
    eng.submit(far, external=True)
    assert eng.watermark == at(0).timestamp() and eng.counters["held_events"] == 1
    eng.release_idle()  # nothing of this stream's own came after the sparse event
    assert rec.seen[:7] == ["a", "rev0", "rev1", "rev2", "rev3", "rev4", "sparse"]
    assert eng.pending_event_ids() == {"rev-far"}  # judged when this stream's time reaches it


def test_after_a_restore_the_first_line_cannot_set_the_clock() -> None:
    from detectors.state_codec import dirty_records, restore

    config = EngineConfig(allowed_lateness_s=0, max_lead_s=100)
    eng = Engine([Recorder()], StateStore(track_changes=True), Alerter(), config, clock=FakeClock())
    _feed(eng, (0, "a"), (5, "b"))
    eng.keep_for_replay([])  # a checkpoint past both: no id to keep, the clock all the same
    store = restore(StateStore(track_changes=True), dirty_records(eng.state))
    successor = Engine([Recorder()], store, Alerter(), config, clock=FakeClock())
    successor.restored()  # the clock is the latest applied event: 5
    _feed(successor, (10_000, "ahead"), (6, "c"))
    assert successor.pending_event_ids() == {"ahead"} and successor.watermark == at(6).timestamp()


# -- per-source watermarks -------------------------------------------------------------


def _sourced(t: float, eid: str, source: str, token: str = "at-1", tenant: str | None = None) -> CanonicalEvent:
    ev = event("used", t, token=token, event_id=eid, source=source, subject=f"u-{token}", session=f"s-{token}")
    return ev.model_copy(update={"tenant": tenant}) if tenant else ev


def test_the_watermark_is_the_slowest_source_still_delivering() -> None:
    eng, _ = _engine(allowed_lateness_s=5, source_idle_s=600)
    eng.submit(_sourced(940, "o1", "okta", "at-o1"))  # Okta delivers a minute behind the gateway
    eng.submit(_sourced(1_000, "g1", "gateway", "at-g1"))
    eng.submit(_sourced(1_100, "g2", "gateway", "at-g2"))
    assert eng.watermark == at(940 - 5).timestamp()
    eng.submit(_sourced(1_040, "o2", "okta", "at-o2"))
    assert eng.watermark == at(1_040 - 5).timestamp()
    assert eng.source_lags() == {"gateway": 0.0, "okta": 60.0}


def test_tenants_of_one_format_are_separate_sources() -> None:
    eng, _ = _engine(allowed_lateness_s=0, source_idle_s=600)
    eng.submit(_sourced(700, "b", "entra", "at-b", tenant="fabrikam"))
    eng.submit(_sourced(1_000, "a", "entra", "at-a", tenant="contoso"))
    eng.submit(_sourced(1_010, "c", "entra", "at-c", tenant="contoso"))
    assert eng.watermark == at(700).timestamp()


def test_a_source_idle_in_event_time_stops_holding_the_watermark_back() -> None:
    eng, _ = _engine(allowed_lateness_s=0, source_idle_s=300)
    eng.submit(_sourced(0, "o1", "okta", "at-o"))
    eng.submit(_sourced(200, "g1", "gateway", "at-g1"))
    assert eng.watermark == at(0).timestamp()  # heard from 200 s of stream time ago
    eng.submit(_sourced(301, "g2", "gateway", "at-g2"))
    assert eng.watermark == at(301).timestamp()  # Okta is idle: time follows the gateway
    eng.submit(_sourced(100, "o2", "okta", "at-o2"))  # Okta resumes, far behind: late, still judged
    assert eng.counters["late_events"] == 1
    assert eng.watermark == at(100).timestamp()  # and time waits for it again while it delivers
    eng.submit(_sourced(150, "o3", "okta", "at-o3"))
    assert eng.counters["late_events"] == 1 and eng.watermark == at(150).timestamp()


def test_a_delayed_source_holds_expiry_back_so_its_late_facts_find_the_state() -> None:
    """A token is issued and revoked at Okta, used at the gateway; Okta's feed is two hours
    behind and keeps delivering (not idle), so the token's state outlives the gateway's clock
    and the revocation, judged two hours after the use, is applied to the use it covers."""
    from tests.factories import engine as full_engine
    from tests.factories import rule_hits

    common = dict(token="at-r", subject="carol", session="s-r", scopes=("read",), expires_in=600.0)
    okta = [event("issued", 8_000, source="okta", **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
            event("revoked", 8_100, source="okta", revoke="token", **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
            *(event("session_started", t, session=f"s-{t}", subject="erin", source="okta")
              for t in range(0, 9_000, 300))]
    gateway = [event("used", t, source="gateway", required=("read",), **common)  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
               for t in (8_050, 8_400)]
    noise = [event("used", t, token=f"at-n{t}", subject="dave", source="gateway") for t in range(0, 16_000, 60)]
    base = at(0).timestamp()
    arrivals = [ev for _, _, ev in sorted(
        (ev.epoch - base + (7_200 if ev.source == "okta" else 1), n, ev)
        for n, ev in enumerate([*okta, *gateway, *noise]))]

    def detect(**kw: float) -> list:
        eng = full_engine(**kw)
        return [alert for ev in arrivals for alert in eng.submit(ev)] + eng.flush()

    alerts = detect()
    assert rule_hits(alerts) == [("post_revocation_use.after_revocation", "at-r")]
    assert alerts[0].evidence[-1].time == at(8_400)  # the use after the revocation
    # Okta counted idle between its events: time follows the gateway, and only the lateness
    # Okta has shown (2 h behind the clock) keeps the state for its revocation ...
    assert rule_hits(detect(source_idle_s=200)) == [("post_revocation_use.after_revocation", "at-r")]
    # ... without which it is gone.
    assert detect(source_idle_s=200, late_retention_max_s=0) == []


def _files_one_after_another(first_file_ends: float) -> list[CanonicalEvent]:
    """Per-source files concatenated: another source's file (ending at ``first_file_ends``), the
    gateway's (carol's token used at 8,050 and 8,400 among dave's traffic to 16,000), then
    Okta's (the token issued at 8,000, revoked at 8,100)."""
    common = dict(token="at-r", subject="carol", session="s-r", scopes=("read",), expires_in=600.0)
    other = [event("session_started", t, session=f"k-{t}", subject="erin", source="k8s")
             for t in range(0, int(first_file_ends) + 1, 300)]
    gateway = sorted([*(event("used", t, source="gateway", required=("read",), **common)  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
                        for t in (8_050, 8_400)),
                      *(event("used", t, token=f"at-n{t}", subject="dave", source="gateway")
                        for t in range(0, 16_000, 60))], key=lambda ev: ev.epoch)
    okta = [event("issued", 8_000, source="okta", **common),  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
            event("revoked", 8_100, source="okta", revoke="token", **common)]  # type: ignore[arg-type]  # mypy joins the dict(...)'s mixed values into one type; each key fits its keyword
    return [*other, *gateway, *okta]


def test_a_later_file_as_late_as_one_the_stream_showed_finds_the_state_whatever_shares_the_stream() -> None:
    """Issue 18 (d): `detect` reads every subject's files, one `run` partition only some. The
    Okta file brings a revocation of a token the gateway file saw used hours "earlier" in the
    stream. Whether the use was still in state depended on how far the *first* file had taken
    the stream (a sweep runs only past the highest watermark): the whole stream's first file
    reached 16,000 and nothing was swept, a partition's reached 9,000 and the gateway's own
    progress swept the token (deadline 12,200). The gateway file started 9,000 behind the
    clock: state is now kept that much longer, so both keep it and both alert."""
    from tests.factories import engine as full_engine
    from tests.factories import rule_hits

    def detect(stream: list[CanonicalEvent], **kw: float) -> list:
        eng = full_engine(**kw)
        return [alert for ev in stream for alert in eng.submit(ev)] + eng.flush()

    whole, partition = _files_one_after_another(16_000), _files_one_after_another(9_000)
    expected = [("post_revocation_use.after_revocation", "at-r")]
    assert rule_hits(detect(whole)) == rule_hits(detect(partition)) == expected
    # The cause, with the extension off: the same events for carol, two answers.
    assert rule_hits(detect(whole, late_retention_max_s=0)) == expected
    assert detect(partition, late_retention_max_s=0) == []


def test_the_retention_extension_is_bounded_and_ends_once_the_clock_moved_on() -> None:
    """The extension is the lateness the stream showed, at most ``late_retention_max_s``, and
    lasts until the clock has moved on by as much; then state is swept at its own deadline
    (a token used at t is kept to t + 300 s lifetime + 3,600 s retention)."""

    def stream(used_at: float) -> Engine:
        eng, _ = _engine(allowed_lateness_s=0, source_idle_s=500, late_retention_max_s=5_000, expire_every_s=1)
        eng.submit(_sourced(20_000, "k1", "k8s", "at-k"))
        eng.submit(_sourced(used_at, "g0", "gateway", "at-g"))  # behind the clock: the stream's lateness
        return eng

    bounded = stream(14_000)  # 6,000 behind, kept 5,000 longer: to 17,900 + 5,000
    for t, kept in ((21_000, True), (22_000, True), (23_000, False)):  # (a minute's sweep granularity)
        bounded.submit(_sourced(t, f"g{t}", "gateway", f"at-{t}"))
        assert ("at-g" in bounded.state.tokens) is kept, t
    ending = stream(18_000)  # 2,000 behind: kept 2,000 longer while the clock is within 2,000 of 20,000
    for t, kept in ((21_000, True), (22_000, True), (22_001, False)):
        ending.submit(_sourced(t, f"g{t}", "gateway", f"at-{t}"))
        assert ("at-g" in ending.state.tokens) is kept, t
