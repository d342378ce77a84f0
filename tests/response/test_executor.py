"""Executor: idempotency, audit, retries with backoff, give-up, breaker, dry run, revoked events."""

from __future__ import annotations

from datetime import timedelta

from pipeline.response.breaker import FLAG, RULE_ID
from pipeline.response.config import ResponseConfig
from pipeline.response.executor import Executor
from pipeline.response.responders.base import ResponderResult
from pipeline.store.sqlite import SqliteStore
from schemas.events import CanonicalEvent
from tests.response.conftest import Clock, Recorder, alert_doc

CONFIG = ResponseConfig(enabled=True, routes={"*": "rec"}, max_auto_per_minute=5, max_attempts=3,
                        backoff_base_s=2.0)


def executor(store: SqliteStore, clock: Clock, responder: Recorder, config: ResponseConfig = CONFIG,
             **kw) -> Executor:
    return Executor(config, store, {"rec": responder}, clock=clock, rng=lambda: 1.0, **kw)  # type: ignore[dict-item]


def test_auto_action_runs_once_is_audited_and_emits_a_revoked_event(store: SqliteStore, clock: Clock) -> None:
    rec, revoked = Recorder(), []
    ex = executor(store, clock, rec, on_revoked=revoked.append)
    [action] = ex.submit([alert_doc()])
    assert ex.submit([alert_doc()]) == []  # the same alert again: nothing new
    assert len(rec.calls) == 1 and rec.calls[0].label() == "family:fam-1"
    done = store.get_action(action.id)
    assert done is not None and (done.state, done.attempts) == ("succeeded", 1)
    trail = [(e.verb, e.result, e.actor) for e in store.audit_trail(action_id=action.id)]
    assert trail == [("revoke.plan", "pending", "tokenwatch"), ("revoke.attempt", "attempt 1", "tokenwatch"),
                     ("revoke.result", "succeeded", "tokenwatch")]
    event = CanonicalEvent.model_validate(revoked[0])
    assert (event.kind, event.revocation.target, event.token.family_id) == ("revoked", "family", "fam-1")  # type: ignore[union-attr]


def test_retry_with_backoff_honouring_retry_after_then_success(store: SqliteStore, clock: Clock) -> None:
    rec = Recorder(ResponderResult.retry(10.0, "HTTP 503"), ResponderResult.retry(None, "timeout"))
    ex = executor(store, clock, rec)
    [action] = ex.submit([alert_doc()])
    first = store.get_action(action.id)
    assert first is not None and first.state == "failed" and first.next_attempt_at == clock.now + timedelta(seconds=10)
    assert ex.run_due() == 0  # not due yet
    clock.advance(10)
    assert ex.run_due() == 1
    second = store.get_action(action.id)
    assert second is not None and second.next_attempt_at == clock.now + timedelta(seconds=4)  # 2 * 2**1, jitter 1.0
    clock.advance(4)
    ex.run_due()
    final = store.get_action(action.id)
    assert final is not None and (final.state, final.attempts, final.last_error) == ("succeeded", 3, None)


def test_gives_up_after_max_attempts_and_never_retries_config_errors(store: SqliteStore, clock: Clock) -> None:
    ex = executor(store, clock, Recorder(*[ResponderResult.retry(None, "HTTP 500")] * 5))
    [action] = ex.submit([alert_doc()])
    for _ in range(5):
        clock.advance(100)
        ex.run_due()
    gave_up = store.get_action(action.id)
    assert gave_up is not None and (gave_up.state, gave_up.attempts) == ("gave_up", 3)
    assert gave_up.last_error == "gave up after max_attempts: HTTP 500"

    rec = Recorder(ResponderResult.config_error("HTTP 401"))
    ex = executor(store, clock, rec)
    [action] = ex.submit([alert_doc(2)])
    clock.advance(1000)
    ex.run_due()
    bad = store.get_action(action.id)
    assert len(rec.calls) == 1 and bad is not None and bad.state == "gave_up" and "HTTP 401" in (bad.last_error or "")


def test_approve_waits_for_the_analyst_and_manual_revoke_runs_it(store: SqliteStore, clock: Clock) -> None:
    rec = Recorder()
    ex = executor(store, clock, rec)
    doc = alert_doc(rule="replay.concurrent_use", action="revoke_token")
    store.put_alerts([doc])
    [action] = ex.submit([doc])
    assert action.state == "awaiting_approval" and rec.calls == []
    done = ex.revoke_alert("al-1", actor="ana")
    assert (done.state, done.mode, done.actor) == ("succeeded", "manual", "ana")
    assert ex.revoke_alert("al-1", actor="ana").state == "succeeded" and len(rec.calls) == 1  # not twice
    assert [e.actor for e in store.audit_trail(alert_id="al-1") if e.verb.startswith("revoke.")][-1] == "ana"


def test_burst_trips_the_breaker_once_and_it_stays_tripped_until_reset(store: SqliteStore, clock: Clock) -> None:
    rec, raised = Recorder(), []
    ex = executor(store, clock, rec, on_alert=raised.append)
    actions = ex.submit([alert_doc(n) for n in range(500)])
    assert len(rec.calls) == 5
    assert sum(a.mode == "auto" for a in actions) == 5 and sum(a.state == "awaiting_approval" for a in actions) == 495
    assert [d["rule"]["id"] for d in raised] == [RULE_ID]
    assert [a["rule"]["id"] for a in store.list_alerts(rule=RULE_ID)] == [RULE_ID]
    clock.advance(3600)  # a restart an hour later: still tripped (durable flag)
    ex2 = executor(store, clock, rec, on_alert=raised.append)
    ex2.submit([alert_doc(1000)])
    assert len(rec.calls) == 5 and len(raised) == 1 and store.get_flag(FLAG)
    assert ex2.breaker.reset("ana", clock.now, "storm over") is True
    ex2.submit([alert_doc(1001)])
    assert len(rec.calls) == 6
    reset = [e for e in store.audit_trail() if e.verb == "breaker.reset"]
    assert [(e.actor, e.result) for e in reset] == [("ana", "reset")]


def test_dry_run_records_and_sends_nothing(store: SqliteStore, clock: Clock) -> None:
    rec, revoked = Recorder(), []
    ex = executor(store, clock, rec, config=CONFIG.model_copy(update={"dry_run": True}), on_revoked=revoked.append)
    [action] = ex.submit([alert_doc()])
    stored = store.get_action(action.id)
    assert rec.calls == [] and revoked == [] and stored is not None and (stored.state, stored.dry_run) == ("dry_run", True)
    assert [e.result for e in store.audit_trail(action_id=action.id)][-1] == "dry_run"


def test_unrouted_target_is_a_config_error_not_retried(store: SqliteStore, clock: Clock) -> None:
    ex = executor(store, clock, Recorder(), config=CONFIG.model_copy(update={"routes": {}}))
    [action] = ex.submit([alert_doc()])
    stored = store.get_action(action.id)
    assert stored is not None and stored.state == "gave_up" and "no responder" in (stored.last_error or "")


def test_recover_requeues_actions_interrupted_in_flight(store: SqliteStore, clock: Clock) -> None:
    rec = Recorder()
    ex = executor(store, clock, rec)
    store.put_alerts([alert_doc()])
    [action] = ex.submit([alert_doc(rule="x.y")])  # approve: not sent
    store.put_action(action.model_copy(update={"state": "in_progress"}))  # as if killed mid-request
    assert ex.recover() == 1 and ex.run_due() == 1
    final = store.get_action(action.id)
    assert final is not None and final.state == "succeeded" and len(rec.calls) == 1
