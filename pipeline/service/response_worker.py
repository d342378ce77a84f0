"""Automated response inside `tokenwatch run`: the executor on its own thread.

Revocation calls go to IdPs over HTTP and may take seconds (timeouts,
``Retry-After``); the consume loop must not wait for them, or a slow IdP would
stall detection for every partition. So alerts are handed to a worker thread
through a queue; the worker plans and runs their actions (idempotent: an
alert seen again — a fold update, a replay — finds its action in the store).
A revocation that succeeded is published to the revocations topic, so every
instance's post-revocation detection arms at once; a breaker alert is handed
back to the loop, which owns the sinks (they are not thread-safe).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from pipeline.config import Settings
from pipeline.response.executor import Executor
from pipeline.response.handles import ENV_KEY, ENV_KEY_FILE, HandleStore, limits_from, load_private_key
from pipeline.response.notify import WebhookNotifier
from pipeline.response.responders import build_responders
from pipeline.store.base import AlertStore, open_store
from schemas.events import CanonicalEvent

log = logging.getLogger("tokenwatch.response")

_STOP = object()


class ServiceResponse:
    """Owns the store connection, the responders, the executor and its worker thread."""

    def __init__(self, settings: Settings, publish_revocation: Callable[[CanonicalEvent], None],
                 store: AlertStore | None = None, handles: HandleStore | None = None) -> None:
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        self.keep_alerts = settings.store.backend == "sqlite"  # with Elasticsearch the sink writes them
        self.responders = build_responders(settings.response.responders)
        self._publish = publish_revocation
        self._breaker_alerts: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.handles = handles
        self.executor = Executor(settings.response, self.store, self.responders, handles,
                                 on_revoked=self._revoked, on_alert=self._breaker_alert)
        notify = settings.response.notify
        self.notifier = WebhookNotifier(notify, self.store, actor=settings.response.actor) if notify else None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="tokenwatch-response", daemon=True)
        self.submitted = 0
        self.failures = 0

    def start(self) -> None:
        self.executor.start()  # recovers interrupted actions, starts the retry job
        if self.notifier is not None:
            self.notifier.start()
        self._worker.start()

    def submit(self, alert_docs: list[dict[str, Any]]) -> None:
        """Queue alert documents for planning (returns at once)."""
        if alert_docs:
            self._queue.put(alert_docs)

    def take_alerts(self) -> list[dict[str, Any]]:
        """Alerts the response raised itself (the breaker), for the loop to write to the sinks."""
        with self._lock:
            taken, self._breaker_alerts = self._breaker_alerts, []
        return taken

    def stop(self, timeout_s: float = 30.0) -> None:
        """Finish what is queued, stop the retry job, close connections."""
        self._queue.put(_STOP)
        self._worker.join(timeout=timeout_s)
        self.executor.stop()
        if self.notifier is not None:
            self.notifier.stop()
        for responder in self.responders.values():
            responder.close()
        self.store.close()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if self.keep_alerts:
                    self.store.put_alerts(item)
                created = self.executor.submit(item)
                if self.notifier is not None:
                    self.notifier.submit(created, item)  # notify mode, and actions awaiting approval
                self.submitted += len(item)
            except Exception:  # the alerts are in the sinks; an analyst can still revoke by hand
                self.failures += 1
                log.exception("response to alerts failed", extra={"alerts": len(item)})

    def _revoked(self, event: dict[str, Any]) -> None:
        self._publish(CanonicalEvent.model_validate(event))

    def _breaker_alert(self, document: dict[str, Any]) -> None:
        with self._lock:
            self._breaker_alerts.append(document)


def handle_store(settings: Settings, hash_token: Callable[[str], str]) -> HandleStore | None:
    """The in-memory revocation-handle store, when a handle key is configured (else None:
    handles arriving with records are dropped, and RFC 7009 revocations cannot run)."""
    path = settings.response.handle_key_file
    if path is None and not os.environ.get(ENV_KEY) and not os.environ.get(ENV_KEY_FILE):
        return None
    return HandleStore(load_private_key(path=path), hash_token, limits=limits_from(settings.response))
