"""Scope escalation: attacks and their benign twins for each rule."""

from __future__ import annotations

from typing import Any

from detectors.scope_escalation import (
    HELD_SCOPES,
    Overreach,
    ScopeEscalationDetector,
    Widening,
    judge_late_issue,
    judge_use_scopes,
    judge_widening,
    overreach_finding,
    widening_finding,
)
from detectors.scope_escalation_config import EXCHANGE_GRANT_TYPES
from detectors.state import StateStore
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, TokenType
from tests.factories import engine, event, rule_hits, run

NOT_GRANTED = "scope_escalation.scope_not_granted"
WIDENING = "scope_escalation.grant_widening"
NEW_PRIVILEGED = "scope_escalation.new_privileged_scope"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
FAST_LEARNING = {"scope_escalation": {"learning_period_s": 60}}


def issue(t: float = 0, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "expires_in": 3600.0, **kw}
    return event("issued", t, token=token, **kw)


def use(t: float, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "required": ("read",), **kw}
    return event("used", t, token=token, **kw)


def refresh(t: float, token: str, parent: str, **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "expires_in": 3600.0,
          "token_type": TokenType.REFRESH, "grant_type": "refresh_token", **kw}
    return event("refreshed", t, token=token, parent=parent, **kw)


def login(t: float = 0, **kw: Any) -> list[CanonicalEvent]:
    """What a login mints: an access and a refresh token in one family."""
    return [issue(t, **kw), issue(t, token="rt-1", token_type=TokenType.REFRESH, **kw)]


# -- scope_not_granted --------------------------------------------------------------
def test_use_with_scope_beyond_grant_alerts() -> None:
    issued = issue(scopes=("read",))
    trigger = use(10, scopes=("read", "write"), required=("write",))
    alerts = run([issued, trigger])
    assert rule_hits(alerts) == [(NOT_GRANTED, "at-1")]
    alert = alerts[0]
    assert alert.alert.severity == "high" and alert.alert.risk_score == 80
    assert alert.response.action == "revoke_token" and alert.threat.technique[0].id == "T1548"
    assert alert.alert.summary.startswith("Token accepted for GET /api with scope write beyond those granted at issue (read)")
    assert alert.alert.summary.endswith("(token at-1, subject alice, client portal).")
    assert alert.details["extra_scopes"] == "write"
    assert [item.event_id for item in alert.evidence] == [issued.event_id, trigger.event_id]


def test_required_scope_beyond_grant_alerts() -> None:
    assert rule_hits(run([issue(), use(10, scopes=("read",), required=("delete",))])) == [(NOT_GRANTED, "at-1")]


def test_without_issue_required_scope_not_carried_by_token_alerts() -> None:
    alerts = run([use(10, scopes=("read",), required=("write",))])
    assert rule_hits(alerts) == [(NOT_GRANTED, "at-1")]
    assert "its issue was not seen" in alerts[0].alert.summary


def test_use_with_scopes_equal_to_granted_is_benign() -> None:
    events = [issue(scopes=("read", "write")), use(10, scopes=("read", "write"), required=("write",)),
              use(20, scopes=("write", "read"), required=())]
    assert run(events) == []


def test_failed_use_with_extra_scopes_is_benign() -> None:
    assert run([issue(), use(10, scopes=("read", "write"), required=("write",), success=False)]) == []


def test_without_issue_or_presented_scopes_nothing_is_known() -> None:
    assert run([use(10, scopes=(), required=("write",))]) == []
    assert run([use(10, scopes=("read", "write"), required=("write",))]) == []


def test_extra_scope_uses_fold_and_duplicates_count_once() -> None:
    second = use(20, scopes=("read", "write"))
    alerts = run([issue(), use(10, scopes=("read", "write")), second, second])
    assert rule_hits(alerts) == [(NOT_GRANTED, "at-1")]
    assert alerts[0].alert.count == 2


def test_out_of_order_issue_within_lateness_is_used_as_the_grant() -> None:
    # the use arrives first; the issue (earlier in event time) still defines the grant
    events = [use(3, scopes=("read", "write")), issue(0, scopes=("read",))]
    assert rule_hits(run(events)) == [(NOT_GRANTED, "at-1")]
    assert run([use(3, scopes=("read",)), issue(0, scopes=("read",))]) == []


# -- grant_widening -----------------------------------------------------------------
def test_refresh_returning_more_scope_alerts() -> None:
    events = [*login(scopes=("read",)), refresh(100, "rt-2", "rt-1", scopes=("read", "write"))]
    alerts = run(events)
    assert rule_hits(alerts) == [(WIDENING, "rt-2")]
    alert = alerts[0]
    assert alert.alert.risk_score == 85 and alert.response.action == "revoke_family"
    assert alert.token.family_id == "fam-1"
    assert alert.alert.summary.startswith("Refresh widened the grant: minted a token with scope write beyond the grant (read)")
    assert "(token rt-1 → rt-2, subject alice" in alert.alert.summary


def test_refresh_widening_audience_alerts() -> None:
    events = [*login(audience=("api",)), refresh(100, "at-2", "rt-1", token_type=TokenType.ACCESS,
                                                  audience=("admin-api", "api"))]
    alerts = run(events)
    assert rule_hits(alerts) == [(WIDENING, "at-2")]
    assert alerts[0].details["extra_audience"] == "admin-api"


def test_down_scoping_refresh_is_benign() -> None:
    events = [*login(scopes=("read", "write")), refresh(100, "rt-2", "rt-1", scopes=("read",)),
              refresh(200, "at-2", "rt-2", token_type=TokenType.ACCESS, scopes=("read",))]
    assert run(events) == []


def test_refresh_back_up_to_the_original_grant_is_benign() -> None:
    # RFC 6749 §6: a refresh may ask again for anything originally granted
    events = [*login(scopes=("read", "write")), refresh(100, "rt-2", "rt-1", scopes=("read",)),
              refresh(200, "rt-3", "rt-2", scopes=("read", "write"))]
    assert run(events) == []


def test_refresh_of_an_unseen_grant_is_not_judged() -> None:
    assert run([refresh(100, "rt-2", "rt-1", scopes=("read", "write"))]) == []


def test_token_exchange_widening_audience_alerts() -> None:
    events = [issue(audience=("api",)),
              issue(10, token="at-x", family=None, grant_type=EXCHANGE, parent="at-1", audience=("api", "billing"))]
    alerts = run(events)
    assert rule_hits(alerts) == [(WIDENING, "at-x")]
    assert alerts[0].alert.summary.startswith("Token exchange widened the grant")
    assert "(token at-1 → at-x, subject alice" in alerts[0].alert.summary


def test_token_exchange_widening_scope_alerts() -> None:
    events = [issue(audience=("api",)), issue(10, token="at-x", family=None, grant_type="token_exchange",
                                              parent="at-1", audience=("billing",), scopes=("read", "write"))]
    assert rule_hits(run(events)) == [(WIDENING, "at-x")]


def test_token_exchange_to_another_single_audience_is_benign() -> None:
    events = [issue(audience=("api",)),
              issue(10, token="at-x", family=None, grant_type=EXCHANGE, parent="at-1", audience=("billing",))]
    assert run(events) == []


# -- new_privileged_scope -----------------------------------------------------------
def test_first_privileged_scope_after_learning_alerts() -> None:
    events = [*login(scopes=("read",)), issue(1000, token="at-2", session="s-2", family="fam-2",
                                              scopes=("read", "admin"))]
    alerts = run(events, config=FAST_LEARNING)
    assert rule_hits(alerts) == [(NEW_PRIVILEGED, "at-2")]
    alert = alerts[0]
    assert alert.alert.severity == "medium" and alert.alert.risk_score == 55
    assert alert.response.action == "none" and alert.threat.technique[0].id == "T1098"
    assert alert.details["new_for_subject"] == "admin" and alert.details["new_for_client"] == "admin"
    assert alert.alert.summary == (
        "Privileged scope admin issued for the first time to subject alice (seen for 16 min 40 s) and client portal "
        "(seen for 16 min 40 s) at 2026-11-24 09:16:40Z (token at-2)."
    )


def test_privileged_scope_new_for_the_subject_only() -> None:
    events = [issue(0, token="at-b", subject="bob", client="console", session="s-b", family="fam-b",
                    scopes=("Directory.ReadWrite.All",)),
              issue(0, client="console", scopes=("read",)),
              issue(1000, token="at-2", client="console", session="s-2", family="fam-2",
                    scopes=("Directory.ReadWrite.All",))]
    alerts = run(events, config=FAST_LEARNING)
    assert rule_hits(alerts) == [(NEW_PRIVILEGED, "at-2")]
    assert alerts[0].details["new_for_subject"] == "Directory.ReadWrite.All"
    assert alerts[0].details["new_for_client"] is None
    assert alerts[0].alert.summary.startswith(
        "Privileged scope Directory.ReadWrite.All issued for the first time to subject alice (seen for 16 min 40 s), "
        "via client console at ")


def test_privileged_scope_held_before_is_benign() -> None:
    events = [issue(0, scopes=("read", "admin")),
              issue(1000, token="at-2", session="s-2", family="fam-2", scopes=("read", "admin"))]
    assert run(events, config=FAST_LEARNING) == []


def test_privileged_scope_presented_at_use_counts_as_held() -> None:
    events = [use(0, scopes=("admin",), required=("admin",)),
              issue(1000, token="at-2", session="s-2", family="fam-2", scopes=("admin",))]
    assert run(events, config=FAST_LEARNING) == []


def test_privileged_scope_during_learning_is_learned_silently() -> None:
    events = [issue(0, scopes=("read",)),
              issue(30, token="at-2", session="s-2", family="fam-2", scopes=("read", "admin")),
              issue(1000, token="at-3", session="s-3", family="fam-3", scopes=("read", "admin"))]
    assert run(events, config=FAST_LEARNING) == []


def test_default_learning_period_is_a_week() -> None:
    events = [issue(0, scopes=("read",)),
              issue(1000, token="at-2", session="s-2", family="fam-2", scopes=("read", "admin"))]
    assert run(events) == []


def test_privileged_patterns_are_configurable() -> None:
    events = [issue(0, scopes=("read",)),
              issue(1000, token="at-2", session="s-2", family="fam-2", scopes=("read", "billing:refund"))]
    config = {"scope_escalation": {"learning_period_s": 60, "privileged_scopes": ["billing:*"]}}
    assert rule_hits(run(events, config=config)) == [(NEW_PRIVILEGED, "at-2")]
    assert run(events, config=FAST_LEARNING) == []


def test_default_privileged_patterns() -> None:
    detector = ScopeEscalationDetector()
    scopes = ("admin:org", "delete_repo", "Directory.ReadWrite.All", "Mail.Read", "openid", "offline_access",
              "orders:write:all", "read", "https://www.googleapis.com/auth/cloud-platform", "user:admin")
    assert detector._privileged(tuple(sorted(scopes))) == {  # noqa: SLF001 -- unit test of the scope classifier
        "admin:org", "delete_repo", "Directory.ReadWrite.All", "orders:write:all",
        "https://www.googleapis.com/auth/cloud-platform", "user:admin",
    }


def test_held_scopes_are_forgotten_after_retention() -> None:
    eng = engine({"scope_escalation": {"retention_s": 3600}}, allowed_lateness_s=0, max_lead_s=86_400)
    for ev in [issue(0, scopes=("admin",)), issue(20_000, token="at-9", subject="bob", session="s-9",
                                                  family="fam-9", client="cli")]:
        eng.submit(ev)
    subjects = eng.state.table("scope_escalation", "subjects", HELD_SCOPES)
    clients = eng.state.table("scope_escalation", "clients", HELD_SCOPES)
    assert "alice" not in subjects and "portal" not in clients
    assert "bob" in subjects


def test_process_ignores_other_kinds() -> None:
    detector = ScopeEscalationDetector()
    state = StateStore()
    assert detector.process(event("revoked", 0, token="at-1", revoke="token"), state) == []
    assert state.tables == {}


# -- deciding and wording apart (issue 15: decide, then describe) -------------------
def _applied(*events: CanonicalEvent) -> StateStore:
    """Lineage state as the engine holds it when the next event reaches ``process``."""
    state = StateStore()
    for ev in events:
        state.apply(ev)
    return state


def test_judge_widening_returns_the_facts_of_a_widening_refresh() -> None:
    grant = login(scopes=("read",), audience=("api",))
    widening = refresh(100, "rt-2", "rt-1", scopes=("write", "read"), audience=("api", "admin-api"))
    found = judge_widening(widening, _applied(*grant), EXCHANGE_GRANT_TYPES)
    assert found is not None
    assert (found.event, found.family_id, found.exchange) == (widening, "fam-1", False)
    assert found.parent is not None and found.parent.token_id == "rt-1"
    assert (found.extra_scopes, found.allowed_scopes) == (("write",), frozenset({"read"}))
    assert (found.extra_audience, found.allowed_audience) == (("admin-api",), frozenset({"api"}))


def test_judge_widening_finds_nothing_in_the_benign_twins() -> None:
    """The refresh above keeping its grant, a down-scoping one, and an exchange that swaps its
    single audience (what an exchange is for)."""
    grant = _applied(*login(scopes=("read", "write"), audience=("api",)))
    same = refresh(100, "rt-2", "rt-1", scopes=("write", "read"), audience=("api",))
    assert judge_widening(same, grant, EXCHANGE_GRANT_TYPES) is None
    assert judge_widening(refresh(100, "rt-2", "rt-1", scopes=("read",)), grant, EXCHANGE_GRANT_TYPES) is None
    swap = issue(10, token="at-x", family=None, grant_type=EXCHANGE, parent="at-1", audience=("billing",))
    assert judge_widening(swap, _applied(issue(audience=("api",))), EXCHANGE_GRANT_TYPES) is None


def test_widening_finding_words_a_hand_built_match_exactly() -> None:
    minted = refresh(100, "rt-2", "rt-1", scopes=("read", "write", "admin"), audience=("api", "billing"))
    match = Widening(minted, None, "fam-1", False, ("write", "admin"), frozenset({"read"}),
                     ("billing",), frozenset({"api"}))
    finding = widening_finding(match)
    assert finding.summary == (
        "Refresh widened the grant: minted a token with scopes admin write beyond the grant (read) and audience "
        "billing beyond api at 2026-11-24 09:01:40Z; RFC 6749 §6 lets a refresh only keep or narrow scope "
        "(token rt-1 → rt-2, subject alice, client portal, family fam-1)."
    )
    assert (finding.rule.id, finding.event, finding.key, finding.family_id) == (WIDENING, minted, "rt-2", "fam-1")
    assert finding.evidence == (EvidenceItem.of(minted),)
    assert finding.details == {
        "via": "refresh", "parent_token_id": "rt-1", "extra_scopes": "write admin", "granted_scopes": "read",
        "extra_audience": "billing", "granted_audience": "api",
    }
    exchange = widening_finding(Widening(minted, None, None, True, (), frozenset(), ("billing",), frozenset({"api"})))
    assert exchange.summary == (
        "Token exchange widened the grant: minted a token with audience billing beyond api at 2026-11-24 09:01:40Z; "
        "an exchanged token may not exceed its subject token (token rt-1 → rt-2, subject alice, client portal, "
        "family ?)."
    )
    assert exchange.details["via"] == "token_exchange" and exchange.details["extra_scopes"] is None


def test_judge_use_scopes_returns_the_facts_and_nothing_for_the_benign_twin() -> None:
    granted = _applied(issue(scopes=("read",)))
    trigger = use(10, scopes=("read", "write"), required=("delete",))
    found = judge_use_scopes(trigger, granted)
    assert found is not None
    assert (found.use, found.extra, found.granted, found.recorded, found.issue) == (
        trigger, ("write", "delete"), frozenset({"read"}), None, None)
    assert found.token_state is not None and found.token_state.token_id == "at-1"
    assert judge_use_scopes(use(10, scopes=("read",), required=("read",)), granted) is None


def test_judge_late_issue_re_judges_the_recorded_uses_it_covers() -> None:
    early, within = use(10, scopes=("read", "write")), use(20, scopes=("read",))
    late_issue = issue(5, scopes=("read",))
    [found] = judge_late_issue(late_issue, _applied(early, within))
    assert (found.use.event_id, found.extra, found.granted, found.issue) == (
        early.event_id, ("write",), frozenset({"read"}), late_issue)
    assert found.recorded is not None and found.recorded.event_id == early.event_id
    assert judge_late_issue(issue(5, scopes=("read", "write")), _applied(early, within)) == ()


def test_overreach_finding_words_hand_built_matches_exactly() -> None:
    trigger = use(10, scopes=("read",), required=("write",))
    carried = overreach_finding(Overreach(trigger, None, ("write",), None))
    assert carried.summary == (
        "Token accepted for GET /api with scope write beyond those carried by the token (read; its issue was not "
        "seen), at 2026-11-24 09:00:10Z (token at-1, subject alice, client portal)."
    )
    assert (carried.rule.id, carried.key, carried.family_id, carried.evidence) == (
        NOT_GRANTED, "at-1", "fam-1", (EvidenceItem.of(trigger),))
    assert carried.details == {"extra_scopes": "write", "granted_scopes": None, "presented_scopes": "read",
                               "required_scopes": "write", "issue_seen": False}
    granted = overreach_finding(Overreach(trigger, None, ("write",), frozenset({"read", "openid"})))
    assert "write beyond those granted at issue (openid read), at " in granted.summary
    assert granted.details["granted_scopes"] == "openid read" and granted.details["issue_seen"] is True
