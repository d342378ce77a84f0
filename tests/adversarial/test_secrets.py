"""No planted credential leaves tokenwatch in clear: alerts, dead letters, the store,
``alerts list/show``, the console and the JSON logs.

Secrets are planted in the places and spellings an attacker (or a careless vendor)
uses — a JWT in a user agent, ``?access_token=`` in a gateway path, a raw token in
``authorization``, ``X-Api-Key``, ``refreshToken`` in a Keycloak line,
``session_token`` as a list, an AWS secret key and session token in a CloudTrail
record, a cookie header, ``client_secret`` in a body, … — both in valid lines that
still raise their alerts and in lines that end as dead letters.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.cli.main import main
from pipeline.logs import configure
from schemas.redaction import TokenHasher

FORMATS = Path(__file__).resolve().parents[1] / "data" / "formats"

JWT_UA = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtYWxsb3J5In0.UAsigPlanted01"
QUERY_ACCESS = "QueryAccessTokPlanted02"
RAW_AUTHZ = "RawAuthzOpaquePlanted03"
API_KEY = "ApiKeyValuePlanted04"
KC_REFRESH = "KcRefreshTokPlanted05"
SESSION_A, SESSION_B = "SessListAPlanted06", "SessListBPlanted07"
AWS_SECRET = "wJalrXUtnFEMIK7MDENGbPxRfiCYPLANTED08KEY"
AWS_SESSION = "IQoJb3JpZ2luX2VjEPlanted09SessionTokenValueQQQQ"
COOKIE = "CookieSidPlanted10"
CLIENT_SECRET = "ClientSecretPlanted11"
X_REFRESH = "XRefreshHeaderPlanted12"
AUTH_CODE = "AuthCodePlanted13"
BASIC = base64.b64encode(b"svc:BasicPasswordPlanted14").decode()
BEARER = "BearerOpaquePlanted15"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib2IifQ.IdTokPlanted16"
DEEP = "DeepNestedPlanted17"
PASSWORD = 55512345678  # a numeric password

SECRETS = [JWT_UA, QUERY_ACCESS, RAW_AUTHZ, API_KEY, KC_REFRESH, SESSION_A, SESSION_B, AWS_SECRET,
           AWS_SESSION, COOKIE, CLIENT_SECRET, X_REFRESH, AUTH_CODE, BASIC, BEARER, ID_TOKEN, DEEP, str(PASSWORD)]


def _samples(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (FORMATS / f"{name}.jsonl").read_bytes().splitlines()]


def _pristine() -> list[bytes]:
    return [orjson.dumps(raw) for name in ("cloudtrail", "entra", "gateway", "graph", "keycloak", "okta")
            for raw in _samples(name)]


def _headers() -> dict[str, Any]:
    return {"X-Api-Key": API_KEY, "x-refresh-token": X_REFRESH, "Cookie": f"SID={COOKIE}; theme=dark",
            "Proxy-Authorization": f"Basic {BASIC}"}


def _planted_valid() -> list[bytes]:
    """The sample lines of six formats with secrets planted where they still map and alert."""
    cloudtrail, entra, gateway, graph = (_samples(n) for n in ("cloudtrail", "entra", "gateway", "graph"))
    keycloak, okta = _samples("keycloak"), _samples("okta")
    cloudtrail[0]["responseElements"]["credentials"].update(sessionToken=AWS_SESSION, secretAccessKey=AWS_SECRET)
    use = gateway[1]  # the DELETE from a hosting network that raises scope_not_granted
    use["path"] = f"/orders/42?access_token={QUERY_ACCESS}&code={AUTH_CODE}&page=2"
    use["user_agent"] = f"curl/8.5 {JWT_UA}"
    use["headers"] = _headers()
    use["body"] = f"grant_type=client_credentials&client_id=svc&client_secret={CLIENT_SECRET}"
    raw_token_use = {**gateway[0], "request_id": "gw-raw", "jwt": None, "authorization": RAW_AUTHZ}
    graph[1]["RequestUri"] = f"https://graph.microsoft.com/v1.0/users?code={AUTH_CODE}#id_token={ID_TOKEN}"
    keycloak[3]["details"].update(refreshToken=KC_REFRESH, client_secret=CLIENT_SECRET, password=PASSWORD)
    okta[1]["debugContext"]["debugData"]["session_token"] = [SESSION_A, SESSION_B]
    records = [*cloudtrail, *entra, *gateway, raw_token_use, *graph, *keycloak, *okta]
    return [orjson.dumps(raw) for raw in records]


def _planted_dead() -> list[bytes]:
    """Lines of several formats that are dead-lettered, each carrying secrets."""
    gateway = _samples("gateway")[1]
    bad_gateway = {**gateway, "status": "teapot", "path": f"/cb?access_token={QUERY_ACCESS}",
                   "user_agent": JWT_UA, "authorization": f"Bearer {BEARER}", "token": RAW_AUTHZ,
                   "headers": _headers(), "body": {"client_secret": CLIENT_SECRET, "code": AUTH_CODE}}
    bad_keycloak = {**_samples("keycloak")[3], "time": "yesterday"}
    bad_keycloak["details"] = {**bad_keycloak["details"], "refreshToken": KC_REFRESH,
                               "SessionToken": {"value": SESSION_A, "id": "kept-id"}}
    bad_okta = {**_samples("okta")[1], "published": "not a time"}
    bad_okta["debugContext"] = {"debugData": {"session_token": [SESSION_A, SESSION_B], "id_token": ID_TOKEN}}
    bad_cloudtrail = {**_samples("cloudtrail")[0], "eventTime": f"never {ID_TOKEN}"}  # quoted by the reason
    bad_cloudtrail["responseElements"] = {"credentials": {"accessKeyId": "ASIAEXAMPLETEMP0001",
                                                          "secretAccessKey": AWS_SECRET, "sessionToken": AWS_SESSION}}
    truncated = (b'{"type": "REFRESH_TOKEN", "refreshToken":"' + KC_REFRESH.encode() + b'", "session_token":["'
                 + SESSION_A.encode() + b'","' + SESSION_B.encode() + b'"], "Authorization": "Bearer '
                 + BEARER.encode() + b'", "x-api-key": "' + API_KEY.encode() + b'", "ua": "' + JWT_UA[:30].encode())
    http_dump = (f"POST /token?code={AUTH_CODE} HTTP/1.1 Authorization: Basic {BASIC} Cookie: SID={COOKIE}; a=b "
                 f"X-Api-Key: {API_KEY} body=grant_type=x&client_secret={CLIENT_SECRET} "
                 f"aws_secret_access_key={AWS_SECRET} AWS_SESSION_TOKEN={AWS_SESSION}").encode()
    oversized = orjson.dumps({**gateway, "status": "teapot", "refresh_token": KC_REFRESH, "user_agent": JWT_UA,
                              "padding": "p" * 70_000})
    deep: Any = {"refreshToken": DEEP, "note": DEEP}
    for _ in range(200):
        deep = {"a": deep}
    return [orjson.dumps(x) for x in (bad_gateway, bad_keycloak, bad_okta, bad_cloudtrail, deep)] + [
        truncated, http_dump, oversized]


def _alerts(text: bytes) -> list[tuple[str, str]]:
    return sorted((a["rule"]["id"], a["token"]["id"]) for a in map(orjson.loads, text.splitlines()))


def _detect(tmp_path: Path, name: str, lines: list[bytes]) -> tuple[Path, Path, Path]:
    work = tmp_path / name
    work.mkdir()
    source, alerts, dead = work / "in.jsonl", work / "alerts.jsonl", work / "dead.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    config = work / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{work / "store.db"}"\n', encoding="utf-8")
    argv = ["detect", "--input", str(source), "--output", str(alerts), "--dead-letter", str(dead),
            "--store", "--config", str(config)]
    assert main(argv) == 0
    return work, alerts, dead


def _leaks(blob: str) -> list[str]:
    return [secret for secret in SECRETS if secret in blob]


def test_planted_secrets_reach_no_output_and_change_no_alert(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], hasher: TokenHasher
) -> None:
    _, clean_alerts, _ = _detect(tmp_path, "clean", _pristine())
    expected = _alerts(clean_alerts.read_bytes())
    capsys.readouterr()
    work, alerts, dead = _detect(tmp_path, "planted", [*_planted_valid(), *_planted_dead()])
    # The secrets change no verdict: the same rules fire for the same tokens (the raw-token
    # use adds its own hashed token to no alert).
    assert _alerts(alerts.read_bytes()) == expected and expected
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(letters) == len(_planted_dead())

    config = str(work / "tokenwatch.toml")
    assert main(["alerts", "list", "--config", config]) == 0
    assert main(["alerts", "list", "--json", "--config", config]) == 0
    for alert_id in (a["alert"]["id"] for a in map(orjson.loads, alerts.read_bytes().splitlines())):
        assert main(["alerts", "show", alert_id, "--config", config]) == 0
        assert main(["alerts", "show", alert_id, "--json", "--config", config]) == 0
    console = capsys.readouterr()

    outputs = {
        "alerts": alerts.read_text(encoding="utf-8"),
        "dead letters": dead.read_text(encoding="utf-8"),
        "stdout": console.out,
        "stderr": console.err,
        **{f"store {p.name}": p.read_bytes().decode("latin-1") for p in work.glob("store.db*")},
    }
    assert outputs["stdout"] and len(outputs) >= 5
    assert {name: _leaks(text) for name, text in outputs.items()} == {name: [] for name in outputs}
    # Redacted, not dropped: an analyst still correlates the hashes and reads the ids.
    everything = "".join(outputs.values())
    for secret in (KC_REFRESH, API_KEY, X_REFRESH, CLIENT_SECRET, AWS_SECRET, AWS_SESSION, SESSION_A, BEARER):
        assert hasher(secret) in outputs["dead letters"], secret
    assert hasher(QUERY_ACCESS) in outputs["alerts"]  # evidence.resource keeps the path, hashed query
    assert "ASIAEXAMPLETEMP0001" in everything and "kept-id" in outputs["dead letters"]


def test_json_logs_redact_message_arguments_extras_and_stack_traces(hasher: TokenHasher) -> None:
    out = io.StringIO()
    configure(hasher, "INFO", out)
    log = logging.getLogger("tokenwatch.test.secrets")
    try:
        log.warning("record refused: %s from %s", {"refreshToken": KC_REFRESH, "tokenId": "tid-1"},
                    f"/cb?access_token={QUERY_ACCESS}")
        log.info("headers seen", extra={"headers": _headers(), "session_token": [SESSION_A, SESSION_B],
                                        "client_secret": CLIENT_SECRET, "user_agent": f"x {JWT_UA}",
                                        "aws": f"aws_secret_access_key={AWS_SECRET}", "count": 3})
        log.info("body %(body)s", {"body": f"client_secret={CLIENT_SECRET}&code={AUTH_CODE}"})
        try:
            raise ValueError(f"bad credentials {{'secretAccessKey': '{AWS_SECRET}', 'sessionToken': '{AWS_SESSION}'}}")
        except ValueError:
            log.exception("could not map Authorization: Bearer %s", BEARER)
    finally:
        logging.getLogger().handlers.clear()
    text = out.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 4 and _leaks(text) == []
    assert lines[0]["message"] == (
        f"record refused: {{'refreshToken': '{hasher(KC_REFRESH)}', 'tokenId': 'tid-1'}} from "
        f"/cb?access_token={hasher(QUERY_ACCESS)}"
    )
    assert lines[1]["headers"]["X-Api-Key"] == hasher(API_KEY) and lines[1]["count"] == 3
    assert lines[1]["session_token"] == [hasher(SESSION_A), hasher(SESSION_B)]
    assert lines[1]["client_secret"] == hasher(CLIENT_SECRET)
    assert lines[3]["message"] == f"could not map Authorization: Bearer {hasher(BEARER)}"
