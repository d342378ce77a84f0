"""Carries out planned actions: idempotent, audited, retried from a durable queue.

An action's id is ``action_id(alert_id, target)``: an alert seen again (a replay, a fold
update) finds its action in the store and does nothing twice. Every attempt and result is
an audit entry. Transient failures go back to the store with ``next_attempt_at`` (state
``failed``): ``store.due_actions`` is the retry queue, polled by an APScheduler job, so
pending retries survive a restart. Configuration errors and rejections are given up at
once (retrying cannot help); retries stop after ``max_attempts``. A successful revocation
calls ``on_revoked`` with a canonical ``revoked`` event so post-revocation detection arms
at once.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.response.breaker import Breaker
from pipeline.response.config import ResponseConfig
from pipeline.response.handles import HandleStore
from pipeline.response.policy import plan
from pipeline.response.responders.base import Responder, ResponderResult
from pipeline.store.base import AlertStore
from schemas.actions import Action, ActionMode, AuditEntry
from schemas.alerts import Alert
from schemas.events import CanonicalEvent, EventKind, Revocation, Subject, TokenRef

log = logging.getLogger(__name__)
REVOKED_SOURCE = "tokenwatch.response"
_DUE = ("pending", "failed")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Executor:
    def __init__(
        self,
        config: ResponseConfig,
        store: AlertStore,
        responders: Mapping[str, Responder],
        handles: HandleStore | None = None,
        on_revoked: Callable[[dict[str, Any]], None] | None = None,
        on_alert: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], datetime] = _utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config, self.store, self.responders, self.handles = config, store, dict(responders), handles
        self.on_revoked, self.on_alert = on_revoked, on_alert
        self.clock, self.rng = clock, rng
        self.breaker = Breaker(store, config.max_auto_per_minute)
        self._lock = threading.Lock()  # claims (pending -> in_progress) are serialised
        self._scheduler: BackgroundScheduler | None = None

    # -- entry points ----------------------------------------------------------------

    def submit(self, alerts: Iterable[Alert | Mapping[str, Any]]) -> list[Action]:
        """Plan each alert's action; run the automatic ones now. Returns the new actions."""
        created: list[Action] = []
        for alert in alerts:
            doc = alert.to_json_dict() if isinstance(alert, Alert) else alert
            now = self.clock()
            action = plan(doc, self.config, now)
            if action is None or self.store.get_action(action.id) is not None:
                continue  # no revocation asked for, or this alert+target was handled already
            if action.mode == "auto":
                allowed, breaker_doc = self.breaker.admit(now, self.config.actor, action.alert_id)
                if not allowed:
                    action = action.model_copy(update={
                        "mode": "approve", "state": "awaiting_approval", "next_attempt_at": None,
                        "reason": f"{action.reason}, but the revocation breaker is open"})
                if breaker_doc is not None and self.on_alert is not None:
                    self.on_alert(breaker_doc)
            self.store.put_action(action)
            self._audit(action, "revoke.plan", action.state, now, action.actor)
            created.append(action)
            if action.state == "pending":
                self._attempt(action.id)
        return created

    def revoke_alert(self, alert_id: str, actor: str, execute: bool = True) -> Action:
        """An analyst's ``tokenwatch revoke --alert ID``: run the alert's action now (mode manual).

        ``execute=False`` only queues it (state pending, due now) for the running service,
        which holds the revocation handles an RFC 7009 responder needs."""
        doc = self.store.get_alert(alert_id)
        if doc is None:
            raise KeyError(f"no alert {alert_id}")
        now = self.clock()
        planned = plan(doc, self.config, now, mode="manual", actor=actor)
        if planned is None:
            raise ValueError(f"alert {alert_id}: its rule asks for no revocation (response.action none)")
        existing = self.store.get_action(planned.id)
        if existing is not None and existing.state in ("succeeded", "in_progress", "pending", "failed"):
            self.store.audit(AuditEntry(time=now, actor=actor, verb="revoke.manual", alert_id=alert_id,
                                        action_id=existing.id, target=existing.target.label(),
                                        why="analyst asked to revoke", result=f"already {existing.state}"))
            return existing
        base = existing or planned
        action = base.model_copy(update={
            "mode": "manual", "state": "pending", "actor": actor, "reason": f"manual by {actor}",
            "attempts": 0, "last_error": None, "next_attempt_at": now, "updated": now,
            "responder": planned.responder, "dry_run": self.config.dry_run})
        self.store.put_action(action)
        self._audit(action, "revoke.manual", "pending" if execute else "queued", now, actor)
        return (self._attempt(action.id) or action) if execute else action

    def run_due(self) -> int:
        """Attempt every due action (the retry job); returns how many were attempted."""
        due = self.store.due_actions(self.clock())
        for action in due:
            self._attempt(action.id)
        return len(due)

    def recover(self) -> int:
        """After a crash: an action left ``in_progress`` may or may not have been sent; revocation is
        idempotent (RFC 7009 2.2, admin logout), so it goes back to the queue to be sent again."""
        stuck = self.store.list_actions(state="in_progress", limit=10_000)
        now = self.clock()
        for action in stuck:
            self.store.put_action(action.model_copy(update={"state": "pending", "next_attempt_at": now, "updated": now}))
            self._audit(action, "revoke.recover", "pending", now, self.config.actor)
        return len(stuck)

    def start(self) -> None:
        """Recover interrupted actions and start the retry job (APScheduler, one background thread)."""
        self.recover()
        scheduler = BackgroundScheduler(timezone=timezone.utc)
        scheduler.add_job(self._retry_job, "interval", seconds=self.config.retry_poll_s, id="tokenwatch-retries",
                          max_instances=1, coalesce=True, next_run_time=_utcnow())
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def _retry_job(self) -> None:
        try:
            self.run_due()
            if self.handles is not None:
                self.handles.purge()
        except Exception:  # keep the job alive; the next run tries again
            log.exception("response retry job failed")

    # -- one attempt -----------------------------------------------------------------

    def _attempt(self, action_id: str) -> Action | None:
        with self._lock:  # claim: only one thread (and, via the state, one attempt) per action
            action = self.store.get_action(action_id)
            if action is None or action.state not in _DUE:
                return action
            now = self.clock()
            action = action.model_copy(update={"state": "in_progress", "attempts": action.attempts + 1, "updated": now})
            self.store.put_action(action)
        self._audit(action, "revoke.attempt", f"attempt {action.attempts}", now, action.actor)
        if action.dry_run:
            return self._finish(action, "dry_run", None, None, "dry run: nothing sent")
        try:
            result = self._call(action)
        except Exception as exc:  # a bug in an adapter must not lose the action
            log.exception("responder %s raised", action.responder)
            result = ResponderResult.retry(None, f"responder raised {type(exc).__name__}")
        if result.outcome == "done":
            return self._finish(action, "succeeded", None, None, result.reason)
        if result.outcome == "retry" and action.attempts < self.config.max_attempts:
            delay = self._delay(action.attempts, result.after_s)
            return self._finish(action, "failed", result.reason, self.clock() + timedelta(seconds=delay), result.reason)
        why = "gave up after max_attempts" if result.outcome == "retry" else result.outcome
        return self._finish(action, "gave_up", f"{why}: {result.reason}", None, result.reason)

    def _call(self, action: Action) -> ResponderResult:
        responder = self.responders.get(action.responder or "")
        if responder is None:
            return ResponderResult.config_error(
                f"no responder for source {action.target.source!r} kind {action.target.kind} (see [response] routes)")
        if action.target.kind not in responder.kinds:
            return ResponderResult.rejected(f"responder {responder.name} cannot revoke a {action.target.kind}")
        if not responder.needs_handle:
            return responder.revoke(action.target, None)
        handles = self.handles.for_target(action.target) if self.handles is not None else []
        if not handles:
            return ResponderResult.rejected(f"no revocation handle for {action.target.label()} (RFC 7009 needs the token)")
        for handle in handles:
            result = responder.revoke(action.target, handle)
            if result.outcome != "done":
                return result
        return ResponderResult.done(f"revoked {len(handles)} token(s)")

    def _delay(self, attempts: int, after_s: float | None) -> float:
        """Exponential backoff with jitter (half to full), never sooner than the server's Retry-After."""
        backoff = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempts - 1))
        jittered = backoff * (0.5 + self.rng() / 2)
        return max(jittered, after_s or 0.0)

    def _finish(self, action: Action, state: str, error: str | None, next_at: datetime | None, why: str) -> Action:
        now = self.clock()
        done = action.model_copy(update={"state": state, "last_error": error, "next_attempt_at": next_at, "updated": now})
        self.store.put_action(done)
        self._audit(done, "revoke.result", state, now, action.actor, why)
        if state == "succeeded" and self.on_revoked is not None:
            self.on_revoked(revoked_event(done, now))
        return done

    def _audit(self, action: Action, verb: str, result: str, now: datetime, actor: str, why: str | None = None) -> None:
        self.store.audit(AuditEntry(
            time=now, actor=actor, verb=verb, alert_id=action.alert_id, action_id=action.id,
            target=action.target.label(), why=why or action.reason, result=result,
            details={"mode": action.mode, "responder": action.responder, "attempt": action.attempts,
                     "dry_run": action.dry_run, "next_attempt_at": action.next_attempt_at.isoformat()
                     if action.next_attempt_at else None},
        ))


def revoked_event(action: Action, now: datetime) -> dict[str, Any]:
    """The canonical ``revoked`` event for a succeeded action (JSON-ready)."""
    target = action.target
    token = None
    if target.kind == "token":
        token = TokenRef(id=target.id)
    elif target.kind == "family":
        token = TokenRef(id=f"family:{target.id}", family_id=target.id)
    event = CanonicalEvent(
        event_id=f"tw-revoked-{action.id}", kind=EventKind.REVOKED, time=now, source=REVOKED_SOURCE,
        token=token,
        subject=Subject(id=target.id if target.kind == "subject" else target.user_id)  # type: ignore[arg-type]
        if target.kind == "subject" or target.user_id else None,
        client_id=target.client_id,
        session_id=target.id if target.kind == "session" else None,
        revocation=Revocation(target=target.kind, actor=action.actor),
    )
    return event.model_dump(mode="json", exclude_none=True)
