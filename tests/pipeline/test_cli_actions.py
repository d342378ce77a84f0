"""`tokenwatch actions approve|deny|cancel` and `tokenwatch revoke` refusing to run without a
responder: on a SQLite store, with a Keycloak admin API faked by a local HTTP server (the
HTTP boundary of a third-party service)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.main import main
from pipeline.config import load_settings
from pipeline.response.executor import Executor
from pipeline.response.responders import build_responders
from pipeline.store.sqlite import SqliteStore
from schemas.actions import Action
from tests.response.conftest import alert_doc


class FakeKeycloak:
    """Token endpoint and session delete of a Keycloak realm, on loopback; records each request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        kc = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # http.server's name
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kc.requests.append(("POST", self.path))
                self._reply(200, {"access_token": "admin-token", "expires_in": 300, "token_type": "Bearer"})

            def do_DELETE(self) -> None:
                kc.requests.append(("DELETE", self.path))
                self._reply(204)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def deletes(self) -> list[str]:
        return [path for method, path in self.requests if method == "DELETE"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def keycloak() -> Iterator[FakeKeycloak]:
    kc = FakeKeycloak()
    yield kc
    kc.close()


RESPONDER = """
[response.routes]
keycloak = "kc"

[response.responders.kc]
type = "keycloak"
base_url = "{url}"
realm = "demo"
client_id = "tokenwatch"
client_secret_env = "TW_TEST_KC_SECRET"
"""


@pytest.fixture
def env(tmp_path: Path, keycloak: FakeKeycloak, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A store with three alerts whose session revocations await approval, and a config routing
    the Keycloak source to the fake Keycloak."""
    monkeypatch.setenv("TW_TEST_KC_SECRET", "kc-secret")
    monkeypatch.delenv("TOKENWATCH_ACTOR", raising=False)
    db, config = tmp_path / "tw.db", tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{db}"\n\n[response]\nenabled = true\n' + RESPONDER.format(url=keycloak.url),
                      encoding="utf-8")
    docs = [alert_doc(n, rule="replay.concurrent_use", action="revoke_session", source="keycloak") for n in (1, 2, 3)]
    store = SqliteStore(db)
    store.put_alerts(docs)
    actions = executor(config, store).submit(docs)
    assert [a.state for a in actions] == ["awaiting_approval"] * 3
    store.close()
    return config, db


def executor(config: Path, store: SqliteStore) -> Executor:
    """What the service's retry job runs, built from the same configuration."""
    settings = load_settings(config)
    return Executor(settings.response, store, build_responders(settings.response.responders))


def tw(config: Path, *argv: str, actor: str = "alice") -> int:
    return main([*argv, "--config", str(config), "--actor", actor])


def action_of(db: Path, alert: str) -> tuple[Action, dict[str, Any]]:
    store = SqliteStore(db)
    [action] = store.list_actions(alert_id=alert)
    doc = store.get_alert(alert)
    store.close()
    assert doc is not None
    return action, doc


def run_due(config: Path, db: Path) -> int:
    store = SqliteStore(db)
    try:
        return executor(config, store).run_due()
    finally:
        store.close()


def test_approve_queues_the_action_and_the_executor_runs_it(
    env: tuple[Path, Path], keycloak: FakeKeycloak, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    waiting, doc = action_of(db, "al-1")
    assert doc["response"]["state"] == "awaiting_approval"
    assert run_due(config, db) == 0 and keycloak.requests == []  # nothing runs before someone approves

    assert tw(config, "actions", "approve", waiting.id, "--note", "confirmed with alice") == 0
    assert capsys.readouterr().out == (f"{waiting.id} session:s-1: pending by alice; the service's retry job "
                                       "runs it within [response] retry_poll_s\n")
    approved, doc = action_of(db, "al-1")
    assert (approved.state, approved.actor, doc["response"]["state"]) == ("pending", "alice", "pending")

    assert run_due(config, db) == 1
    assert keycloak.deletes == ["/admin/realms/demo/sessions/s-1"]
    done, doc = action_of(db, "al-1")
    assert (done.state, doc["response"]["state"]) == ("succeeded", "succeeded")
    assert [action_of(db, a)[0].state for a in ("al-2", "al-3")] == ["awaiting_approval"] * 2
    store = SqliteStore(db)
    trail = [(e.verb, e.actor, e.result) for e in store.audit_trail(action_id=waiting.id)]
    store.close()
    assert trail[1:] == [("action.approve", "alice", "pending"), ("revoke.attempt", "alice", "attempt 1"),
                         ("revoke.result", "alice", "succeeded")]

    assert tw(config, "actions", "approve", waiting.id) == 2
    assert capsys.readouterr().err == (f"tokenwatch: action {waiting.id} is succeeded: approve applies only to "
                                       "an action that is awaiting_approval\n")


def test_deny_ends_it_and_the_executor_never_runs_it(
    env: tuple[Path, Path], keycloak: FakeKeycloak, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    waiting, _ = action_of(db, "al-2")
    assert tw(config, "actions", "deny", waiting.id, "--note", "alice is travelling", actor="bob") == 0
    assert capsys.readouterr().out == f"{waiting.id} session:s-2: denied by bob\n"
    denied, doc = action_of(db, "al-2")
    assert (denied.state, denied.next_attempt_at, doc["response"]["state"]) == ("denied", None, "denied")
    assert run_due(config, db) == 0 and keycloak.requests == []
    assert tw(config, "actions", "approve", denied.id) == 2
    assert "is denied: approve applies only to an action that is awaiting_approval" in capsys.readouterr().err
    assert action_of(db, "al-2")[0] == denied


def test_cancel_stops_an_approved_or_retrying_action_but_not_a_finished_one(
    env: tuple[Path, Path], keycloak: FakeKeycloak, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    first, _ = action_of(db, "al-1")
    second, _ = action_of(db, "al-3")
    assert tw(config, "actions", "approve", first.id) == 0
    store = SqliteStore(db)
    store.put_action(second.model_copy(update={"state": "failed", "attempts": 2, "last_error": "HTTP 503"}))
    store.close()
    assert tw(config, "actions", "cancel", first.id, "--note", "wrong user") == 0
    assert tw(config, "actions", "cancel", second.id) == 0
    assert run_due(config, db) == 0 and keycloak.requests == []
    for alert in ("al-1", "al-3"):
        action, doc = action_of(db, alert)
        assert (action.state, doc["response"]["state"]) == ("cancelled", "cancelled")
    capsys.readouterr()
    assert tw(config, "actions", "cancel", first.id) == 2
    assert capsys.readouterr().err == (f"tokenwatch: action {first.id} is cancelled: cancel applies only to an "
                                       "action that is awaiting_approval or pending or failed\n")


def test_unknown_action_id_exits_2(env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert tw(env[0], "actions", "deny", "act-nope") == 2
    assert capsys.readouterr().err == (
        "tokenwatch: no action with id 'act-nope' in the store (see `tokenwatch actions list`)\n")


def without_responders(config: Path, extra: str = "") -> None:
    text = config.read_text(encoding="utf-8")
    config.write_text(text[: text.index("[response.routes]")] + extra, encoding="utf-8")


ADVICE = ("no responder is routed for source 'keycloak' kind session in this configuration; nothing was changed. "
          'Set [response.routes] "keycloak" = "NAME" and a [response.responders.NAME] table: type = "keycloak" with ')


def test_approve_without_a_responder_is_refused_with_advice(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    without_responders(config)
    waiting, _ = action_of(db, "al-1")
    assert tw(config, "actions", "approve", waiting.id) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tokenwatch: action {waiting.id}: {ADVICE}base_url, realm, client_id and one of "
                          "client_secret_env, client_secret_file; ")
    assert action_of(db, "al-1")[0] == waiting


def test_revoke_without_a_responder_is_refused_and_never_changes_the_action(
    env: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to turn awaiting_approval into gave_up ("no responder") for good."""
    config, db = env
    without_responders(config)
    waiting, _ = action_of(db, "al-1")
    store = SqliteStore(db)
    trail = store.audit_trail()
    store.close()
    assert tw(config, "revoke", "--alert", "al-1") == 2
    assert capsys.readouterr().err.startswith(f"tokenwatch: alert al-1: {ADVICE}")
    assert action_of(db, "al-1")[0] == waiting
    store = SqliteStore(db)
    assert store.audit_trail() == trail
    store.close()


def test_revoke_runs_with_a_responder_or_in_dry_run(
    env: tuple[Path, Path], keycloak: FakeKeycloak, capsys: pytest.CaptureFixture[str]
) -> None:
    config, db = env
    assert tw(config, "revoke", "--alert", "al-1") == 0
    assert keycloak.deletes == ["/admin/realms/demo/sessions/s-1"]
    action, doc = action_of(db, "al-1")
    assert (action.state, action.mode, doc["response"]["state"]) == ("succeeded", "manual", "succeeded")
    without_responders(config, "dry_run = true\n")
    assert tw(config, "revoke", "--alert", "al-2") == 0
    assert action_of(db, "al-2")[0].state == "dry_run" and len(keycloak.deletes) == 1
