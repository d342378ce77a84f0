"""Webhook notifications: tell people about actions that wait for them or that only notify.

An action in ``notify`` mode revokes nothing: the notification is the whole response. An
action ``awaiting_approval`` needs a person to run ``tokenwatch actions approve``. Both are
posted to one webhook, as a generic JSON document or in Slack's incoming-webhook shape
(``{"text": ...}``). The webhook URL carries its own token (Slack, Teams and most chat
webhooks do), so it is a secret: read from an environment variable or a file, never from
the configuration, and never printed, logged or audited (only its host is).

Deliveries are retried like revocations: exponential backoff with jitter, ``Retry-After``
honoured up to ``backoff_max_s``, 4xx other than 408/429 given up at once, at most
``max_attempts`` tries; an APScheduler job sends what is due. The queue is in memory (a
restart forgets undelivered notifications); every outcome is audited (``notify.sent``,
``notify.retry``, ``notify.gave_up``), so the trail shows what was and was not told.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx
from apscheduler.schedulers.background import BackgroundScheduler
from pydantic import SecretStr

from pipeline.response.config import WebhookConfig
from pipeline.response.responders.base import read_secret, retry_after
from pipeline.response.responders.http import DeadlineExceeded, bounded_request
from pipeline.response.scheduling import start_interval_job
from pipeline.store.base import AlertStore
from schemas.actions import Action, AuditEntry

log = logging.getLogger(__name__)
MAX_REPLY_BYTES = 4096  # we read only the status; a chat service's error text is short


# -- decide and describe --------------------------------------------------------------

def message(action: Action, alert: Mapping[str, Any] | None) -> dict[str, Any]:
    """The generic JSON document about ``action`` (ids and facts only: no token, no secret)."""
    core = (alert or {}).get("alert") or {}
    doc: dict[str, Any] = {
        "type": "tokenwatch.action",
        "action": {"id": action.id, "state": action.state, "mode": action.mode, "action": action.action,
                   "target": action.target.label(), "responder": action.responder, "reason": action.reason},
        "alert": {"id": action.alert_id, "rule": action.rule_id, "severity": core.get("severity"),
                  "summary": core.get("summary"), "user": ((alert or {}).get("user") or {}).get("id")},
        "text": text(action, alert),
    }
    if action.state == "awaiting_approval":
        doc["commands"] = {verb: f"tokenwatch actions {verb} {action.id}" for verb in ("approve", "deny")}
    return doc


def text(action: Action, alert: Mapping[str, Any] | None) -> str:
    """One human sentence or two (the Slack ``text``)."""
    core = (alert or {}).get("alert") or {}
    severity = core.get("severity") or "?"
    head = f"[tokenwatch] {severity} alert {action.alert_id} ({action.rule_id})"
    summary = f": {core['summary']}" if core.get("summary") else ""
    if action.state == "awaiting_approval":
        tail = (f"\n{action.action} {action.target.label()} awaits approval: `tokenwatch actions approve "
                f"{action.id}` (or `deny`).")
    else:
        tail = f"\nNotify only: {action.action} {action.target.label()} is not run automatically."
    return head + summary + tail


def body(shape: str, action: Action, alert: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"text": text(action, alert)} if shape == "slack" else message(action, alert)


# -- deliver --------------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    """One queued notification: what to send and when to try next."""

    action: Action
    payload: dict[str, Any]
    due: datetime
    attempts: int = 0


@dataclass(frozen=True)
class Outcome:
    kind: Literal["sent", "retry", "gave_up"]
    reason: str
    after_s: float | None = None


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _RedactUrl(logging.Filter):
    """httpx logs every request's full URL at INFO; ours carries the webhook's token."""

    def __init__(self, secret: SecretStr, shown: str) -> None:
        super().__init__()
        self._secret, self._shown = secret, shown

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        changed = text
        for spelling in self._spellings():
            changed = changed.replace(spelling, self._shown)
        if changed != text:
            record.msg, record.args = changed, ()
        return True

    def _spellings(self) -> list[str]:
        """The URL as configured, as httpx normalises it (host lower-cased, escapes), and its
        path and query alone (where the token lives): longest first."""
        raw = self._secret.get_secret_value()
        url = httpx.URL(raw)
        path = url.raw_path.decode("ascii", "replace")
        found = {raw, str(url), path} if len(path) > 1 else {raw, str(url)}
        return sorted(found, key=len, reverse=True)


class WebhookNotifier:
    """Queues, posts and retries notifications; audits every outcome in the store."""

    def __init__(
        self, config: WebhookConfig, store: AlertStore, transport: httpx.BaseTransport | None = None,
        clock: Callable[[], datetime] = _utcnow, rng: Callable[[], float] = random.random, actor: str = "tokenwatch",
    ) -> None:
        self.config, self.store, self.clock, self.rng, self.actor = config, store, clock, rng, actor
        self._url: SecretStr = read_secret(config.url_env, config.url_file, "notification webhook URL")
        self.host = httpx.URL(self._url.get_secret_value()).host or "webhook"
        self.http = httpx.Client(verify=config.verify_tls, transport=transport, follow_redirects=False)
        self._redact = _RedactUrl(self._url, f"<webhook at {self.host}>")
        logging.getLogger("httpx").addFilter(self._redact)
        self._queue: list[Delivery] = []
        self._lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={self.host!r})"  # never the URL: it carries the token

    def submit(self, actions: Iterable[Action], alerts: Iterable[Mapping[str, Any]] = ()) -> int:
        """Queue a notification for each action in a notified state; returns how many."""
        by_id = {str(((doc.get("alert") or {}).get("id"))): doc for doc in alerts}
        now = self.clock()
        queued = []
        for action in actions:
            if action.state in self.config.states:
                alert = by_id.get(action.alert_id) or self.store.get_alert(action.alert_id)
                queued.append(Delivery(action, body(self.config.shape, action, alert), now))
        with self._lock:
            self._queue += queued
        return len(queued)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def deliver_due(self) -> int:
        """Try every due notification once (the job's body); returns how many were tried."""
        now = self.clock()
        with self._lock:
            due = [d for d in self._queue if d.due <= now]
            self._queue = [d for d in self._queue if d.due > now]
        for delivery in due:
            self._try(replace(delivery, attempts=delivery.attempts + 1))
        return len(due)

    def _try(self, delivery: Delivery) -> None:
        outcome = self._post(delivery.payload)
        now = self.clock()
        if outcome.kind == "retry" and delivery.attempts < self.config.max_attempts:
            delay = self._delay(delivery.attempts, outcome.after_s)
            with self._lock:
                self._queue.append(replace(delivery, due=now + timedelta(seconds=delay)))
            self._audit(delivery, "notify.retry", f"attempt {delivery.attempts}", outcome.reason, now)
            return
        if outcome.kind == "retry":
            outcome = Outcome("gave_up", f"gave up after {delivery.attempts} attempts: {outcome.reason}")
        verb = "notify.sent" if outcome.kind == "sent" else "notify.gave_up"
        self._audit(delivery, verb, outcome.kind, outcome.reason, now)

    def _post(self, payload: dict[str, Any]) -> Outcome:
        try:
            reply = bounded_request(self.http, "POST", self._url.get_secret_value(), self.config.timeout_s,
                                    MAX_REPLY_BYTES, json=payload)
        except DeadlineExceeded:
            return Outcome("retry", f"{self.host}: no answer within {self.config.timeout_s:g}s")
        except httpx.HTTPError as exc:
            return Outcome("retry", f"cannot reach {self.host}: {type(exc).__name__}")
        status = reply.status_code
        if 200 <= status < 300:
            return Outcome("sent", f"{self.host}: HTTP {status}")
        if status in (408, 429) or status >= 500:
            return Outcome("retry", f"{self.host}: HTTP {status}", retry_after(reply.headers.get("Retry-After")))
        return Outcome("gave_up", f"{self.host}: HTTP {status} (check the webhook URL and its token)")

    def _delay(self, attempts: int, after_s: float | None) -> float:
        """Exponential backoff with jitter (half to full); a Retry-After counts up to backoff_max_s."""
        backoff = min(self.config.backoff_max_s, self.config.backoff_base_s * 2.0 ** (attempts - 1))
        return max(backoff * (0.5 + self.rng() / 2), min(after_s or 0.0, self.config.backoff_max_s))

    def _audit(self, delivery: Delivery, verb: str, result: str, why: str, now: datetime) -> None:
        action = delivery.action
        self.store.audit(AuditEntry(
            time=now, actor=self.actor, verb=verb, alert_id=action.alert_id, action_id=action.id,
            target=action.target.label(), why=why, result=result,
            details={"attempt": delivery.attempts, "shape": self.config.shape, "host": self.host},
        ))

    # -- the job ----------------------------------------------------------------------

    def start(self) -> None:
        """Deliver in the background (APScheduler, one thread), as the executor retries revocations."""
        self._scheduler = start_interval_job(self._job, self.config.poll_s, "tokenwatch-notify")

    def stop(self) -> None:
        """Stop the job, try once more what is due, close the connection pool."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self._job()
        self.close()

    def close(self) -> None:
        self.http.close()
        logging.getLogger("httpx").removeFilter(self._redact)

    def _job(self) -> None:
        try:
            self.deliver_due()
        except Exception:  # keep the job alive; the next run tries again
            log.exception("notification job failed")
