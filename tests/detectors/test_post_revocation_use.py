"""Post-revocation use: attacks and their benign twins, in order, within lateness and late."""

from __future__ import annotations

from typing import Any

from detectors.post_revocation_use import (
    LAG_METRIC,
    Expiry,
    Judgement,
    LateUse,
    PostRevocationUseConfig,
    PostRevocationUseDetector,
    judge_revocation,
    judge_use,
    late_use_finding,
    use_event,
)
from detectors.revocation_policy import Revocation
from detectors.state import Observation, StateStore
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind, TokenType
from tests.factories import BERLIN_HOME, BERLIN_MOBILE, at, engine, event, rule_hits, run

AFTER_REVOCATION = "post_revocation_use.after_revocation"
AFTER_DISABLE = "post_revocation_use.after_disable"
AFTER_EXPIRY = "post_revocation_use.after_expiry"


def issue(t: float = 0, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "expires_in": 3600.0, **kw}
    return event("issued", t, token=token, **kw)


def use(t: float, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "required": ("read",), **kw}
    return event("used", t, token=token, **kw)


def revoke(t: float, target: str, **kw: Any) -> CanonicalEvent:
    kw = {"token": "at-1" if target == "token" else None, **kw}
    return event("revoked", t, revoke=target, **kw)


def logout(t: float, session: str = "s-1") -> CanonicalEvent:
    return event("session_ended", t, session=session)


def disable(t: float, subject: str = "alice") -> CanonicalEvent:
    return event("principal_disabled", t, subject=subject, client=None)


# -- after_revocation, in order ------------------------------------------------------
def test_use_after_token_revocation_alerts_with_facts_in_summary() -> None:
    rev = revoke(100, "token")
    trigger = use(700, place=BERLIN_MOBILE)
    alerts = run([issue(), use(50), rev, trigger])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    alert = alerts[0]
    assert alert.alert.severity == "critical" and alert.alert.risk_score == 90
    assert alert.response.action == "revoke_session"
    assert alert.threat.technique[0].id == "T1550.001"
    summary = alert.alert.summary
    for fact in ("at-1", "alice", "79.200.77.3", "Berlin", "AS3320", "10 min", "the token itself was revoked",
                 "09:01:40Z", "09:11:40Z"):
        assert fact in summary, fact
    assert [item.event_id for item in alert.evidence] == [rev.event_id, trigger.event_id]
    assert alert.details["revoked"] == "token" and alert.details["retroactive"] is False


def test_use_after_family_revocation_alerts() -> None:
    events = [
        issue(token="rt-1", token_type=TokenType.REFRESH),
        issue(),
        revoke(100, "family", token="rt-1", family="fam-1"),
        use(200),
    ]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "at-1")]


def test_use_after_session_revocation_alerts() -> None:
    alerts = run([issue(), revoke(100, "session", session="s-1"), use(200)])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert "its session s-1 was revoked" in alerts[0].alert.summary


def test_use_after_logout_alerts() -> None:
    alerts = run([issue(), logout(100), use(200)])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert "ended (logout)" in alerts[0].alert.summary


def test_use_after_subject_revocation_alerts() -> None:
    alerts = run([issue(), revoke(100, "subject", subject="alice"), use(200)])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert "all tokens of subject alice were revoked" in alerts[0].alert.summary


def test_session_id_falls_back_to_token_state() -> None:
    assert rule_hits(run([issue(), logout(100), use(200, session=None)])) == [(AFTER_REVOCATION, "at-1")]


def test_token_issued_after_subject_revocation_is_benign() -> None:
    events = [issue(), revoke(100, "subject", subject="alice"), issue(150, token="at-2", session="s-2"),
              use(300, token="at-2", session="s-2")]
    assert run(events) == []


def test_failed_use_after_revocation_is_benign() -> None:
    assert run([issue(), revoke(100, "token"), use(200, success=False), use(900, success=False)]) == []


def test_use_within_propagation_lag_is_a_metric_not_an_alert() -> None:
    eng = engine()
    for ev in [issue(), revoke(100, "token"), use(130)]:
        eng.submit(ev)
    assert eng.flush() == []
    assert eng.state.metrics[LAG_METRIC] == [30.0]


def test_propagation_lag_is_configurable() -> None:
    events = [issue(), revoke(100, "token"), use(200)]
    assert run(events, config={"post_revocation_use": {"propagation_lag_s": 300}}) == []


def test_use_before_revocation_is_benign() -> None:
    assert run([issue(), use(50), use(90), revoke(100, "token")]) == []


def test_uses_after_revocation_fold_into_one_alert() -> None:
    alerts = run([issue(), revoke(100, "token"), use(200), use(300)])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert alerts[0].alert.count == 2


def test_duplicate_delivery_counts_once() -> None:
    trigger = use(200)
    alerts = run([issue(), revoke(100, "token"), trigger, trigger])
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert alerts[0].alert.count == 1


# -- after_disable ------------------------------------------------------------------
def test_use_after_disable_alerts_once_even_when_also_logged_out() -> None:
    alerts = run([issue(), disable(100), logout(101), use(200)])
    assert rule_hits(alerts) == [(AFTER_DISABLE, "at-1")]
    alert = alerts[0]
    assert alert.alert.risk_score == 95 and alert.response.action == "revoke_subject"
    assert "subject alice was disabled" in alert.alert.summary


def test_token_issued_after_password_reset_is_benign() -> None:
    events = [issue(), disable(100), issue(150, token="at-2", session="s-2"), use(300, token="at-2", session="s-2")]
    assert run(events) == []


def test_use_within_lag_of_disable_is_benign() -> None:
    assert run([issue(), disable(100), use(120)]) == []


# -- after_expiry -------------------------------------------------------------------
def test_use_after_expiry_known_from_issue_alerts() -> None:
    alerts = run([issue(expires_in=300), use(1000, expires_in=None)])
    assert rule_hits(alerts) == [(AFTER_EXPIRY, "at-1")]
    assert alerts[0].alert.severity == "high" and alerts[0].alert.risk_score == 70
    assert "expired at 2026-11-24 09:05:00Z" in alerts[0].alert.summary
    assert alerts[0].details["seconds_after_expiry"] == 700


def test_use_after_expiry_from_event_exp_alerts() -> None:
    assert rule_hits(run([use(1000, expires_in=-700)])) == [(AFTER_EXPIRY, "at-1")]


def test_use_within_clock_skew_of_expiry_is_benign() -> None:
    assert run([issue(expires_in=300), use(320, expires_in=None)]) == []


def test_revocation_takes_precedence_over_expiry() -> None:
    events = [issue(expires_in=300), revoke(100, "token"), use(1000, expires_in=None)]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "at-1")]


# -- out of order -------------------------------------------------------------------
def test_revocation_arriving_after_use_within_lateness_alerts_with_the_in_order_id() -> None:
    """The use is in order for its token, so it is judged at once (no wait for the watermark);
    the revocation that arrives after it re-checks the recorded use: one alert, with the id
    in-order processing gives, and nothing counted late."""
    granted, used, revocation = issue(), use(200), revoke(100, "token")
    eng = engine(allowed_lateness_s=300)
    alerts = []
    for ev in [granted, used, revocation]:
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    in_order = engine(allowed_lateness_s=300)
    expected = [a for ev in [granted, revocation, used] for a in in_order.submit(ev)]
    expected += in_order.flush()
    assert rule_hits(alerts) == rule_hits(expected) == [(AFTER_REVOCATION, "at-1")]
    assert [a.alert.id for a in alerts] == [a.alert.id for a in expected]
    assert eng.counters["late_events"] == 0
    assert alerts[0].details["retroactive"] is True


def test_late_revocation_beyond_lateness_alerts_retroactively_with_same_alert_id() -> None:
    first, second = use(200, place=BERLIN_MOBILE), use(260, place=BERLIN_MOBILE)
    rev = revoke(100, "token")
    tail = issue(400, token="at-9", session="s-9", family="fam-9")
    late = run([issue(), first, second, tail, rev], allowed_lateness_s=0)
    in_order = run([issue(), rev, first, second, tail], allowed_lateness_s=0)
    assert rule_hits(late) == rule_hits(in_order) == [(AFTER_REVOCATION, "at-1")]
    assert late[0].alert.id == in_order[0].alert.id
    assert late[0].alert.count == 2
    assert late[0].details["retroactive"] is True
    assert late[0].source.ip == BERLIN_MOBILE.ip and late[0].source.geo.city_name == "Berlin"
    assert late[0].user.id == "alice" and late[0].token.family_id == "fam-1"
    assert [item.event_id for item in late[0].evidence] == [rev.event_id, first.event_id, second.event_id]


def _late(revocation: CanonicalEvent) -> list:
    events = [issue(token="rt-1", token_type=TokenType.REFRESH), issue(), use(200),
              issue(400, token="at-9", session="s-9", family="fam-9", subject="bob"), revocation]
    return run(events, allowed_lateness_s=0)


def test_late_family_revocation_alerts_retroactively() -> None:
    assert rule_hits(_late(revoke(100, "family", token="rt-1", family="fam-1"))) == [(AFTER_REVOCATION, "at-1")]


def test_late_session_revocation_alerts_retroactively() -> None:
    assert rule_hits(_late(revoke(100, "session", session="s-1"))) == [(AFTER_REVOCATION, "at-1")]


def test_late_logout_alerts_retroactively() -> None:
    assert rule_hits(_late(logout(100))) == [(AFTER_REVOCATION, "at-1")]


def test_late_subject_revocation_alerts_retroactively() -> None:
    assert rule_hits(_late(revoke(100, "subject", subject="alice"))) == [(AFTER_REVOCATION, "at-1")]


def test_late_disable_alerts_retroactively() -> None:
    assert rule_hits(_late(disable(100))) == [(AFTER_DISABLE, "at-1")]


def test_late_revocation_within_lag_records_the_lag() -> None:
    eng = engine(allowed_lateness_s=0)
    for ev in [issue(), use(130), issue(400, token="at-9", session="s-9", family="fam-9"), revoke(100, "token")]:
        eng.submit(ev)
    assert eng.flush() == []
    assert eng.state.metrics[LAG_METRIC] == [30.0]


def test_late_revocation_does_not_refire_a_use_already_flagged() -> None:
    eng = engine(allowed_lateness_s=0)
    alerts = []
    for ev in [issue(), revoke(100, "token"), use(200), issue(400, token="at-9", session="s-9", family="fam-9"),
               revoke(50, "session", session="s-1")]:
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    assert rule_hits(alerts) == [(AFTER_REVOCATION, "at-1")]
    assert eng.counters[f"findings.{AFTER_REVOCATION}"] == 1


def test_late_subject_revocation_skips_tokens_issued_after_it() -> None:
    events = [issue(150), use(200), issue(400, token="at-9", session="s-9", family="fam-9", subject="bob"),
              revoke(100, "subject", subject="alice")]
    assert run(events, allowed_lateness_s=0) == []


def test_late_revocation_of_failed_uses_is_benign() -> None:
    events = [issue(), use(200, success=False), issue(400, token="at-9", session="s-9", family="fam-9"),
              revoke(100, "token")]
    assert run(events, allowed_lateness_s=0) == []


# -- pieces --------------------------------------------------------------------------
def test_use_event_rebuilds_a_used_event_from_an_observation() -> None:
    state = StateStore()
    state.apply(issue())
    original = use(200, place=BERLIN_HOME, request_id="req-x")
    state.apply(original)
    ts = state.tokens["at-1"]
    rebuilt = use_event(Observation(original), ts)
    assert rebuilt.kind is EventKind.USED and rebuilt.event_id == original.event_id
    assert rebuilt.time == at(200) and rebuilt.token is not None and rebuilt.token.id == "at-1"
    assert rebuilt.token.family_id == "fam-1" and rebuilt.session_id == "s-1"
    assert rebuilt.subject is not None and rebuilt.subject.id == "alice" and rebuilt.client_id == "portal"
    assert rebuilt.network.ip == BERLIN_HOME.ip and rebuilt.network.asn == BERLIN_HOME.asn
    assert rebuilt.network.geo is not None and rebuilt.network.geo.city == "Berlin"
    assert rebuilt.request is not None and rebuilt.request.id == "req-x"
    assert rebuilt.scopes == ("read",)


def test_process_ignores_other_kinds_cheaply() -> None:
    detector = PostRevocationUseDetector()
    state = StateStore()
    assert detector.process(issue(), state) == []
    assert detector.process(event("session_started", 0, session="s-1"), state) == []


# -- deciding and wording apart (issue 15: decide, then describe) -------------------
CONFIG = PostRevocationUseConfig()
REVOKED_RULE, DISABLED_RULE, EXPIRED_RULE = PostRevocationUseDetector.rules


def _state(*events: CanonicalEvent) -> StateStore:
    """State as the engine holds it when the next event reaches ``process`` (applied after it)."""
    state = StateStore()
    for ev in events:
        state.apply(ev)
    return state


def test_judge_use_names_the_revocation_a_use_came_after() -> None:
    rev, trigger = revoke(100, "token"), use(700)
    judged = judge_use(trigger, _state(issue(), rev), CONFIG)
    [match] = judged.late
    assert judged.lags == ()
    assert match.rule is REVOKED_RULE and match.use is trigger
    assert match.token_state is not None and match.token_state.token_id == "at-1"
    assert isinstance(match.after, Revocation)
    assert (match.after.what, match.after.scope_id, match.after.observation.event_id) == ("token", "at-1", rev.event_id)
    assert (match.late_s, match.allowed_s, match.revoking) == (600.0, 60.0, None)


def test_judge_use_finds_nothing_late_in_the_benign_twins() -> None:
    """The twins of the use above: within the propagation lag (a metric sample, no alert),
    before the revocation, and a token issued after its subject was revoked."""
    assert judge_use(use(130), _state(issue(), revoke(100, "token")), CONFIG) == Judgement(lags=(30.0,))
    assert judge_use(use(90), _state(issue(), use(50)), CONFIG) == Judgement()
    fresh = _state(issue(), revoke(100, "subject", subject="alice"), issue(150, token="at-2", session="s-2"))
    assert judge_use(use(300, token="at-2", session="s-2"), fresh, CONFIG) == Judgement()


def test_judge_use_prefers_disabling_and_words_nothing() -> None:
    judged = judge_use(use(200), _state(issue(), disable(100), logout(101)), CONFIG)
    [match] = judged.late
    assert match.rule is DISABLED_RULE and isinstance(match.after, Revocation)
    assert (match.after.what, match.after.scope_id, match.late_s) == ("disabled", "alice", 100.0)


def test_judge_revocation_finds_the_recorded_uses_a_late_revocation_covers() -> None:
    within, late = use(130), use(200)
    rev = revoke(100, "token")
    judged = judge_revocation(rev, _state(issue(), within, late), CONFIG)
    [match] = judged.late
    assert judged.lags == (30.0,)
    assert match.rule is REVOKED_RULE and match.use.event_id == late.event_id and match.revoking is rev
    assert isinstance(match.after, Revocation) and match.after.observation.event_id == rev.event_id
    assert (match.after.what, match.late_s) == ("token", 100.0)


def test_late_use_finding_words_a_revocation_match_exactly() -> None:
    rev, used = revoke(100, "session", session="s-1"), use(700, place=BERLIN_MOBILE)
    match = LateUse(REVOKED_RULE, used, None, Revocation("session", "s-1", Observation(rev)), 600.0, 60.0)
    finding = late_use_finding(match)
    assert finding.summary == (
        "Access token accepted 10 min after its session s-1 was revoked at 2026-11-24 09:01:40Z, from "
        "79.200.77.3 (Berlin, DE, Deutsche Telekom AG, AS3320) at 2026-11-24 09:11:40Z "
        "(allowed propagation lag 60 s; token at-1, subject alice, client portal)."
    )
    assert finding.rule is REVOKED_RULE and finding.event is used and finding.key == "at-1"
    assert finding.family_id == "fam-1"
    assert finding.evidence == (Observation(rev).evidence(None), EvidenceItem.of(used))
    assert finding.details == {
        "revoked": "session", "revoked_id": "s-1", "revoked_at": "2026-11-24T09:01:40Z",
        "revocation_event_id": rev.event_id, "seconds_after_revocation": 600.0, "propagation_lag_s": 60.0,
        "retroactive": False,
    }
    retro = late_use_finding(LateUse(REVOKED_RULE, used, None, match.after, 600.0, 60.0, revoking=rev))
    assert retro.summary == finding.summary and retro.details["retroactive"] is True
    assert retro.evidence == (EvidenceItem.of(rev), EvidenceItem.of(used))


def test_late_use_finding_words_an_expiry_match_exactly() -> None:
    used = use(1000, expires_in=None)
    finding = late_use_finding(LateUse(EXPIRED_RULE, used, None, Expiry(at(300).timestamp()), 700.0, 30.0))
    assert finding.summary == (
        "Access token accepted 11 min 40 s after it expired at 2026-11-24 09:05:00Z, from 79.200.1.10 "
        "(Berlin, DE, Deutsche Telekom AG, AS3320) at 2026-11-24 09:16:40Z: the resource server does not "
        "check exp (token at-1, subject alice, client portal)."
    )
    assert finding.rule is EXPIRED_RULE and finding.key == "at-1"
    assert finding.details == {"expired_at": "2026-11-24T09:05:00Z", "seconds_after_expiry": 700.0,
                               "clock_skew_s": 30.0}
