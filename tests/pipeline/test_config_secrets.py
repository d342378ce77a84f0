"""Secrets stay out of configuration URLs and out of `config check` output.

The attack: ``https://elastic:hunter2@…`` was accepted and printed back. Each URL-valued
key with a user or password is refused (exit 2) with advice, and the message never shows
the password; the same URLs without credentials, and ``@`` outside the authority, load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.config import ConfigError, Settings, load_settings, masked_dump
from pipeline.url_credentials import has_userinfo, masked_url, urls_with_userinfo

SECRET = "hunter2"
RFC7009 = '[response.responders.idp]\ntype = "rfc7009"\nclient_id = "tokenwatch"\nrevocation_endpoint = "{url}"\n'
KEYCLOAK = ('[response.responders.kc]\ntype = "keycloak"\nbase_url = "{url}"\nrealm = "corp"\n'
            'client_id = "tokenwatch"\n')


@pytest.mark.parametrize(
    ("toml", "key", "advice"),
    [
        ('[elasticsearch]\nhosts = ["https://elastic:hunter2@es.example:9200"]\n', "elasticsearch.hosts",
         "TOKENWATCH_ELASTICSEARCH__PASSWORD"),
        ('[elasticsearch]\nhosts = ["https://es1.example:9200", "https://hunter2@es2.example"]\n',
         "elasticsearch.hosts", "TOKENWATCH_ELASTICSEARCH__API_KEY"),
        ('[kafka]\nbootstrap_servers = ["alice:hunter2@kafka.example:9092"]\n', "kafka.bootstrap_servers",
         "TOKENWATCH_KAFKA__SASL_PASSWORD"),
        ('[kafka]\nbootstrap_servers = "k1:9092,SASL_SSL://alice:hunter2@k2:9093"\n', "kafka.bootstrap_servers",
         "kafka.sasl_password_file"),
        (RFC7009.format(url="https://tokenwatch:hunter2@idp.example/oauth2/revoke"),
         "response.responders.idp", "client_secret_env"),
        (KEYCLOAK.format(url="https://admin:hunter2@sso.example"), "response.responders.kc", "*_env variable"),
        ('[detectors.anomaly]\nfeed = "https://u:hunter2@models.example/m.skops"\n', "detectors.anomaly.feed",
         "TOKENWATCH_DETECTORS__<KEY>"),
    ],
)
def test_a_url_with_credentials_is_refused_with_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, key: str, advice: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    message = str(refused.value)
    assert message.startswith(key) and advice in message and "user name or password" in message
    assert SECRET not in message
    assert main(["config", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and SECRET not in err and err.startswith("error: ")


@pytest.mark.parametrize(
    "toml",
    [
        '[elasticsearch]\nhosts = ["https://es.example:9200", "http://127.0.0.1:9200"]\n',
        '[kafka]\nbootstrap_servers = ["kafka.example:9092", "10.0.0.2:9093"]\n',
        RFC7009.format(url="https://idp.example/oauth2/revoke?audience=ops@example.com"),
        KEYCLOAK.format(url="https://sso.example/auth"),
        '[response]\nprotected_users = ["admin@example.com"]\n',
    ],
)
def test_the_same_urls_without_credentials_load(tmp_path: Path, toml: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    load_settings(path)


def test_credentials_in_a_url_from_the_environment_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWATCH_ELASTICSEARCH__HOSTS", '["https://elastic:hunter2@es.example:9200"]')
    with pytest.raises(ConfigError, match="elasticsearch.hosts: .*https://\\*\\*\\*@es.example:9200/") as refused:
        load_settings(None)
    assert SECRET not in str(refused.value)


def test_config_check_masks_every_secret(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TOKENWATCH_ELASTICSEARCH__USERNAME", "elastic")
    monkeypatch.setenv("TOKENWATCH_ELASTICSEARCH__PASSWORD", SECRET)
    monkeypatch.setenv("TOKENWATCH_KAFKA__SSL_PASSWORD", SECRET + "-ssl")
    monkeypatch.setenv("TOKENWATCH_KAFKA__SASL_PASSWORD", SECRET + "-sasl")
    assert main(["config", "check", "--show"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    *settings_json, verdict = out.splitlines()
    assert verdict.startswith("OK: ")
    shown = json.loads("\n".join(settings_json))
    assert shown["elasticsearch"]["username"] == "elastic"
    assert shown["elasticsearch"]["password"] == "**********"
    assert shown["kafka"]["ssl_password"] == shown["kafka"]["sasl_password"] == "**********"


def test_masked_dump_hides_plain_secret_keys_and_url_credentials_but_not_where_secrets_live() -> None:
    settings = Settings(detectors={"custom": {
        "api_token": SECRET, "client_secret": SECRET, "client_secret_env": "IDP_SECRET",
        "password_file": "/run/secrets/pw", "endpoint": f"https://bot:{SECRET}@hooks.example/x?y=1",
        "max_linked_tokens": 5, "token_type": "refresh_token",
    }})
    shown = masked_dump(settings)["detectors"]["custom"]
    assert shown == {
        "api_token": "**********", "client_secret": "**********", "client_secret_env": "IDP_SECRET",
        "password_file": "/run/secrets/pw", "endpoint": "https://***@hooks.example/x?y=1",
        "max_linked_tokens": 5, "token_type": "refresh_token",
    }
    assert SECRET not in json.dumps(masked_dump(settings))


@pytest.mark.parametrize(
    ("url", "has", "masked"),
    [
        ("https://elastic:hunter2@es:9200/", True, "https://***@es:9200/"),
        ("https://token@es", True, "https://***@es"),
        ("https://u:p@h?q=1", True, "https://***@h?q=1"),
        ("https://es:9200/path@x", False, "https://es:9200/path@x"),
        ("https://es/?who=a@b#c@d", False, "https://es/?who=a@b#c@d"),
        ("mailto:ops@example.com", False, "mailto:ops@example.com"),
        ("admin@example.com", False, "admin@example.com"),
    ],
)
def test_userinfo_is_found_only_in_the_authority(url: str, has: bool, masked: str) -> None:
    assert has_userinfo(url) is has
    assert masked_url(url) == masked


def test_urls_with_userinfo_names_every_key() -> None:
    document = {"a": {"b": ["https://x", "https://u:p@y"]}, "c": "https://k@z", "d": 3}
    assert list(urls_with_userinfo(document)) == ["a.b.1", "c"]
