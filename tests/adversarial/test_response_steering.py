"""Automated response an attacker cannot steer: from events, through detection and the
policy, to what the executor runs.

- Protection bypass: a use of the admin's logged-out token that leaves out ``sub`` (or
  claims someone else's) must not turn the admin's protection into an automatic
  revocation of the admin's session. Lineage state knows whose token it is.
- Breaker self-DoS: one user replaying 21 of their own logged-out tokens must spend only
  their own budget: another user's automatic revocation still runs, and one breaker alert
  names the first user. Many principals at once still trip the global breaker.

Each attack has its benign twin.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.response.breaker import FLAG, PRINCIPALS_FLAG, RULE_ID
from pipeline.response.config import ResponseConfig
from pipeline.response.executor import Executor
from pipeline.store.sqlite import SqliteStore
from schemas.actions import Action
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from tests.factories import event, run
from tests.response.conftest import Clock, Recorder

AFTER_REVOCATION = "post_revocation_use.after_revocation"
CONFIG = ResponseConfig(enabled=True, routes={"*": "rec"}, protected_users=["admin"])


@pytest.fixture
def clock() -> Clock:
    return Clock()


def logged_out_and_used_again(user: str, n: int, t: float = 0.0, sub: str | None = "same") -> list[CanonicalEvent]:
    """``user`` logs in (``n`` sessions, one token each), logs out, and each token is accepted
    again two minutes later (beyond the propagation lag). ``sub`` is what the use claims:
    the user (``"same"``), a name per use (``"spread"``), another subject, or nothing."""
    events = []
    for i in range(n):
        tok, session = f"at-{user}-{i}", f"s-{user}-{i}"
        claimed = {"same": user, "spread": f"alias-{i}"}.get(sub or "", sub)
        events += [
            event("issued", t + i, token=tok, subject=user, client="portal", session=session, expires_in=3600),
            event("session_ended", t + i + 10, subject=user, client="portal", session=session),
            event("used", t + i + 130, token=tok, subject=claimed, client=None, session=session),
        ]
    return events


def respond(alerts: list[Alert], clock: Clock, config: ResponseConfig = CONFIG) -> tuple[
        SqliteStore, Recorder, list[Action], list[dict[str, Any]]]:
    """Detection's alerts, in time order, through the policy and the executor."""
    store, rec, raised = SqliteStore(":memory:", clock=clock), Recorder(), []
    executor = Executor(config, store, {"rec": rec}, clock=clock, on_alert=raised.append)  # type: ignore[dict-item]  # the Recorder double is duck-typed, not a Responder subclass
    ordered = sorted((a.to_json_dict() for a in alerts), key=lambda d: (d["@timestamp"], d["alert"]["id"]))
    planned = executor.submit(ordered)
    return store, rec, [store.get_action(a.id) or a for a in planned], raised  # as they ended


# -- protection from what is known -------------------------------------------------------


@pytest.mark.parametrize("claimed", [None, "eve"], ids=["no-sub", "someone-elses-sub"])
def test_the_admin_stays_protected_when_the_use_names_no_one_or_someone_else(
        claimed: str | None, clock: Clock) -> None:
    [alert] = run(logged_out_and_used_again("admin", 1, sub=claimed))
    assert alert.rule.id == AFTER_REVOCATION and alert.session.id == "s-admin-0"
    store, rec, [action], _ = respond([alert], clock)
    assert (action.mode, action.state) == ("approve", "awaiting_approval")
    assert "user admin is protected" in action.reason
    assert rec.calls == []  # the admin's session is not deleted


def test_an_unprotected_user_without_sub_is_revoked_as_configured(clock: Clock) -> None:
    """Benign twin: lineage names bob, who is not protected: automatic, as configured."""
    [alert] = run(logged_out_and_used_again("bob", 1, sub=None))
    assert (alert.user.id, alert.client.id) == ("bob", "portal")  # from lineage, not the use
    _, rec, [action], _ = respond([alert], clock)
    assert (action.mode, action.state) == ("auto", "succeeded")
    assert [(c.kind, c.id, c.user_id) for c in rec.calls] == [("session", "s-bob-0", "bob")]


def test_a_use_whose_owner_nothing_knows_waits_for_approval(clock: Clock) -> None:
    """Fail safe: no ``sub`` and no lineage (the token's issuance was never seen): the owner
    may be the admin, so the session is not revoked automatically."""
    events = [
        event("session_started", 0, subject=None, client=None, session="s-x"),
        event("session_ended", 10, subject=None, client=None, session="s-x"),
        event("used", 130, token="at-unseen", subject=None, client=None, session="s-x"),
    ]
    [alert] = run(events)
    assert alert.user.id is None
    _, rec, [action], _ = respond([alert], clock)
    assert (action.mode, action.state) == ("approve", "awaiting_approval")
    assert "user is unknown" in action.reason and rec.calls == []
    # with no protection configured there is nothing the unknown owner could be: as configured
    _, rec, [action], _ = respond([alert], clock, ResponseConfig(enabled=True, routes={"*": "rec"}))
    assert (action.mode, action.state) == ("auto", "succeeded")


def test_a_session_whose_lineage_names_two_owners_waits_for_approval(clock: Clock) -> None:
    """A token of eve's slipped into the admin's session (a forged issuance): a use there
    without ``sub`` of a token nothing else names cannot be pinned on either one."""
    events = [
        event("issued", 0, token="at-admin", subject="admin", client="portal", session="s-1", expires_in=3600),
        event("issued", 1, token="at-eve", subject="eve", client="portal", session="s-1", expires_in=3600),
        event("session_ended", 10, subject=None, client=None, session="s-1"),
        event("used", 130, token="at-other", subject=None, client=None, session="s-1"),
    ]
    [alert] = run(events)
    assert alert.user.id is None and alert.details["lineage_ambiguous"] is True
    _, rec, [action], _ = respond([alert], clock)
    assert action.state == "awaiting_approval" and "several owners" in action.reason and rec.calls == []


# -- breaker per principal and global ----------------------------------------------------


@pytest.mark.parametrize("claimed", ["same", "spread", None], ids=["own-sub", "a-sub-per-use", "no-sub"])
def test_one_users_self_revocations_leave_another_users_automatic_revocation_running(
        claimed: str | None, clock: Clock) -> None:
    """Whatever the uses claim (their own ``sub``, a new name each, none), lineage spends
    mallory's budget only."""
    alerts = run(logged_out_and_used_again("mallory", 21, sub=claimed) + logged_out_and_used_again("bob", 1, t=100))
    assert len(alerts) == 22
    store, rec, actions, raised = respond(alerts, clock)
    mallory = [a for a in actions if a.target.user_id == "mallory"]
    [bob] = [a for a in actions if a.target.user_id == "bob"]
    assert [a.state for a in mallory] == ["succeeded"] * 5 + ["awaiting_approval"] * 16
    assert (bob.mode, bob.state) == ("auto", "succeeded")
    assert len(rec.calls) == 6
    assert [(d["rule"]["id"], d["details"]["principal"]) for d in raised] == [(RULE_ID, "user:mallory")]
    assert [d["user"]["id"] for d in store.list_alerts(rule=RULE_ID)] == ["mallory"]
    assert store.get_flag(FLAG) is None and store.get_flag(PRINCIPALS_FLAG) is not None


def test_the_global_breaker_still_trips_when_many_principals_storm(clock: Clock) -> None:
    events: list[CanonicalEvent] = []
    for n in range(25):
        events += logged_out_and_used_again(f"user{n:02}", 1, t=n * 200)
    alerts = run(events)
    store, rec, actions, raised = respond(alerts, clock)
    assert [a.state for a in actions] == ["succeeded"] * 20 + ["awaiting_approval"] * 5
    assert len(rec.calls) == 20
    [doc] = raised
    assert (doc["rule"]["id"], doc["details"]["scope"]) == (RULE_ID, "global")
    assert doc["details"]["top_principals"] == "user:user00 (1), user:user01 (1), user:user02 (1)"
    assert store.get_flag(FLAG) is not None and store.get_flag(PRINCIPALS_FLAG) is None


def test_a_use_claiming_another_users_session_cannot_point_the_revocation_at_it(clock: Clock) -> None:
    """Mallory's own token is revoked; she uses it again claiming bob's session (`sid`). The
    session revoked is hers, as issuance recorded it, and only after approval."""
    events = [
        event("issued", 0, token="at-bob", subject="bob", client="portal", session="s-bob", expires_in=3600),
        event("issued", 1, token="at-m", subject="mallory", client="portal", session="s-m", expires_in=3600),
        event("revoked", 10, token="at-m", subject="mallory", session="s-m", revoke="token"),
        event("used", 140, token="at-m", subject="mallory", client="portal", session="s-bob"),
    ]
    [alert] = run(events)
    assert alert.rule.id == AFTER_REVOCATION and alert.session.id == "s-m"
    assert alert.details["claimed_session_id"] == "s-bob"
    _, rec, [action], _ = respond([alert], clock)
    assert (action.mode, action.state, action.target.id) == ("approve", "awaiting_approval", "s-m")
    assert rec.calls == []


def test_the_same_use_naming_its_own_session_is_revoked_automatically(clock: Clock) -> None:
    """Benign twin: the use names the token's own session."""
    events = [
        event("issued", 1, token="at-m", subject="mallory", client="portal", session="s-m", expires_in=3600),
        event("revoked", 10, token="at-m", subject="mallory", session="s-m", revoke="token"),
        event("used", 140, token="at-m", subject="mallory", client="portal", session="s-m"),
    ]
    [alert] = run(events)
    _, rec, [action], _ = respond([alert], clock)
    assert (action.mode, action.state) == ("auto", "succeeded") and "claimed_session_id" not in alert.details
    assert [(c.kind, c.id) for c in rec.calls] == [("session", "s-m")]
