"""The webhook notifier against a local HTTP server: the JSON it posts, Slack's shape, retries on
5xx with backoff, give-up on 4xx, the URL (which carries a token) kept out of every output."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.response.config import ResponseConfig, WebhookConfig
from pipeline.response.executor import Executor
from pipeline.response.notify import WebhookNotifier
from pipeline.secrets import SecretError
from pipeline.store.sqlite import SqliteStore
from tests.response.conftest import Clock, alert_doc

TOKEN = "T000/B000/s3cr3t-webhook-token"


class Hook:
    """A webhook receiver on loopback: answers each POST with the next scripted status, records bodies."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str]]] = []
        self.received: list[tuple[str, dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's name
                length = int(self.headers.get("Content-Length", 0))
                hook.received.append((self.path, json.loads(self.rfile.read(length))))
                status, headers = hook.script.pop(0) if hook.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hook]:
    h = Hook()
    monkeypatch.setenv("TOKENWATCH_NOTIFY_URL", h.url)
    yield h
    h.close()


CONFIG = ResponseConfig(enabled=True, routes={"*": "kc"},
                        rule_modes={"geo_divergence.*": "notify", "replay.refresh_reuse": "auto"},
                        severity_modes={"high": "approve", "critical": "approve", "medium": "approve", "low": "notify"})


def planned(store: SqliteStore, clock: Clock, *docs: dict[str, Any]) -> list[Any]:
    store.put_alerts(docs)
    return Executor(CONFIG, store, {}, clock=clock).submit(docs)


MADE: list[WebhookNotifier] = []


@pytest.fixture(autouse=True)
def _close_notifiers() -> Iterator[None]:
    yield
    while MADE:
        MADE.pop().close()


def notifier(store: SqliteStore, clock: Clock, **settings: Any) -> WebhookNotifier:
    made = WebhookNotifier(WebhookConfig(backoff_base_s=2.0, verify_tls=False, **settings), store,
                           clock=clock, rng=lambda: 1.0)
    MADE.append(made)
    return made


def test_notify_and_approval_actions_are_posted_as_json(hook: Hook, store: SqliteStore, clock: Clock) -> None:
    notify_doc = alert_doc(1, rule="geo_divergence.impossible_travel", action="revoke_session")
    approve_doc = alert_doc(2, rule="replay.concurrent_use")
    auto_doc = alert_doc(3)  # replay.refresh_reuse is auto: it acts, nobody needs telling
    actions = planned(store, clock, notify_doc, approve_doc, auto_doc)
    assert [a.state for a in actions] == ["notified", "awaiting_approval", "pending"]
    n = notifier(store, clock)
    assert n.submit(actions, [notify_doc, approve_doc, auto_doc]) == 2
    assert n.deliver_due() == 2
    assert [path for path, _ in hook.received] == [f"/hooks/{TOKEN}"] * 2
    first, second = (body for _, body in hook.received)
    assert first == {
        "type": "tokenwatch.action",
        "action": {"id": actions[0].id, "state": "notified", "mode": "notify", "action": "revoke_session",
                   "target": "session:s-1", "responder": "kc", "reason": "rule_modes[geo_divergence.*] = notify"},
        "alert": {"id": "al-1", "rule": "geo_divergence.impossible_travel", "severity": "high", "summary": "s",
                  "user": "alice"},
        "text": "[tokenwatch] high alert al-1 (geo_divergence.impossible_travel): s\n"
                "Notify only: revoke_session session:s-1 is not run automatically.",
    }
    assert second["commands"] == {"approve": f"tokenwatch actions approve {actions[1].id}",
                                  "deny": f"tokenwatch actions deny {actions[1].id}"}
    assert second["text"].endswith(f"awaits approval: `tokenwatch actions approve {actions[1].id}` (or `deny`).")
    assert [(e.verb, e.result, e.details["host"]) for e in store.audit_trail(action_id=actions[0].id)
            if e.verb.startswith("notify.")] == [("notify.sent", "sent", "127.0.0.1")]
    assert n.pending() == 0


def test_slack_shape_is_only_text(hook: Hook, store: SqliteStore, clock: Clock) -> None:
    doc = alert_doc(1, rule="geo_divergence.impossible_travel", action="revoke_session")
    n = notifier(store, clock, shape="slack")
    n.submit(planned(store, clock, doc))  # the alert is read from the store
    n.deliver_due()
    assert [body for _, body in hook.received] == [{"text": (
        "[tokenwatch] high alert al-1 (geo_divergence.impossible_travel): s\n"
        "Notify only: revoke_session session:s-1 is not run automatically.")}]


def test_5xx_is_retried_with_backoff_and_retry_after_then_sent(hook: Hook, store: SqliteStore, clock: Clock) -> None:
    hook.script = [(500, {}), (503, {"Retry-After": "30"}), (429, {"Retry-After": "99999999999999"})]
    [action] = planned(store, clock, alert_doc(1, rule="replay.concurrent_use"))
    n = notifier(store, clock, backoff_max_s=60.0)
    n.submit([action])
    assert n.deliver_due() == 1  # 500: retry in 2 s (base 2, jitter at its maximum)
    clock.advance(1.9)
    assert n.deliver_due() == 0
    clock.advance(0.1)
    assert n.deliver_due() == 1  # 503 asks for 30 s, more than the 4 s backoff
    clock.advance(29)
    assert n.deliver_due() == 0
    clock.advance(1)
    assert n.deliver_due() == 1  # 429 asks for centuries: clamped to backoff_max_s
    clock.advance(60)
    assert n.deliver_due() == 1
    assert len(hook.received) == 4 and all(body == hook.received[0][1] for _, body in hook.received)
    trail = [(e.verb, e.result, e.why) for e in store.audit_trail(action_id=action.id) if e.verb.startswith("notify.")]
    assert trail == [("notify.retry", "attempt 1", "127.0.0.1: HTTP 500"),
                     ("notify.retry", "attempt 2", "127.0.0.1: HTTP 503"),
                     ("notify.retry", "attempt 3", "127.0.0.1: HTTP 429"),
                     ("notify.sent", "sent", "127.0.0.1: HTTP 200")]


def test_gives_up_after_max_attempts_and_at_once_on_4xx(hook: Hook, store: SqliteStore, clock: Clock) -> None:
    a1, a2 = planned(store, clock, *(alert_doc(n, rule="replay.concurrent_use") for n in (1, 2)))
    n = notifier(store, clock, max_attempts=2)
    hook.script = [(500, {}), (404, {})]
    n.submit([a1, a2])
    n.deliver_due()
    clock.advance(2)
    hook.script = [(502, {})]
    n.deliver_due()
    assert n.pending() == 0 and len(hook.received) == 3
    verbs = {a.id: [(e.verb, e.why) for e in store.audit_trail(action_id=a.id) if e.verb.startswith("notify.")]
             for a in (a1, a2)}
    assert verbs == {
        a1.id: [("notify.retry", "127.0.0.1: HTTP 500"),
                ("notify.gave_up", "gave up after 2 attempts: 127.0.0.1: HTTP 502")],
        a2.id: [("notify.gave_up", "127.0.0.1: HTTP 404 (check the webhook URL and its token)")],
    }


def test_an_unreachable_webhook_is_retried(store: SqliteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWATCH_NOTIFY_URL", f"http://127.0.0.1:9/hooks/{TOKEN}")  # discard port: refused
    [action] = planned(store, clock, alert_doc(1, rule="replay.concurrent_use"))
    n = notifier(store, clock)
    n.submit([action])
    n.deliver_due()
    [entry] = [e for e in store.audit_trail(action_id=action.id) if e.verb.startswith("notify.")]
    assert (entry.verb, entry.why) == ("notify.retry", "cannot reach 127.0.0.1: ConnectError")
    assert n.pending() == 1


def test_the_url_is_a_secret_from_env_or_file_and_never_shown(
    hook: Hook, store: SqliteStore, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("TOKENWATCH_NOTIFY_URL")
    with pytest.raises(SecretError, match=r"notification webhook URL is not set \(\$TOKENWATCH_NOTIFY_URL\)"):
        notifier(store, clock)
    secret_file = tmp_path / "webhook-url"
    secret_file.write_text(hook.url + "\n", encoding="utf-8")
    n = notifier(store, clock, url_env=None, url_file=secret_file)
    hook.script = [(500, {})]
    n.submit(planned(store, clock, alert_doc(1, rule="replay.concurrent_use")))
    n.deliver_due()
    clock.advance(2)
    n.deliver_due()
    assert len(hook.received) == 2
    shown = repr(n) + caplog.text + "".join(e.model_dump_json() for e in store.audit_trail())
    assert "s3cr3t" not in shown and "127.0.0.1" in shown


def test_the_scheduled_job_delivers_in_the_background(hook: Hook, store: SqliteStore) -> None:
    hook.script = [(500, {})]
    [action] = planned(store, Clock(), alert_doc(1, rule="replay.concurrent_use"))
    n = WebhookNotifier(WebhookConfig(poll_s=0.05, backoff_base_s=0.1), store)
    n.submit([action])
    n.start()
    try:
        deadline = time.monotonic() + 5
        while len(hook.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        n.stop()
    assert len(hook.received) == 2 and n.pending() == 0


def test_config_lives_in_the_response_table() -> None:
    config = ResponseConfig.model_validate({"notify": {"shape": "slack", "url_env": "HOOK"}})
    assert config.notify == WebhookConfig(shape="slack", url_env="HOOK")
    assert ResponseConfig().notify is None
    with pytest.raises(ValueError, match="url"):
        ResponseConfig.model_validate({"notify": {"url": "https://hooks.example.com/T/B/x"}})  # never inline
    assert timedelta(seconds=WebhookConfig().backoff_max_s) == timedelta(minutes=5)


@pytest.mark.parametrize("spelling", ["upper-case host", "space in the token"])
def test_the_url_stays_hidden_however_httpx_normalises_it(
    hook: Hook, store: SqliteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, spelling: str,
) -> None:
    """httpx logs the URL as it normalised it (host lower-cased, a space escaped): the
    token must not come through in that spelling either."""
    caplog.set_level(logging.DEBUG)
    url = hook.url.replace("127.0.0.1", "LOCALHOST") if spelling == "upper-case host" else hook.url + " x"
    monkeypatch.setenv("TOKENWATCH_NOTIFY_URL", url)
    n = notifier(store, clock)
    n.submit(planned(store, clock, alert_doc(1, rule="replay.concurrent_use")))
    n.deliver_due()
    assert "s3cr3t" not in caplog.text and "HTTP Request" in caplog.text
