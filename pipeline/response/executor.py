"""Carries out planned actions: idempotent, audited, retried from a durable queue.

An action's id is ``action_id(alert_id, target)``: an alert seen again (a replay, a fold
update) finds its action in the store and does nothing twice. Every attempt and result is
an audit entry. Transient failures go back to the store with ``next_attempt_at`` (state
``failed``): ``store.due_actions`` is the retry queue, polled by an APScheduler job, so
pending retries survive a restart. Configuration errors and rejections are given up at
once (retrying cannot help); retries stop after ``max_attempts``. A successful revocation
calls ``on_revoked`` with a canonical ``revoked`` event so post-revocation detection arms
at once.

A handle is the sender's word: anyone holding the public key can seal one and declare any
family. A family is therefore revoked only with handles whose token id the alert itself names
(``token.id`` or an evidence item's ``token_id``); each of them is tried, and when none was
revoked the responder's ``fallback`` (e.g. the session logout) runs, else the action ends
without claiming success. Claims and results are compare-and-set in the store
(``swap_action``): an analyst's ``cancel`` landing mid-claim wins, and a result never
overwrites a state the attempt did not claim.

Nothing a server answers, and no bug in an adapter, escapes: an attempt always ends with
the action ``succeeded``, ``failed`` (retry scheduled, with the reason) or ``gave_up``, and
one alert that cannot be handled does not cost the rest of its batch. A server's
``Retry-After`` is honoured up to ``backoff_max_s``, never beyond.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from pipeline.response.breaker import Breaker, principal_of
from pipeline.response.config import ResponseConfig
from pipeline.response.handles import HandleStore
from pipeline.response.policy import plan
from pipeline.response.responders.base import Responder, ResponderResult, RevocationHandle
from pipeline.response.scheduling import start_interval_job
from pipeline.store.base import AlertStore
from schemas.actions import Action, AuditEntry
from schemas.alerts import Alert
from schemas.events import CanonicalEvent, EventKind, Revocation, Subject, TokenRef

log = logging.getLogger(__name__)
REVOKED_SOURCE = "tokenwatch.response"
_DUE = ("pending", "failed")
_MAX_DELAY_S = 30 * 86_400.0  # whatever backoff_max_s says, a retry date stays a date


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
        self.breaker = Breaker(store, config.max_auto_per_minute, config.max_auto_per_principal_per_hour)
        self._lock = threading.Lock()  # claims (pending -> in_progress) are serialised
        self._scheduler: BackgroundScheduler | None = None

    # -- entry points ----------------------------------------------------------------

    def submit(self, alerts: Iterable[Alert | Mapping[str, Any]]) -> list[Action]:
        """Plan each alert's action; run the automatic ones now. Returns the new actions."""
        created: list[Action] = []
        for alert in alerts:
            try:
                action = self._submit_one(alert)
            except Exception as exc:  # one alert that cannot be planned or stored must not cost the batch
                log.error("response: alert %s not handled: %s", _alert_id(alert), type(exc).__name__, exc_info=True)
                continue
            if action is not None:
                created.append(action)
        return created

    def _submit_one(self, alert: Alert | Mapping[str, Any]) -> Action | None:
        """Plan, store and (when automatic) attempt one alert's action; None when nothing new."""
        doc = alert.to_json_dict() if isinstance(alert, Alert) else alert
        now = self.clock()
        action = plan(doc, self.config, now)
        if action is None or self.store.get_action(action.id) is not None:
            return None  # no revocation asked for, or this alert+target was handled already
        if action.mode == "auto":
            allowed, breaker_doc = self.breaker.admit(now, self.config.actor, action.alert_id, principal_of(action.target))
            if not allowed:
                action = action.model_copy(update={
                    "mode": "approve", "state": "awaiting_approval", "next_attempt_at": None,
                    "reason": f"{action.reason}, but the revocation breaker is open"})
            if breaker_doc is not None and self.on_alert is not None:
                self.on_alert(breaker_doc)
        self.store.put_action(action)
        self._audit(action, "revoke.plan", action.state, now, action.actor)
        if action.state == "pending":
            self._attempt(action.id, doc)
        return action

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
        return (self._attempt(action.id, doc) or action) if execute else action

    def run_due(self) -> int:
        """Attempt every due action (the retry job); returns how many were attempted."""
        due = self.store.due_actions(self.clock())
        for action in due:
            try:
                self._attempt(action.id)
            except Exception:  # the store failed around this action: the others still run
                log.exception("response: attempt of action %s failed", action.id)
        return len(due)

    def recover(self) -> int:
        """After a crash: an action left ``in_progress`` may or may not have been sent; revocation is
        idempotent (RFC 7009 2.2, admin logout), so it goes back to the queue to be sent again."""
        stuck = self.store.list_actions(state="in_progress", limit=10_000)
        now = self.clock()
        recovered = 0
        for action in stuck:
            back = action.model_copy(update={"state": "pending", "next_attempt_at": now, "updated": now})
            if self.store.swap_action(back, ("in_progress",)):
                self._audit(action, "revoke.recover", "pending", now, self.config.actor)
                recovered += 1
        return recovered

    def start(self) -> None:
        """Recover interrupted actions and start the retry job (APScheduler, one background thread)."""
        self.recover()
        self._scheduler = start_interval_job(self._retry_job, self.config.retry_poll_s, "tokenwatch-retries")

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

    def _attempt(self, action_id: str, alert: Mapping[str, Any] | None = None) -> Action | None:
        """One attempt at a due action; ``alert`` is its document when the caller has it at hand
        (else it is read from the store: it names the tokens whose handles are believed)."""
        with self._lock:  # claim: only one thread (and, via the state, one attempt) per action
            action = self.store.get_action(action_id)
            if action is None or action.state not in _DUE:
                return action
            now = self.clock()
            action = action.model_copy(update={"state": "in_progress", "attempts": action.attempts + 1, "updated": now})
            if not self.store.swap_action(action, _DUE):  # cancelled (or claimed) since the read
                return self.store.get_action(action_id)
        try:
            self._audit(action, "revoke.attempt", f"attempt {action.attempts}", now, action.actor)
            if action.dry_run:
                return self._finish(action, "dry_run", None, None, "dry run: nothing sent")
            try:
                result = self._call(action, alert)
            except Exception as exc:  # a bug in an adapter must not lose the action
                log.exception("responder %s raised", action.responder)
                result = ResponderResult.retry(None, f"responder raised {type(exc).__name__}")
            return self._conclude(action, result)
        except Exception as exc:  # never leave the claim behind: the action is retried with the reason
            log.exception("response: action %s could not be concluded", action.id)
            return self._conclude(action, ResponderResult.retry(None, f"internal error {type(exc).__name__}"))

    def _conclude(self, action: Action, result: ResponderResult) -> Action:
        """The state an attempt's result leads to, stored and audited."""
        if result.outcome == "done":
            return self._finish(action, "succeeded", None, None, result.reason)
        if result.outcome == "retry" and action.attempts < self.config.max_attempts:
            delay = self._delay(action.attempts, result.after_s)
            return self._finish(action, "failed", result.reason, self.clock() + timedelta(seconds=delay), result.reason)
        why = "gave up after max_attempts" if result.outcome == "retry" else result.outcome
        return self._finish(action, "gave_up", f"{why}: {result.reason}", None, result.reason)

    def _call(self, action: Action, alert: Mapping[str, Any] | None = None) -> ResponderResult:
        responder = self.responders.get(action.responder or "")
        if responder is None:
            return ResponderResult.config_error(
                f"no responder for source {action.target.source!r} kind {action.target.kind} (see [response] routes)")
        if action.target.kind not in responder.kinds:
            return ResponderResult.rejected(f"responder {responder.name} cannot revoke a {action.target.kind}")
        if not responder.needs_handle:
            return responder.revoke(action.target, None)
        results = [responder.revoke(action.target, h) for h in self._believed_handles(action, alert)]
        revoked = sum(1 for r in results if r.outcome == "done")
        if revoked:
            missed = "; ".join(r.reason for r in results if r.outcome != "done")
            return ResponderResult.done(f"revoked {revoked} of {len(results)} token(s)"
                                        + (f"; not revoked: {missed}" if missed else ""))
        return self._without_handle(responder, action, results)

    def _believed_handles(self, action: Action, alert: Mapping[str, Any] | None) -> list[RevocationHandle]:
        """The handles to send: for a token, the one filed under its id (bound to it when
        accepted); for a family, only members whose token id the alert names (a declared
        ``family_id`` is the sender's word, not evidence)."""
        handles = self.handles.for_target(action.target) if self.handles is not None else []
        if action.target.kind != "family" or not handles:
            return handles
        doc = alert if alert is not None else self.store.get_alert(action.alert_id)
        named = named_token_ids(doc)
        return [h for h in handles if h.token_id in named]

    def _without_handle(self, responder: Responder, action: Action,
                        results: list[ResponderResult] | None = None) -> ResponderResult:
        """No believed handle was revoked: the responder's ``fallback`` (e.g. Keycloak's session
        logout for a family) when it has one that can revoke this kind; else the handles' own
        result (a retry first) or rejected, never success."""
        target = action.target
        what = "no believed handle revoked" if results else "no revocation handle"
        fallback = self.responders.get(responder.fallback() or "")
        if fallback is None or fallback.needs_handle or target.kind not in fallback.kinds:
            if results:
                return next((r for r in results if r.outcome == "retry"), results[0])
            return ResponderResult.rejected(f"{what} for {target.label()} (RFC 7009 needs the token)")
        result = fallback.revoke(target, None)
        return replace(result, reason=f"{what}; fallback {fallback.name}: {result.reason}")

    def _delay(self, attempts: int, after_s: float | None) -> float:
        """Exponential backoff with jitter (half to full), never sooner than the server's
        Retry-After and never later than ``backoff_max_s``: a server cannot park an action."""
        cap = min(self.config.backoff_max_s, _MAX_DELAY_S)
        backoff = min(cap, self.config.backoff_base_s * 2.0 ** min(attempts - 1, 64))
        jittered = backoff * (0.5 + self.rng() / 2)
        asked = 0.0 if after_s is None or math.isnan(after_s) or after_s < 0 else after_s  # inf: the cap
        return min(cap, max(jittered, asked))

    def _finish(self, action: Action, state: str, error: str | None, next_at: datetime | None, why: str) -> Action:
        now = self.clock()
        done = action.model_copy(update={"state": state, "last_error": error, "next_attempt_at": next_at, "updated": now})
        if not self.store.swap_action(done, ("in_progress",)):  # the claim was taken from us: keep its state
            current = self.store.get_action(action.id)
            held = current.state if current is not None else "gone"
            self._audit(done, "revoke.result", f"{state} (not recorded: action is {held})", now, action.actor, why)
            return current or done
        self._audit(done, "revoke.result", state, now, action.actor, why)
        if state == "succeeded" and self.on_revoked is not None:
            try:
                self.on_revoked(revoked_event(done, now))
            except Exception:  # the revocation happened; only its broadcast failed
                log.exception("response: revoked event for action %s not published", done.id)
        return done

    def _audit(self, action: Action, verb: str, result: str, now: datetime, actor: str, why: str | None = None) -> None:
        self.store.audit(AuditEntry(
            time=now, actor=actor, verb=verb, alert_id=action.alert_id, action_id=action.id,
            target=action.target.label(), why=why or action.reason, result=result,
            details={"mode": action.mode, "responder": action.responder, "attempt": action.attempts,
                     "dry_run": action.dry_run, "next_attempt_at": action.next_attempt_at.isoformat()
                     if action.next_attempt_at else None},
        ))


def _alert_id(alert: Alert | Mapping[str, Any]) -> str:
    """The alert's id for a log line, whatever shape the alert is in."""
    if isinstance(alert, Alert):
        return str(alert.alert.id)
    inner = alert.get("alert") if isinstance(alert, Mapping) else None
    return str(inner.get("id")) if isinstance(inner, Mapping) else "?"


def named_token_ids(alert: Mapping[str, Any] | None) -> frozenset[str]:
    """Token ids the alert itself names: its ``token.id``, its evidence items' ``token_id``,
    and the tokens lineage knows the IdP issued into its family."""
    if not isinstance(alert, Mapping):
        return frozenset()
    token = alert.get("token")
    ids = {token.get("id")} if isinstance(token, Mapping) else set()
    evidence = alert.get("evidence")
    for item in evidence if isinstance(evidence, list) else ():
        if isinstance(item, Mapping):
            ids.add(item.get("token_id"))
    details = alert.get("details")
    ids.update(_family_tokens(details))  # placed there by the IdP's own events
    return frozenset(i for i in ids if isinstance(i, str) and i)


def _family_tokens(details: object) -> list[str]:
    """``details.lineage_family_tokens``: a JSON list in a string (alert details are scalars)."""
    text = details.get("lineage_family_tokens") if isinstance(details, Mapping) else None
    try:
        found = json.loads(text) if isinstance(text, str) else []
    except ValueError:
        return []
    return [item for item in found if isinstance(item, str)] if isinstance(found, list) else []


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
        subject=Subject(id=target.id if target.kind == "subject" else target.user_id)  # type: ignore[arg-type]  # user_id is set: see the condition
        if target.kind == "subject" or target.user_id else None,
        client_id=target.client_id,
        session_id=target.id if target.kind == "session" else None,
        revocation=Revocation(target=target.kind, actor=action.actor),
    )
    return event.model_dump(mode="json", exclude_none=True)
