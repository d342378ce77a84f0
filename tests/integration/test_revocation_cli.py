"""`tokenwatch revoke --alert ID` and `tokenwatch breaker` against the store and a real IdP."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.response.breaker import FLAG
from pipeline.store.sqlite import SqliteStore
from tests.integration.oauth_server import OAuthServer, oauth_server  # noqa: F401 -- a pytest fixture, used by name
from tests.response.conftest import alert_doc


def write_config(tmp_path: Path, server: OAuthServer, responder: str) -> Path:
    path = tmp_path / "tokenwatch.toml"
    path.write_text(f"""
[store]
path = "{tmp_path / 'tw.db'}"

[response]
enabled = true
routes = {{ "*" = "idp" }}

[response.responders.idp]
type = "{responder}"
{'revocation_endpoint = "' + server.url + '/revoke"' if responder == "rfc7009" else 'base_url = "' + server.url + '"'}
{'client_id = "tokenwatch"' if responder == "rfc7009" else ''}
{'client_secret_env' if responder == "rfc7009" else 'api_token_env'} = "TW_IDP_SECRET"
""")
    return path


def test_revoke_needing_a_handle_is_queued_for_the_service_and_audited_with_the_analyst(
    oauth_server: OAuthServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811 -- the pytest fixture imported above, requested by name
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TW_IDP_SECRET", "tokenwatch-secret")
    config = write_config(tmp_path, oauth_server, "rfc7009")
    store = SqliteStore(tmp_path / "tw.db")
    store.put_alerts([alert_doc(1, rule="replay.concurrent_use", action="revoke_token")])
    store.close()
    assert main(["revoke", "--alert", "al-1", "--actor", "ana", "--config", str(config)]) == 0
    assert "pending (queued for the running service" in capsys.readouterr().out
    store = SqliteStore(tmp_path / "tw.db")
    [action] = store.list_actions(alert_id="al-1")
    assert (action.mode, action.actor, action.state) == ("manual", "ana", "pending")
    assert [(e.verb, e.actor) for e in store.audit_trail(alert_id="al-1")] == [("revoke.manual", "ana")]
    assert oauth_server.state.revocations == []
    assert main(["revoke", "--alert", "nope", "--config", str(config)]) == 2


def test_breaker_status_and_reset_are_audited(tmp_path: Path, oauth_server: OAuthServer,  # noqa: F811 -- the pytest fixture imported above, requested by name
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TW_IDP_SECRET", "tokenwatch-secret")
    config = write_config(tmp_path, oauth_server, "rfc7009")
    store = SqliteStore(tmp_path / "tw.db")
    store.set_flag(FLAG, '{"tripped_at": "2026-11-24T09:00:00+00:00", "count": 20, "alert_id": "brk-1"}')
    store.close()
    assert main(["breaker", "status", "--config", str(config)]) == 0
    assert "TRIPPED" in capsys.readouterr().out
    assert main(["breaker", "reset", "--actor", "ana", "--why", "storm over", "--config", str(config)]) == 0
    assert "breaker reset by ana" in capsys.readouterr().out
    store = SqliteStore(tmp_path / "tw.db")
    assert store.get_flag(FLAG) is None
    assert [(e.verb, e.actor, e.why) for e in store.audit_trail()] == [("breaker.reset", "ana", "storm over")]
