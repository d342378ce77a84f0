"""Executor: idempotency, audit, retries with backoff, give-up, breaker, dry run, revoked events;
and what a hostile or broken server cannot do to it (local HTTP servers that drip, flood or
ask for a retry in a million years)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from pydantic import SecretStr

from pipeline.response.breaker import FLAG, RULE_ID
from pipeline.response.config import ClientCredentialsRef, ResponseConfig, Rfc7009Config
from pipeline.response.executor import Executor
from pipeline.response.handles import HandleStore, generate_key_pem, load_private_key, seal
from pipeline.response.responders.base import ResponderResult, RevocationHandle
from pipeline.response.responders.rfc7009 import Rfc7009Responder
from pipeline.store.sqlite import SqliteStore
from schemas.actions import RevocationTarget
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher
from tests.response.conftest import Clock, Recorder, alert_doc

CONFIG = ResponseConfig(enabled=True, routes={"*": "rec"}, max_auto_per_minute=5, max_attempts=3,
                        backoff_base_s=2.0)


def executor(store: SqliteStore, clock: Clock, responder: Recorder, config: ResponseConfig = CONFIG,
             **kw) -> Executor:
    return Executor(config, store, {"rec": responder}, clock=clock, rng=lambda: 1.0, **kw)  # type: ignore[dict-item]  # the Recorder double is duck-typed, not a Responder subclass


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
    assert (event.kind, event.revocation.target, event.token.family_id) == ("revoked", "family", "fam-1")  # type: ignore[union-attr]  # a revoked event carries its revocation and token


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


def test_a_cancel_landing_between_read_and_claim_wins_and_nothing_is_sent(store: SqliteStore, clock: Clock) -> None:
    rec = Recorder(ResponderResult.retry(None, "HTTP 503"))
    ex = executor(store, clock, rec)
    [action] = ex.submit([alert_doc()])
    clock.advance(3600)
    read = store.get_action

    def read_then_cancel(action_id: str):  # the analyst's `actions cancel` right after the retry job's read
        found = read(action_id)
        if found is not None and found.state == "failed":
            store.transition_action(action_id, "cancel", "analyst", note="stop")
        return found

    store.get_action = read_then_cancel  # type: ignore[method-assign]  # patched on this instance: the cancel lands right after the retry's read
    assert ex.run_due() == 1
    store.get_action = read  # type: ignore[method-assign]  # patched back: the store's own read again
    final = store.get_action(action.id)
    assert final is not None and (final.state, final.attempts) == ("cancelled", 1) and len(rec.calls) == 1
    # Benign twin: without the cancel, the retry is claimed, sent and recorded.
    [other] = ex.submit([alert_doc(2)])
    assert store.get_action(other.id).state == "succeeded" and len(rec.calls) == 2  # type: ignore[union-attr]  # the action exists: a None fails the test just the same


def test_a_result_never_overwrites_a_state_the_attempt_did_not_claim(store: SqliteStore, clock: Clock) -> None:
    class Meddles(Recorder):  # while the request is out, the row is moved away from in_progress
        def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
            found = store.get_action(ids[0])
            assert found is not None
            store.put_action(found.model_copy(update={"state": "cancelled"}))
            return super().revoke(target, handle)

    ids: list[str] = []
    rec = Meddles()
    ex = executor(store, clock, rec)
    [planned] = ex.submit([alert_doc(rule="x.y")])  # approve: waits
    ids.append(planned.id)
    store.transition_action(planned.id, "approve", "analyst")
    ex.run_due()
    final = store.get_action(planned.id)
    assert final is not None and final.state == "cancelled" and len(rec.calls) == 1
    assert [e.result for e in store.audit_trail(action_id=planned.id) if e.verb == "revoke.result"] == \
        ["succeeded (not recorded: action is cancelled)"]


# -- a family is revoked only with handles for tokens the alert names -------------------------

HASH = make_token_hasher(b"0123456789abcdef0123456789abcdef")
HANDLE_KEY = load_private_key(generate_key_pem()[0])


def _jwt(jti: str) -> str:
    import base64
    import json
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256'})}.{part({'jti': jti, 'exp': 4_000_000_000})}.c2ln"


class _Revocations:
    """A local RFC 7009 endpoint that answers 200 to everything (as the RFC does for unknown
    tokens) and records the tokens it was sent."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs
        sent = self.sent = []  # type: ignore[var-annotated]  # the tokens received; a chained assignment takes no annotation

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                sent.append(parse_qs(body)["token"][0])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/revoke"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("fallback", [True, False])
def test_a_forged_handle_declaring_a_family_is_not_believed(store: SqliteStore, clock: Clock,
                                                            monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    """Anyone can seal a handle naming any family. A forged one for fam-1 (the alert names rt-1)
    is never sent: the session fallback runs instead, or the action gives up without success.
    For fam-2 the forged handle sorts first and names another client; the genuine handle for
    rt-2, which the alert names, is still sent and the action succeeds."""
    monkeypatch.setenv("TW_PORTAL_SECRET", "portal-secret")
    endpoint = _Revocations()
    public = HANDLE_KEY.public_key()
    handles = HandleStore(HANDLE_KEY, HASH)
    for family, client in (("fam-1", "portal"), ("fam-2", "cli")):
        handles.accept(seal(public, "not-a-token-at-all", "refresh_token", 4e9, family_id=family, client_id=client))
    genuine = _jwt("rt-2")
    assert handles.accept(seal(public, genuine, "refresh_token", 4e9, family_id="fam-2", client_id="portal")) == "rt-2"
    config = Rfc7009Config(revocation_endpoint=endpoint.url, fallback="kc" if fallback else None,
                           clients={"portal": ClientCredentialsRef(client_secret_env="TW_PORTAL_SECRET")})
    kc = Recorder()
    kc.name, kc.kinds = "kc", frozenset({"family", "session", "subject"})  # like keycloak
    idp = Rfc7009Responder("idp", config)
    ex = Executor(CONFIG.model_copy(update={"routes": {"*": "idp"}}), store, {"idp": idp, "kc": kc}, handles,
                  clock=clock, rng=lambda: 1.0)
    try:
        [attacked, benign] = ex.submit([alert_doc(1), alert_doc(2)])
    finally:
        idp.close()
        endpoint.close()
    assert endpoint.sent == [genuine]  # the garbage token never reached the endpoint
    first, second = store.get_action(attacked.id), store.get_action(benign.id)
    assert second is not None and second.state == "succeeded"
    assert first is not None
    if fallback:
        assert first.state == "succeeded" and [t.label() for t in kc.calls] == ["family:fam-1"]
    else:
        assert first.state == "gave_up" and kc.calls == []
        assert first.last_error == "rejected: no revocation handle for family:fam-1 (RFC 7009 needs the token)"


def test_a_family_handle_named_only_in_the_evidence_is_believed(store: SqliteStore, clock: Clock) -> None:
    class Handles:
        def for_target(self, target: RevocationTarget) -> list[RevocationHandle]:
            return [RevocationHandle("at-9", SecretStr("raw"), "access_token", 2e9, target.id)]

    rec = Recorder()
    rec.needs_handle = True
    rec.fallback = lambda: None  # type: ignore[attr-defined]  # the double has no fallback; the executor asks a needs_handle responder for one
    ex = executor(store, clock, rec, handles=Handles())
    doc = alert_doc()
    doc["evidence"][0]["token_id"] = "at-9"
    [named, unnamed] = ex.submit([doc, alert_doc(2)])  # alert 2 names rt-2 only: at-9 is not believed for it
    assert store.get_action(named.id).state == "succeeded"  # type: ignore[union-attr]  # the action exists: a None fails the test just the same
    assert store.get_action(unnamed.id).state == "gave_up"  # type: ignore[union-attr]  # the action exists: a None fails the test just the same
    assert [t.label() for t in rec.calls] == ["family:fam-1"]


# -- no server answer and no bug escapes; the batch goes on -----------------------------------

class Raises(Recorder):
    def revoke(self, target: RevocationTarget, handle: RevocationHandle | None) -> ResponderResult:
        self.calls.append(target)
        raise RuntimeError("adapter bug")


@pytest.mark.parametrize("after_s", [1e14, float("inf"), float("nan"), -5.0])
def test_a_retry_delay_asked_by_a_server_is_clamped_to_backoff_max(store: SqliteStore, clock: Clock,
                                                                   after_s: float) -> None:
    config = CONFIG.model_copy(update={"backoff_max_s": 300.0})
    ex = executor(store, clock, Recorder(ResponderResult.retry(after_s, "HTTP 429")), config=config)
    first, second = ex.submit([alert_doc(1), alert_doc(2)])
    failed, done = store.get_action(first.id), store.get_action(second.id)
    expected = 300.0 if after_s == 1e14 or after_s == float("inf") else 2.0  # huge: the cap; junk: plain backoff
    assert failed is not None and failed.state == "failed"
    assert failed.next_attempt_at == clock.now + timedelta(seconds=expected)
    assert done is not None and done.state == "succeeded"


def test_an_adapter_bug_a_bad_alert_and_a_failed_broadcast_cost_only_themselves(
    store: SqliteStore, clock: Clock
) -> None:
    def broken_broadcast(event: dict) -> None:
        raise ConnectionError("kafka down")

    raising = executor(store, clock, Raises(), on_revoked=broken_broadcast)
    [action] = raising.submit([alert_doc(1)])
    stored = store.get_action(action.id)
    assert stored is not None and (stored.state, stored.last_error) == ("failed", "responder raised RuntimeError")
    ex = executor(store, clock, Recorder(), on_revoked=broken_broadcast)
    bad = alert_doc(2) | {"client": {"id": 12345}}  # not a string: planning it raises
    created = ex.submit([bad, alert_doc(3)])
    assert [a.alert_id for a in created] == ["al-3"]
    done = store.get_action(created[0].id)
    assert done is not None and done.state == "succeeded"  # the broadcast failed, the revocation stands


# -- the same through a real responder and local HTTP servers ----------------------------------

class ScriptedServer:
    """A loopback HTTP/1.1 server that reads each request and runs ``respond(conn, server)``."""

    def __init__(self, respond: Callable[[socket.socket, ScriptedServer], None]) -> None:
        self.respond, self.sent = respond, 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]  # the client always sends Content-Length with its body
            while len(body) < length:
                body += conn.recv(65536)
            try:
                self.respond(conn, self)
            except OSError:  # the client hung up: what it should do to a hostile server
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()


def _drip(data: bytes, every_s: float) -> Callable[[socket.socket, ScriptedServer], None]:
    def respond(conn: socket.socket, server: ScriptedServer) -> None:
        for i in range(len(data)):
            conn.sendall(data[i:i + 1])
            time.sleep(every_s)
    return respond


def _huge(status: int, size: int) -> Callable[[socket.socket, ScriptedServer], None]:
    def respond(conn: socket.socket, server: ScriptedServer) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {size}\r\nContent-Type: application/json\r\n\r\n"
        conn.sendall(head.encode())
        chunk = b" " * (1 << 20)
        for _ in range(size >> 20):
            conn.sendall(chunk)
            server.sent += len(chunk)
    return respond


def _answer(*replies: bytes) -> Callable[[socket.socket, ScriptedServer], None]:
    queue = list(replies)

    def respond(conn: socket.socket, server: ScriptedServer) -> None:
        conn.sendall(queue.pop(0) if len(queue) > 1 else queue[0])
    return respond


class OneHandle:
    """The handle store of a source that sealed every token: ``fam-N``'s handle is for ``rt-N``,
    the token ``alert_doc(N)`` names (the handle's content is irrelevant here)."""

    def for_target(self, target: RevocationTarget) -> list[RevocationHandle]:
        token_id = target.id.replace("fam-", "rt-", 1)
        return [RevocationHandle(token_id, SecretStr("raw-token"), "refresh_token", 2e9, target.id)]

    def purge(self) -> int:
        return 0


@contextmanager
def _rfc7009_against(respond: Callable[[socket.socket, ScriptedServer], None], store: SqliteStore, clock: Clock,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Executor, ScriptedServer]]:
    monkeypatch.setenv("TW_PORTAL_SECRET", "portal-secret")
    server = ScriptedServer(respond)
    config = Rfc7009Config(revocation_endpoint=f"{server.url}/revoke", timeout_s=1.0,
                           clients={"portal": ClientCredentialsRef(client_secret_env="TW_PORTAL_SECRET")})
    responder = Rfc7009Responder("idp", config)
    response_config = CONFIG.model_copy(update={"routes": {"*": "idp"}, "backoff_max_s": 300.0})
    try:
        yield Executor(response_config, store, {"idp": responder}, OneHandle(),  # type: ignore[arg-type]  # OneHandle is a duck-typed double of HandleStore
                       clock=clock, rng=lambda: 1.0), server
    finally:
        responder.close()
        server.close()


OK_200 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}"


@pytest.mark.parametrize("where", ["body", "headers", "benign"])
def test_a_dripping_endpoint_costs_the_deadline_not_more(store: SqliteStore, clock: Clock,
                                                         monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    # One byte every 0.25 s never trips a 1 s read timeout; the whole answer would take 25 s.
    respond = {
        "body": _body_drip(),
        "headers": _drip(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"x" * 100 + b"\r\nContent-Length: 0\r\n\r\n", 0.25),
        "benign": _answer(OK_200),
    }[where]
    with _rfc7009_against(respond, store, clock, monkeypatch) as (ex, _):
        started = time.monotonic()
        [action] = ex.submit([alert_doc(client="portal")])
        elapsed = time.monotonic() - started
    stored = store.get_action(action.id)
    assert stored is not None
    if where == "benign":
        assert stored.state == "succeeded" and elapsed < 1.0
        return
    assert elapsed < 1.6, elapsed
    assert (stored.state, stored.last_error) == ("failed", "no complete answer from 127.0.0.1 within 1s")
    assert stored.next_attempt_at == clock.now + timedelta(seconds=2)


def _body_drip() -> Callable[[socket.socket, ScriptedServer], None]:
    def respond(conn: socket.socket, server: ScriptedServer) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        _drip(b"x" * 100, 0.25)(conn, server)
    return respond


@pytest.mark.parametrize(("status", "state"), [(400, "gave_up"), (503, "failed")])
def test_a_400_mb_error_body_is_not_read_past_the_cap(store: SqliteStore, clock: Clock,
                                                      monkeypatch: pytest.MonkeyPatch, status: int, state: str) -> None:
    with _rfc7009_against(_huge(status, 400 << 20), store, clock, monkeypatch) as (ex, server):
        started = time.monotonic()
        [action] = ex.submit([alert_doc(client="portal")])
        elapsed = time.monotonic() - started
        time.sleep(0.2)  # let the server notice the hang-up
        sent = server.sent
    stored = store.get_action(action.id)
    assert stored is not None and stored.state == state and f"HTTP {status}" in (stored.last_error or "")
    assert elapsed < 1.6, elapsed
    assert sent < 32 << 20, sent  # socket buffers at most: the client stopped reading at 64 KiB


@pytest.mark.parametrize(("retry_after", "delay"), [
    ("99999999999999", 300.0), ("Fri, 31 Dec 9999 23:59:59 GMT", 300.0), ("Mon, 01 Jan 2001 00:00:00 GMT", 2.0),
    ("soon", 2.0), ("7", 7.0),
])
def test_an_overflowing_retry_after_is_clamped_and_the_batch_goes_on(
    store: SqliteStore, clock: Clock, monkeypatch: pytest.MonkeyPatch, retry_after: str, delay: float
) -> None:
    throttled = f"HTTP/1.1 429 Slow down\r\nRetry-After: {retry_after}\r\nContent-Length: 0\r\n\r\n".encode()
    with _rfc7009_against(_answer(throttled, OK_200), store, clock, monkeypatch) as (ex, _):
        first, second = ex.submit([alert_doc(1, client="portal"), alert_doc(2, client="portal")])
    failed, done = store.get_action(first.id), store.get_action(second.id)
    assert failed is not None and (failed.state, failed.last_error) == ("failed", "revocation endpoint: HTTP 429")
    assert failed.next_attempt_at == clock.now + timedelta(seconds=delay)
    assert done is not None and done.state == "succeeded"


def test_a_token_of_a_client_without_credentials_is_never_sent(store: SqliteStore, clock: Clock,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    with _rfc7009_against(_answer(OK_200), store, clock, monkeypatch) as (ex, _):
        [action] = ex.submit([alert_doc(client="cli")])
    stored = store.get_action(action.id)
    assert stored is not None and stored.state == "gave_up"
    assert stored.last_error == ("config_error: no credentials for client 'cli' "
                                 "(add [response.responders.idp.clients.cli])")


def test_a_family_without_handle_falls_back_to_the_named_responder(store: SqliteStore, clock: Clock,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_PORTAL_SECRET", "portal-secret")
    config = Rfc7009Config(revocation_endpoint="https://sso.test/revoke", fallback="rec",
                           clients={"portal": ClientCredentialsRef(client_secret_env="TW_PORTAL_SECRET")})
    rec = Recorder()
    rec.kinds = frozenset({"family", "session", "subject"})  # like the keycloak responder
    responders = {"idp": Rfc7009Responder("idp", config), "rec": rec}
    routed = CONFIG.model_copy(update={"routes": {"*": "idp"}})
    ex = Executor(routed, store, responders, None, clock=clock, rng=lambda: 1.0)  # type: ignore[arg-type]  # the dict mixes a real responder and the duck-typed Recorder
    token_alert = alert_doc(2, action="revoke_token", rule="post_revocation_use.after_revocation")
    [family, token] = ex.submit([alert_doc(1), token_alert])
    fell_back, refused = store.get_action(family.id), store.get_action(token.id)
    assert [t.label() for t in rec.calls] == ["family:fam-1"]
    assert fell_back is not None and fell_back.state == "succeeded"
    assert [e.why for e in store.audit_trail(action_id=family.id) if e.verb == "revoke.result"] == \
        ["no revocation handle; fallback rec: ok"]
    # A token the fallback cannot revoke is refused as before: nothing wider is revoked instead.
    assert refused is not None and refused.state == "gave_up"
    assert refused.last_error == "rejected: no revocation handle for token:rt-2 (RFC 7009 needs the token)"
