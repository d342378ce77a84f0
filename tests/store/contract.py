"""Behaviour every AlertStore backend must show; subclassed per backend with a ``store`` fixture.

The fixture gives a fresh, empty store whose clock is ``clock`` (a ``Clock`` set to T0 + 1 day).
"""

from __future__ import annotations

from datetime import timedelta
from ipaddress import ip_network

import pytest

from pipeline.store.base import ActionConflict, AlertStore, StatusConflict
from pipeline.store.filters import AlertFilter
from schemas.actions import AuditEntry, Suppression
from tests.store.helpers import T0, action, alert_doc, at


class Clock:
    def __init__(self) -> None:
        self.now = T0 + timedelta(days=1)

    def __call__(self):  # a clock
        return self.now


def ids(alerts: list[dict]) -> list[str]:
    return [a["alert"]["id"] for a in alerts]


def suppression(**criteria) -> Suppression:
    created = criteria.pop("created", T0)
    return Suppression(reason="known scanner", actor="carol", created=created,
                       expires=criteria.pop("expires", created + timedelta(days=7)), **criteria)


class StoreContract:
    def test_round_trip_and_new_alerts_are_open(self, store: AlertStore) -> None:
        store.put_alerts([alert_doc("a1")])
        doc = store.get_alert("a1")
        assert doc is not None
        assert doc["alert"]["status"] == "open"
        assert doc["triage"] == {"disposition": None, "notes": [], "updated": None, "updated_by": None,
                                 "suppressed_by": None, "assignee": None, "links": []}
        assert doc["evidence"] == alert_doc("a1")["evidence"]
        assert store.get_alert("nope") is None

    def test_replay_updates_detection_fields_but_keeps_analyst_fields(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1")])
        store.set_status("a1", "closed", "bob", disposition="false_positive", note="test user")
        store.put_alerts([alert_doc("a1", count=3, summary="folded")])  # the replay says status "open"
        doc = store.get_alert("a1")
        assert doc is not None
        assert (doc["alert"]["status"], doc["alert"]["count"], doc["alert"]["summary"]) == ("closed", 3, "folded")
        assert doc["triage"]["disposition"] == "false_positive"
        assert doc["triage"]["notes"] == [{"time": "2026-11-25T10:00:00.000000Z", "actor": "bob", "text": "test user"}]
        assert ids(store.list_alerts(status="closed")) == ["a1"]
        assert store.list_alerts(status="open") == []

    def test_list_filters_and_order(self, store: AlertStore) -> None:
        store.put_alerts([
            alert_doc("a1", 0, user="alice"),
            alert_doc("a2", 10, rule="geo_divergence.impossible_travel", severity="medium", user="bob"),
            alert_doc("a3", 20, severity="critical", user="alice"),
            alert_doc("a4", 30, rule="geo_divergence.impossible_travel", user="carol"),
        ])
        store.set_status("a3", "acknowledged", "bob")
        assert ids(store.list_alerts()) == ["a4", "a3", "a2", "a1"]
        assert ids(store.list_alerts(rule="geo_divergence.impossible_travel")) == ["a4", "a2"]
        assert ids(store.list_alerts(severity="critical")) == ["a3"]
        assert ids(store.list_alerts(user="alice")) == ["a3", "a1"]
        assert ids(store.list_alerts(status="acknowledged")) == ["a3"]
        assert ids(store.list_alerts(status="open")) == ["a4", "a2", "a1"]
        assert ids(store.list_alerts(since=at(10))) == ["a4", "a3", "a2"]
        assert ids(store.list_alerts(user="alice", status="open")) == ["a1"]
        assert ids(store.list_alerts(limit=2)) == ["a4", "a3"]
        assert store.list_alerts(status="closed") == []

    def test_set_status_audits_with_the_actor(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1")])
        store.set_status("a1", "acknowledged", "alice", note="on it")
        clock.now += timedelta(minutes=5)
        doc = store.set_status("a1", "closed", "bob", disposition="true_positive", note="confirmed")
        assert doc["alert"]["status"] == "closed"
        assert doc["triage"]["updated_by"] == "bob"
        trail = store.audit_trail(alert_id="a1")
        assert [(e.verb, e.actor, e.result, e.why) for e in trail] == [
            ("alert.ack", "alice", "acknowledged", "on it"),
            ("alert.close", "bob", "closed", "confirmed"),
        ]
        assert trail[1].details == {"previous": "acknowledged", "disposition": "true_positive"}
        assert trail[1].time == T0 + timedelta(days=1, minutes=5)

    def test_set_status_refuses_unknown_ids_and_values(self, store: AlertStore) -> None:
        store.put_alerts([alert_doc("a1")])
        with pytest.raises(KeyError):
            store.set_status("nope", "closed", "bob")
        with pytest.raises(ValueError, match="unknown status"):
            store.set_status("a1", "resolved", "bob")
        with pytest.raises(ValueError, match="unknown disposition"):
            store.set_status("a1", "closed", "bob", disposition="maybe")
        assert store.audit_trail(alert_id="a1") == []

    def test_suppression_closes_matching_new_alerts_until_it_expires(self, store: AlertStore, clock: Clock) -> None:
        rule = suppression(rule_id="replay.refresh_reuse", ip="203.0.113.0/24",
                           created=clock.now, expires=clock.now + timedelta(hours=1))
        store.add_suppression(rule)
        store.put_alerts([
            alert_doc("hit"),
            alert_doc("other-ip", ip="198.51.100.9"),
            alert_doc("other-rule", rule="geo_divergence.impossible_travel"),
        ])
        assert ids(store.list_alerts(status="closed")) == ["hit"]
        hit = store.get_alert("hit")
        assert hit is not None and hit["triage"]["suppressed_by"] == rule.id
        [entry] = store.audit_trail(alert_id="hit")
        assert (entry.verb, entry.actor, entry.why, entry.details) == (
            "alert.suppressed", "carol", "known scanner", {"suppression": rule.id})
        clock.now += timedelta(hours=1)  # expired now
        store.put_alerts([alert_doc("late")])
        assert store.get_alert("late")["alert"]["status"] == "open"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        assert store.active_suppressions(clock.now) == []

    def test_suppression_does_not_override_an_analyst(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1")])
        store.set_status("a1", "acknowledged", "alice")
        store.add_suppression(suppression(user_id="alice", created=clock.now))
        store.put_alerts([alert_doc("a1", count=2)])
        assert store.get_alert("a1")["alert"]["status"] == "acknowledged"  # type: ignore[index]  # the alert is stored: a None fails the test just the same

    def test_active_suppressions(self, store: AlertStore) -> None:
        early = suppression(user_id="alice", created=at(0), expires=at(60))
        late = suppression(asn=64500, created=at(30), expires=at(120))
        store.add_suppression(late)
        store.add_suppression(early)
        assert store.active_suppressions(at(-1)) == []
        assert store.active_suppressions(at(45)) == [early, late]
        assert store.active_suppressions(at(60)) == [late]
        assert store.active_suppressions(at(120)) == []

    def test_actions_upsert_list_and_get(self, store: AlertStore) -> None:
        first = action("a1", "fam-1", created_minute=0)
        second = action("a1", "fam-2", created_minute=1)
        other = action("a2", "fam-3", created_minute=2, state="succeeded", next_minute=None)
        for a in (first, second, other):
            store.put_action(a)
        done = first.model_copy(update={"state": "succeeded", "attempts": 1, "next_attempt_at": None})
        store.put_action(done)
        assert store.get_action(first.id) == done
        assert store.get_action("act-nope") is None
        assert store.list_actions() == [other, second, done]
        assert store.list_actions(alert_id="a1") == [second, done]
        assert store.list_actions(state="succeeded") == [other, done]
        assert store.list_actions(alert_id="a1", state="pending") == [second]
        assert store.list_actions(limit=1) == [other]

    def test_due_actions_is_the_retry_queue_in_due_order(self, store: AlertStore) -> None:
        later = action("a1", "later", next_minute=5)
        failed = action("a1", "failed", state="failed", next_minute=3, attempts=2)
        unscheduled = action("a2", "unscheduled", next_minute=None, created_minute=1)
        now_due = action("a2", "now", next_minute=4)
        future = action("a3", "future", next_minute=60)
        waiting = action("a3", "waiting", state="awaiting_approval", next_minute=0)
        done = action("a3", "done", state="succeeded", next_minute=0)
        gave_up = action("a3", "gave-up", state="gave_up", next_minute=0)
        for a in (later, failed, unscheduled, now_due, future, waiting, done, gave_up):
            store.put_action(a)
        assert store.due_actions(at(5)) == [unscheduled, failed, now_due, later]
        assert store.due_actions(at(4)) == [unscheduled, failed, now_due]
        store.put_action(failed.model_copy(update={"state": "in_progress"}))
        assert store.due_actions(at(4)) == [unscheduled, now_due]

    def test_audit_trail_by_alert_and_action(self, store: AlertStore) -> None:
        a = action("a1", "fam-1")
        entries = [
            AuditEntry(time=at(2), actor="tokenwatch", verb="revoke.result", alert_id="a1", action_id=a.id,
                       target="family:fam-1", why="policy auto", result="succeeded", details={"status": 200}),
            AuditEntry(time=at(1), actor="tokenwatch", verb="revoke.attempt", alert_id="a1", action_id=a.id,
                       target="family:fam-1", why="policy auto", result="sent"),
            AuditEntry(time=at(3), actor="alice", verb="alert.ack", alert_id="a2", why="", result="acknowledged"),
            AuditEntry(time=at(4), actor="ops", verb="breaker.reset", why="storm over", result="closed"),
        ]
        for entry in entries:
            store.audit(entry)
        store.audit(entries[0])  # the same entry again is kept once
        assert store.audit_trail(alert_id="a1") == [entries[1], entries[0]]
        assert store.audit_trail(action_id=a.id) == [entries[1], entries[0]]
        assert store.audit_trail(alert_id="a2") == [entries[2]]
        assert store.audit_trail() == [entries[1], entries[0], entries[2], entries[3]]

    def test_remove_suppression(self, store: AlertStore, clock: Clock) -> None:
        gone, kept = suppression(user_id="alice", created=clock.now), suppression(user_id="bob", created=clock.now)
        store.add_suppression(gone)
        store.add_suppression(kept)
        assert store.remove_suppression(gone.id) == gone
        assert store.remove_suppression(gone.id) is None
        assert store.active_suppressions(clock.now) == [kept]
        store.put_alerts([alert_doc("a1", user="alice")])
        assert store.get_alert("a1")["alert"]["status"] == "open"  # type: ignore[index]  # the alert is stored: a None fails the test just the same

    def test_close_suppressed_closes_only_open_matching_alerts(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1", 0, user="bob"), alert_doc("a2", 1, user="bob"),
                          alert_doc("a3", 2, user="bob"), alert_doc("a4", 3, user="alice")])
        store.set_status("a2", "acknowledged", "carol")
        store.set_status("a3", "closed", "carol", disposition="true_positive")
        rule = suppression(user_id="bob", created=clock.now)
        store.add_suppression(rule)
        assert store.close_suppressed(rule) == ["a1"]
        statuses = {i: (d["alert"]["status"], d["triage"]["suppressed_by"])
                    for i in ("a1", "a2", "a3", "a4") if (d := store.get_alert(i))}
        assert statuses == {"a1": ("closed", rule.id), "a2": ("acknowledged", None), "a3": ("closed", None),
                            "a4": ("open", None)}
        assert ids(store.list_alerts(status="open")) == ["a4"]
        [entry] = [e for e in store.audit_trail(alert_id="a1") if e.verb == "alert.suppressed"]
        assert (entry.actor, entry.why, entry.details) == ("carol", "known scanner", {"suppression": rule.id})
        assert store.close_suppressed(rule) == []

    def test_the_alert_response_state_follows_its_actions(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1")])
        assert store.get_alert("a1")["response"]["state"] == "pending"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        waiting = action("a1", "fam-a1", state="awaiting_approval", next_minute=None)
        store.put_action(waiting)
        response = store.get_alert("a1")["response"]  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        assert response == {"action": "revoke_family", "state": "awaiting_approval"}
        store.put_alerts([alert_doc("a1", count=2)])  # a fold or replay says "pending" again
        assert store.get_alert("a1")["response"]["state"] == "awaiting_approval"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        assert store.list_alerts()[0]["response"]["state"] == "awaiting_approval"
        store.put_action(waiting.model_copy(update={"state": "succeeded", "updated": clock.now}))
        assert store.get_alert("a1")["response"]["state"] == "succeeded"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        # an action stored before its alert (the executor ran first): the alert arrives with the state
        store.put_action(action("a2", "fam-a2", state="gave_up", next_minute=None))
        store.put_alerts([alert_doc("a2")])
        assert store.get_alert("a2")["response"]["state"] == "gave_up"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        assert store.get_alert("a2")["alert"]["status"] == "open"  # type: ignore[index]  # the alert is stored: a None fails the test just the same

    def test_approve_deny_cancel_are_checked_atomic_and_audited(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1"), alert_doc("a2"), alert_doc("a3")])
        waiting = action("a1", "fam-a1", state="awaiting_approval", next_minute=None)
        denied = action("a2", "fam-a2", state="awaiting_approval", next_minute=None)
        retrying = action("a3", "fam-a3", state="failed", next_minute=30, attempts=2)
        for a in (waiting, denied, retrying):
            store.put_action(a)
        assert store.due_actions(clock.now) == [retrying]

        approved = store.transition_action(waiting.id, "approve", "alice", note="confirmed with the user",
                                           responder="keycloak")
        assert (approved.state, approved.next_attempt_at, approved.actor, approved.responder, approved.attempts) == (
            "pending", clock.now, "alice", "keycloak", 0)
        assert store.get_action(waiting.id) == approved
        assert store.due_actions(clock.now) == [retrying, approved]
        assert store.get_alert("a1")["response"]["state"] == "pending"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        with pytest.raises(ActionConflict, match="is pending: approve applies only to an action that is awaiting_app"):
            store.transition_action(waiting.id, "approve", "bob")
        assert store.get_action(waiting.id) == approved

        assert store.transition_action(denied.id, "deny", "bob").state == "denied"
        assert store.get_alert("a2")["response"]["state"] == "denied"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        with pytest.raises(ActionConflict):
            store.transition_action(denied.id, "approve", "alice")
        cancelled = store.transition_action(retrying.id, "cancel", "carol", note="user left")
        assert (cancelled.state, cancelled.next_attempt_at) == ("cancelled", None)
        assert store.due_actions(clock.now) == [approved]
        assert store.get_alert("a3")["response"]["state"] == "cancelled"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        with pytest.raises(KeyError):
            store.transition_action("act-nope", "cancel", "carol")
        trail = [(e.verb, e.actor, e.result, e.why, e.details["previous"])
                 for a in (waiting, denied, retrying) for e in store.audit_trail(action_id=a.id)]
        assert trail == [("action.approve", "alice", "pending", "confirmed with the user", "awaiting_approval"),
                         ("action.deny", "bob", "denied", "analyst deny", "awaiting_approval"),
                         ("action.cancel", "carol", "cancelled", "user left", "failed")]

    def test_find_alerts_applies_every_filter_alike(self, store: AlertStore, clock: Clock) -> None:
        """Both backends narrow by their index and decide with the one predicate: same answers."""
        a1 = alert_doc("a1", 0, user="u-1", client="portal", ip="203.0.113.7")
        a1["user"]["name"] = "Alice.Smith@Example.com"
        a2 = alert_doc("a2", 10, rule="replay.concurrent_use", severity="critical", user="u-2", client="cli",
                       ip="198.51.100.9")
        a3 = alert_doc("a3", 20, rule="geo_divergence.impossible_travel", severity="medium", user="u-3",
                       ip="2001:db8::5")
        a4 = alert_doc("a4", 30, rule="replaying.other", severity="low", user="u-4")
        store.put_alerts([a1, a2, a3, a4])
        store.set_status("a2", "acknowledged", "bob")
        store.set_status("a3", "closed", "bob", disposition="benign")
        store.assign("a1", "carol", "bob")

        def find(**criteria: object) -> list[str]:
            return ids(store.find_alerts(AlertFilter(**criteria), limit=10))  # type: ignore[arg-type]  # criteria are typed object; each call passes AlertFilter's own fields

        assert find() == ["a4", "a3", "a2", "a1"]
        assert find(rules=("replay",)) == ["a2", "a1"]  # a prefix on the dot: not replaying.*
        assert find(rules=("replay.*",)) == ["a2", "a1"]
        assert find(rules=("*travel*", "replay.concurrent_use")) == ["a3", "a2"]
        assert find(rules=("replay.refresh_reuse",)) == ["a1"]
        assert find(severities=("critical", "medium")) == ["a3", "a2"]
        assert find(statuses=("open", "closed")) == ["a4", "a3", "a1"]
        assert find(statuses=("acknowledged", "closed")) == ["a3", "a2"]
        assert find(users=("u-2",)) == ["a2"]
        assert find(users=("alice.smith@example.COM", "u-4")) == ["a4", "a1"]
        assert find(clients=("cli",)) == ["a2"]
        assert find(networks=(ip_network("203.0.113.0/24"), ip_network("2001:db8::/32"))) == ["a4", "a3", "a1"]
        assert find(networks=(ip_network("198.51.100.9/32"),)) == ["a2"]
        assert find(tokens=("at-a3",)) == ["a3"]
        assert find(tokens=("fam-a2",)) == ["a2"]
        assert find(tokens=("at-a…",)) == ["a4", "a3", "a2", "a1"]
        assert find(assignees=("carol",)) == ["a1"]
        assert find(since=at(10), until=at(20)) == ["a3", "a2"]
        assert find(until=at(0)) == ["a1"]
        assert find(rules=("replay",), statuses=("open",), since=at(0)) == ["a1"]
        assert ids(store.find_alerts(AlertFilter(), limit=2)) == ["a4", "a3"]
        assert ids(store.list_alerts(user="Alice.Smith@Example.com")) == ["a1"]

    def test_find_alerts_pages_through_many_candidates(self, store: AlertStore) -> None:
        store.put_alerts([alert_doc(f"p{i:04d}", i, user="bob" if i % 100 == 0 else "alice") for i in range(1200)])
        assert ids(store.find_alerts(AlertFilter(users=("bob",)), limit=50)) == [
            f"p{i:04d}" for i in range(1100, -1, -100)]

    def test_ack_refuses_a_closed_alert_unless_reopened(self, store: AlertStore) -> None:
        store.put_alerts([alert_doc("a1")])
        store.set_status("a1", "closed", "bob", disposition="benign")
        with pytest.raises(StatusConflict, match="alert a1 is closed"):
            store.set_status("a1", "acknowledged", "alice")
        assert store.get_alert("a1")["alert"]["status"] == "closed"  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        assert [e.verb for e in store.audit_trail(alert_id="a1")] == ["alert.close"]
        assert store.set_status("a1", "acknowledged", "alice", reopen=True)["alert"]["status"] == "acknowledged"
        assert store.audit_trail(alert_id="a1")[-1].details["previous"] == "closed"

    def test_assign_and_links_are_kept_audited_and_survive_a_replay(self, store: AlertStore, clock: Clock) -> None:
        store.put_alerts([alert_doc("a1")])
        store.set_status("a1", "acknowledged", "alice", link="https://tickets.example/SOC-1")
        store.assign("a1", "carol", "alice", note="on call")
        store.put_alerts([alert_doc("a1", count=2)])
        doc = store.get_alert("a1")
        assert doc is not None and doc["triage"]["assignee"] == "carol"
        assert doc["triage"]["links"] == [
            {"time": "2026-11-25T10:00:00.000000Z", "actor": "alice", "url": "https://tickets.example/SOC-1"}]
        store.assign("a1", None, "bob")
        assert store.get_alert("a1")["triage"]["assignee"] is None  # type: ignore[index]  # the alert is stored: a None fails the test just the same
        trail = [(e.verb, e.actor, e.target, e.result, e.details) for e in store.audit_trail(alert_id="a1")]
        assert trail == [
            ("alert.ack", "alice", None, "acknowledged",
             {"previous": "open", "disposition": None, "link": "https://tickets.example/SOC-1"}),
            ("alert.assign", "alice", "carol", "assigned", {"previous": None}),
            ("alert.assign", "bob", None, "unassigned", {"previous": "carol"}),
        ]
        with pytest.raises(KeyError):
            store.assign("nope", "carol", "bob")

    def test_ids_by_prefix_and_known_ids(self, store: AlertStore) -> None:
        store.put_alerts([alert_doc("tw-abc1"), alert_doc("tw-abc2"), alert_doc("tw-abd3")])
        assert store.alert_ids_with_prefix("tw-abc") == ["tw-abc1", "tw-abc2"]
        assert store.alert_ids_with_prefix("tw-abd") == ["tw-abd3"]
        assert store.alert_ids_with_prefix("tw-x") == []
        assert store.known_alert_ids(["tw-abc1", "tw-new", "tw-abd3"]) == {"tw-abc1", "tw-abd3"}
        assert store.known_alert_ids([]) == set()

    def test_flags(self, store: AlertStore) -> None:
        assert store.get_flag("breaker") is None
        store.set_flag("breaker", '{"state": "open"}')
        store.set_flag("breaker", '{"state": "tripped"}')
        assert store.get_flag("breaker") == '{"state": "tripped"}'
        store.set_flag("breaker", None)
        store.set_flag("never-set", None)
        assert store.get_flag("breaker") is None
