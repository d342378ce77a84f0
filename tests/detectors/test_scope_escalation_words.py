"""New privileged scopes, deciding and wording apart (issue 15, "Decide, then describe"):
``ScopeEscalationDetector.judge_new_privilege`` returns frozen facts, ``new_privilege_finding``
and ``new_privilege_summary`` word hand-built facts, exactly. (Grant widening and scope
overreach: tests/detectors/test_scope_escalation.py.)"""

from __future__ import annotations

from typing import Any

from detectors.scope_escalation import (
    NEW_PRIVILEGED_SCOPE,
    FirstHeld,
    NewPrivilege,
    ScopeEscalationDetector,
    new_privilege_finding,
    new_privilege_summary,
)
from detectors.scope_escalation_config import ScopeEscalationConfig
from detectors.state import StateStore
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, TokenType
from tests.factories import event


def issue(t: float, token: str = "at-1", **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "scopes": ("read",), "expires_in": 3600.0, **kw}
    return event("issued", t, token=token, **kw)


def _detector() -> ScopeEscalationDetector:
    return ScopeEscalationDetector(ScopeEscalationConfig(learning_period_s=60))


# -- deciding ----------------------------------------------------------------------------
def test_judge_new_privilege_returns_what_is_new_to_the_subject_and_the_client() -> None:
    detector, state = _detector(), StateStore()
    assert detector.judge_new_privilege(issue(0), state) is None  # first seen: learning starts
    trigger = issue(1000, token="at-2", family="fam-2", scopes=("read", "admin", "Directory.ReadWrite.All"))
    assert detector.judge_new_privilege(trigger, state) == NewPrivilege(
        trigger, FirstHeld(("Directory.ReadWrite.All", "admin"), 1000.0),
        FirstHeld(("Directory.ReadWrite.All", "admin"), 1000.0),
    )
    # Held from now on: the same grant again is nothing new.
    assert detector.judge_new_privilege(issue(2000, token="at-3", scopes=("admin",)), state) is None


def test_judge_new_privilege_names_only_the_party_the_scope_is_new_to() -> None:
    detector, state = _detector(), StateStore()
    detector.judge_new_privilege(issue(0, token="at-b", subject="bob", client="console", scopes=("admin",)), state)
    detector.judge_new_privilege(issue(0, client="console"), state)
    trigger = issue(1000, token="at-2", client="console", scopes=("admin",))
    assert detector.judge_new_privilege(trigger, state) == NewPrivilege(trigger, FirstHeld(("admin",), 1000.0), None)


def test_judge_new_privilege_learns_silently_during_the_learning_period() -> None:
    detector, state = _detector(), StateStore()
    detector.judge_new_privilege(issue(0), state)
    assert detector.judge_new_privilege(issue(30, token="at-2", scopes=("admin",)), state) is None
    assert detector.judge_new_privilege(issue(1000, token="at-3", scopes=("admin",)), state) is None


# -- wording -----------------------------------------------------------------------------
def test_new_privileges_are_worded_exactly() -> None:
    trigger = issue(1000, token="at-2", family="fam-2", scopes=("read", "admin", "root"))
    both = NewPrivilege(trigger, FirstHeld(("admin",), 1000.0), FirstHeld(("admin", "root"), 273_600.0))
    assert new_privilege_summary(both) == (
        "Privileged scopes admin root issued for the first time to subject alice (seen for 16 min 40 s) and "
        "client portal (seen for 3 d 4 h) at 2026-11-24 09:16:40Z (token at-2)."
    )
    assert new_privilege_summary(NewPrivilege(trigger, FirstHeld(("admin",), 1000.0), None)) == (
        "Privileged scope admin issued for the first time to subject alice (seen for 16 min 40 s), "
        "via client portal at 2026-11-24 09:16:40Z (token at-2)."
    )
    assert new_privilege_summary(NewPrivilege(trigger, None, FirstHeld(("root",), 120.0))) == (
        "Privileged scope root issued for the first time to client portal (seen for 2 min), "
        "for subject alice at 2026-11-24 09:16:40Z (token at-2)."
    )
    anonymous_client = issue(1000, token="at-2", client=None, scopes=("admin",))
    assert new_privilege_summary(NewPrivilege(anonymous_client, FirstHeld(("admin",), 1000.0), None)) == (
        "Privileged scope admin issued for the first time to subject alice (seen for 16 min 40 s), "
        "via client ? at 2026-11-24 09:16:40Z (token at-2)."
    )
    refreshed = event("refreshed", 1000, token="rt-2", parent="rt-1", family="fam-1", token_type=TokenType.REFRESH,
                      scopes=("admin",))
    assert new_privilege_summary(NewPrivilege(refreshed, None, FirstHeld(("admin",), 1000.0))) == (
        "Privileged scope admin issued by a refresh for the first time to client portal (seen for 16 min 40 s), "
        "for subject alice at 2026-11-24 09:16:40Z (token rt-2)."
    )


def test_new_privilege_finding_cites_the_issue_and_details_each_party() -> None:
    trigger = issue(1000, token="at-2", family="fam-2", scopes=("read", "admin", "root"))
    both = NewPrivilege(trigger, FirstHeld(("admin",), 1000.0), FirstHeld(("admin", "root"), 273_600.0))
    finding = new_privilege_finding(both)
    assert finding.summary == new_privilege_summary(both)
    assert (finding.rule, finding.event, finding.key, finding.family_id) == (NEW_PRIVILEGED_SCOPE, trigger, "at-2",
                                                                             "fam-2")
    assert finding.evidence == (EvidenceItem.of(trigger),)
    assert finding.details == {"new_scopes": "admin root", "new_for_subject": "admin", "new_for_client": "admin root"}
    client_only = new_privilege_finding(NewPrivilege(trigger, None, FirstHeld(("root",), 120.0)))
    assert client_only.details == {"new_scopes": "root", "new_for_subject": None, "new_for_client": "root"}
