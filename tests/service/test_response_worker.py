"""The response worker of `tokenwatch run` (``ServiceResponse``) on its own, without a broker.

It is what the loop hands alert documents to: it revokes off the loop's thread with the
responders the settings name, publishes each revocation, hands breaker alerts back, survives
a failure of any one batch, re-sends after a restart what was in flight, and drains on stop.
The responders are the real Okta and RFC 7009 adapters, talking to a local HTTP server that
stands in for the IdP's admin API and for the notification webhook."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from pipeline.config import Settings
from pipeline.response.breaker import RULE_ID
from pipeline.response.config import ResponseConfig
from pipeline.response.handles import generate_key_pem, load_public_key, seal
from pipeline.response.policy import plan
from pipeline.service.response_worker import ServiceResponse, handle_store
from pipeline.store.config import StoreConfig
from pipeline.store.sqlite import SqliteStore
from schemas.events import CanonicalEvent, EventKind
from tests.response.conftest import alert_doc

OKTA_TOKEN = "ssws-test-token-41"  # test secrets: the responders read them from the environment
CLIENT_SECRET = "rfc7009-test-secret-17"
GRANT = "/api/v1/users/alice/clients/portal/tokens"  # Okta: revoke the grant (a refresh-token family)


class Idp:
    """A local HTTP server: records every request (method, path, form, Authorization) and
    answers from ``statuses`` in turn, then 200. ``gate`` holds each answer until it is set."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[str, str, dict[str, list[str]], str]] = []
        self.gate = threading.Event()
        self.gate.set()
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                idp.requests.append((self.command, self.path, parse_qs(body), self.headers.get("Authorization", "")))
                idp.gate.wait(10)
                status = idp.statuses.pop(0) if idp.statuses else 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_DELETE = _answer  # http.server dispatches on these names

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def seen(self, method: str) -> list[str]:
        return [path for verb, path, _, _ in self.requests if verb == method]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def idp() -> Iterator[Idp]:
    server = Idp()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_OKTA_TOKEN", OKTA_TOKEN)
    monkeypatch.setenv("TW_TEST_CLIENT_SECRET", CLIENT_SECRET)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY", raising=False)
    monkeypatch.delenv("TOKENWATCH_HANDLE_KEY_FILE", raising=False)


def settings_for(tmp_path: Path, idp: Idp, **response: Any) -> Settings:
    """Alerts from source ``okta`` go to the Okta responder, from ``idp`` to RFC 7009; the
    retry job polls often, and a failed attempt waits a minute (no retry within a test)."""
    return Settings(store=StoreConfig(path=tmp_path / "tw.db"), response=ResponseConfig.model_validate({
        "enabled": True, "retry_poll_s": 0.05, "backoff_base_s": 60.0,
        "routes": {"okta": "okta", "idp": "idp"},
        "responders": {
            "okta": {"type": "okta", "base_url": idp.url, "api_token_env": "TW_TEST_OKTA_TOKEN", "timeout_s": 10},
            "idp": {"type": "rfc7009", "revocation_endpoint": f"{idp.url}/revoke", "client_id": "tw",
                    "client_secret_env": "TW_TEST_CLIENT_SECRET", "timeout_s": 10},
        },
        **response,
    }))


Make = Callable[..., ServiceResponse]


@pytest.fixture
def published() -> list[CanonicalEvent]:
    return []


@pytest.fixture
def make(published: list[CanonicalEvent]) -> Iterator[Make]:
    """Started workers that publish revocations to ``published``; stopped at teardown in any
    case (stopping twice is harmless)."""
    workers: list[ServiceResponse] = []

    def build(settings: Settings, **kwargs: Any) -> ServiceResponse:
        worker = ServiceResponse(settings, published.append, **kwargs)
        workers.append(worker)
        worker.start()
        return worker

    yield build
    for worker in workers:
        worker.stop(timeout_s=5)


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def okta_alert(n: int, **kwargs: Any) -> dict[str, Any]:
    return alert_doc(n, source="okta", **kwargs)


def test_an_auto_alert_is_revoked_once_published_and_kept(tmp_path: Path, idp: Idp, make: Make,
                                                          published: list[CanonicalEvent]) -> None:
    settings = settings_for(tmp_path, idp)
    worker = make(settings)
    worker.submit([okta_alert(1)])
    worker.submit([okta_alert(1)])  # the same alert again (a fold update, a replay): nothing twice
    worker.stop()
    assert [(verb, path, auth) for verb, path, _, auth in idp.requests] == [("DELETE", GRANT, f"SSWS {OKTA_TOKEN}")]
    [event] = published
    assert event.kind == EventKind.REVOKED and event.token is not None and event.token.family_id == "fam-1"
    assert worker.submitted == 2 and worker.failures == 0
    store = SqliteStore(settings.store.path)  # the worker closed its own connection on stop
    [action] = store.list_actions(alert_id="al-1")
    assert action.state == "succeeded" and action.responder == "okta"
    assert store.get_alert("al-1") is not None  # with SQLite the worker keeps the alerts itself


def test_the_family_is_revoked_with_the_handle_of_the_token_the_alert_names(
        tmp_path: Path, idp: Idp, make: Make, monkeypatch: pytest.MonkeyPatch,
        hasher: Callable[[str], str]) -> None:
    private_pem, public_pem = generate_key_pem()
    monkeypatch.setenv("TOKENWATCH_HANDLE_KEY", private_pem)
    settings = settings_for(tmp_path, idp)
    handles = handle_store(settings, hasher)
    assert handles is not None
    public = load_public_key(public_pem.encode(), "test key")
    named = handles.accept(seal(public, "raw-rt-1", "refresh_token", time.time() + 3600, family_id="fam-1"))
    handles.accept(seal(public, "raw-rt-other", "refresh_token", time.time() + 3600, family_id="fam-1"))
    alert = alert_doc(1, source="idp")
    alert["token"]["id"] = named  # the reused refresh token; the other one only declares the family
    worker = make(settings, handles=handles)
    worker.submit([alert])
    worker.stop()
    [(verb, path, form, _)] = idp.requests
    assert (verb, path) == ("POST", "/revoke")
    assert form == {"token": ["raw-rt-1"], "token_type_hint": ["refresh_token"]}


def test_no_handle_key_no_handle_store(tmp_path: Path, idp: Idp, hasher: Callable[[str], str]) -> None:
    assert handle_store(settings_for(tmp_path, idp), hasher) is None


def test_submit_returns_while_the_idp_is_still_answering(tmp_path: Path, idp: Idp, make: Make,
                                                         published: list[CanonicalEvent]) -> None:
    idp.gate.clear()  # the IdP holds its answer
    worker = make(settings_for(tmp_path, idp))
    started = time.monotonic()
    worker.submit([okta_alert(1)])
    assert time.monotonic() - started < 2.0  # the IdP holds its answer for up to 10 s
    eventually(lambda: idp.seen("DELETE") == [GRANT])  # the request is out, on the worker's thread
    assert published == []
    idp.gate.set()
    worker.stop()
    assert len(published) == 1


def test_a_failing_revocation_is_recorded_and_the_next_alert_still_goes(
        tmp_path: Path, make: Make, published: list[CanonicalEvent]) -> None:
    idp = Idp(503)
    try:
        settings = settings_for(tmp_path, idp)
        worker = make(settings)
        worker.submit([okta_alert(1)])
        worker.submit([okta_alert(2, user="bob")])
        worker.stop()
    finally:
        idp.close()
    assert idp.seen("DELETE") == [GRANT, "/api/v1/users/bob/clients/portal/tokens"]
    store = SqliteStore(settings.store.path)
    [first], [second] = store.list_actions(alert_id="al-1"), store.list_actions(alert_id="al-2")
    assert first.state == "failed" and "HTTP 503" in (first.last_error or "") and first.next_attempt_at is not None
    assert second.state == "succeeded"
    assert [e.token.family_id for e in published if e.token] == ["fam-2"]
    assert worker.failures == 0  # the responder's failure is the action's, retried from the store


def test_a_batch_the_store_refuses_is_counted_and_the_loop_goes_on(tmp_path: Path, idp: Idp, make: Make) -> None:
    class RefusesFirstWrite(SqliteStore):
        refusals = 1

        def put_alerts(self, alerts: Any) -> None:
            if self.refusals:
                self.refusals -= 1
                raise sqlite3.OperationalError("disk I/O error")
            super().put_alerts(alerts)

    settings = settings_for(tmp_path, idp)
    worker = make(settings, store=RefusesFirstWrite(settings.store.path))
    worker.submit([okta_alert(1)])
    worker.submit([okta_alert(2, user="bob")])
    worker.stop()
    assert worker.failures == 1 and worker.submitted == 1
    assert idp.seen("DELETE") == ["/api/v1/users/bob/clients/portal/tokens"]  # al-1 waits for an analyst


def test_with_elasticsearch_the_worker_leaves_the_alerts_to_the_sink(tmp_path: Path, idp: Idp, make: Make) -> None:
    settings = settings_for(tmp_path, idp).model_copy(update={"store": StoreConfig(backend="elasticsearch")})
    store = SqliteStore(tmp_path / "es-standin.db")
    worker = make(settings, store=store)
    worker.submit([okta_alert(1)])
    worker.stop()
    reader = SqliteStore(tmp_path / "es-standin.db")
    assert reader.get_alert("al-1") is None and [a.state for a in reader.list_actions(alert_id="al-1")] == ["succeeded"]


def test_rules_not_automatic_and_dry_run_send_nothing(tmp_path: Path, idp: Idp, make: Make,
                                                      published: list[CanonicalEvent],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_HOOK", f"{idp.url}/hook")
    settings = settings_for(tmp_path, idp, notify={"url_env": "TW_TEST_HOOK", "poll_s": 0.05})
    worker = make(settings)
    worker.submit([okta_alert(1, rule="scope_escalation.grant_widening", severity="high")])  # severity_modes: approve
    worker.stop()
    assert idp.seen("DELETE") == [] and published == []
    assert idp.seen("POST") == ["/hook"]  # the analyst is told it awaits approval
    [action] = SqliteStore(settings.store.path).list_actions(alert_id="al-1")
    assert action.state == "awaiting_approval"

    (tmp_path / "dry").mkdir()
    dry = make(settings_for(tmp_path / "dry", idp, dry_run=True))
    dry.submit([okta_alert(2)])
    dry.stop()
    assert idp.seen("DELETE") == [] and published == []
    assert [a.state for a in SqliteStore(tmp_path / "dry" / "tw.db").list_actions(alert_id="al-2")] == ["dry_run"]


def test_a_tripped_breaker_hands_its_alert_to_the_loop_once(tmp_path: Path, idp: Idp, make: Make) -> None:
    settings = settings_for(tmp_path, idp, max_auto_per_minute=1)
    worker = make(settings)
    worker.submit([okta_alert(1), okta_alert(2, user="bob")])
    worker.stop()
    assert idp.seen("DELETE") == [GRANT]  # bob's waits for an analyst
    taken = worker.take_alerts()
    assert [doc["rule"]["id"] for doc in taken] == [RULE_ID]
    assert worker.take_alerts() == []
    [held] = SqliteStore(settings.store.path).list_actions(alert_id="al-2")
    assert held.state == "awaiting_approval" and "breaker" in held.reason


def test_start_sends_again_what_a_crash_left_in_flight(tmp_path: Path, idp: Idp, make: Make,
                                                       published: list[CanonicalEvent]) -> None:
    settings = settings_for(tmp_path, idp)
    before = SqliteStore(settings.store.path)
    planned = plan(okta_alert(1), settings.response, datetime.now(timezone.utc))
    assert planned is not None
    before.put_action(planned.model_copy(update={"state": "in_progress", "attempts": 1}))  # killed mid-request
    before.close()
    worker = make(settings)
    eventually(lambda: idp.seen("DELETE") == [GRANT])
    worker.stop()
    after = SqliteStore(settings.store.path)
    [action] = after.list_actions(alert_id="al-1")
    assert action.state == "succeeded" and action.attempts == 2 and len(published) == 1
    assert "revoke.recover" in [e.verb for e in after.audit_trail(alert_id="al-1")]


def test_stop_drains_the_queue_then_closes_responders_and_store(tmp_path: Path, idp: Idp, make: Make,
                                                                published: list[CanonicalEvent]) -> None:
    worker = make(settings_for(tmp_path, idp))
    users = ["alice", "bob", "carol", "dan"]
    for n, user in enumerate(users, 1):
        worker.submit([okta_alert(n, user=user)])
    worker.submit([])  # nothing to queue
    worker.stop()
    assert sorted(idp.seen("DELETE")) == sorted(f"/api/v1/users/{u}/clients/portal/tokens" for u in users)
    assert worker.submitted == 4 and len(published) == 4
    assert all(responder.http.is_closed for responder in worker.responders.values())
    with pytest.raises(sqlite3.ProgrammingError):
        worker.store.get_flag("response.breaker")
