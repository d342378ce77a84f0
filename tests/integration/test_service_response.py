"""`tokenwatch run` with automated response: a refresh-token reuse read from Kafka is
revoked at a real RFC 7009 authorization server (Authlib, loopback) through the
revocation handles that came sealed with the events; introspection then says
inactive, the revocation is published to every instance, and the handles never
reach Elasticsearch, the store, the alerts or the logs."""

from __future__ import annotations

import signal
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.kafka.config import producer_kwargs
from pipeline.kafka.topics import ensure_topics
from pipeline.response.handles import generate_key_pem, load_private_key, seal
from pipeline.store.sqlite import SqliteStore
from schemas.redaction import make_token_hasher
from tests.integration.oauth_server import OAuthServer, oauth_server  # noqa: F401 -- a pytest fixture, used by name
from tests.integration.test_service_run import HASH_KEY, _config, _es_alerts, _read_topic, _start, _write_config

HASH = make_token_hasher(HASH_KEY.encode())


def _line(event_id: str, kind: str, when: datetime, token: str, ttype: str, parent: str | None,
          handle: str, ip: str = "79.200.1.10") -> bytes:
    iso = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return orjson.dumps({
        "canonical_version": 1, "event_id": event_id, "kind": kind, "time": iso, "source": "idp",
        "subject": {"id": "alice", "kind": "user"}, "client_id": "portal", "session_id": "s-1",
        "network": {"ip": ip, "user_agent": "Mozilla/5.0"},
        "token": {"id": HASH(token), "type": ttype, "family_id": "fam-A", "parent_id": parent and HASH(parent),
                  "issued_at": iso, "expires_at": (when + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "scopes": ["openid"],
        "tokenwatch_handle": handle,
    })


def test_run_revokes_a_reused_refresh_family_through_rfc7009(
    kafka_bootstrap: str, osmem_clone: Any, oauth_server: OAuthServer, tmp_path: Path  # noqa: F811 -- the pytest fixture imported above, requested by name
) -> None:
    name = f"resp-{uuid.uuid4().hex[:8]}"
    prefix = f"tw{uuid.uuid4().hex[:6]}"
    kafka = _config(kafka_bootstrap, name)
    ensure_topics(kafka, 3)
    private_pem, _ = generate_key_pem()
    public = load_private_key(private_pem).public_key()
    login = oauth_server.login()
    rotated = oauth_server.refresh(login["refresh_token"])
    stolen = oauth_server.refresh(login["refresh_token"])  # the same refresh token redeemed twice
    tokens = {
        "rt1": (login["refresh_token"], "refresh"), "rt2": (rotated["refresh_token"], "refresh"),
        "rt2x": (stolen["refresh_token"], "refresh"),
    }
    expires = time.time() + 3600

    def sealed(raw: str, ttype: str) -> str:
        return seal(public, raw, f"{ttype}_token", expires, family_id="fam-A")

    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=10)
    lines = [
        _line("e1", "issued", start, tokens["rt1"][0], "refresh", None, sealed(*tokens["rt1"])),
        _line("e2", "refreshed", start + timedelta(minutes=1), tokens["rt2"][0], "refresh", tokens["rt1"][0],
              sealed(*tokens["rt2"])),
        _line("e3", "refreshed", start + timedelta(minutes=2), tokens["rt2x"][0], "refresh", tokens["rt1"][0],
              sealed(*tokens["rt2x"])),
    ]
    db = tmp_path / "alerts.db"
    config_path = tmp_path / "tokenwatch.toml"
    _write_config(config_path, kafka, osmem_clone.url, prefix)
    with config_path.open("a") as config:
        config.write(f"""
[store]
path = "{db}"

[response]
enabled = true
routes = {{"*" = "idp"}}
retry_poll_s = 0.2

[response.responders.idp]
type = "rfc7009"
revocation_endpoint = "{oauth_server.url}/revoke"
client_id = "tokenwatch"
client_secret_env = "TW_IDP_SECRET"
timeout_s = 2
""")
    log_path = tmp_path / "run.log"
    proc = _start(config_path, log_path, {"TW_IDP_SECRET": "tokenwatch-secret", "TOKENWATCH_HANDLE_KEY": private_pem,
                                          "TOKENWATCH_ENGINE__ALLOWED_LATENESS_S": "0.5"})
    producer = KafkaProducer(**producer_kwargs(kafka))
    try:
        for line in lines:
            producer.send(name, key=b"alice", value=line)
        producer.flush()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if all(not oauth_server.introspect(raw)["active"] for raw, _ in tokens.values()):
                break
            time.sleep(0.3)
        revocations = _read_topic(kafka, kafka.topics.revocations, 1)
    finally:
        producer.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]

    assert [oauth_server.introspect(raw)["active"] for raw, _ in tokens.values()] == [False] * 3, \
        log_path.read_text()[-3000:]
    # The revocation went back into the stream for every instance.
    [revoked] = [orjson.loads(r.value) for r in revocations]
    assert revoked["kind"] == "revoked" and revoked["revocation"]["target"] == "family"
    assert revoked["token"]["family_id"] == "fam-A"
    # The action and its audit trail are in the store; the alert is in Elasticsearch.
    store = SqliteStore(db)
    try:
        [action] = store.list_actions()
        assert (action.rule_id, action.state, action.target.kind, action.target.id) == (
            "replay.refresh_reuse", "succeeded", "family", "fam-A")
        assert "revoke.result" in {entry.verb for entry in store.audit_trail(action_id=action.id)}
    finally:
        store.close()
    client = Elasticsearch(**client_kwargs(ElasticsearchConfig(hosts=[osmem_clone.url], flavour="opensearch")))
    rules = {h["_source"]["rule"]["id"] for h in _es_alerts(client, prefix)}
    assert "replay.refresh_reuse" in rules
    # Neither the raw tokens nor their sealed handles went anywhere.
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("alerts.db*"))  # with the WAL
    everywhere = log_path.read_bytes() + stored + orjson.dumps(_es_alerts(client, prefix))
    for raw, _ in tokens.values():
        assert raw.encode() not in everywhere
    for line in lines:
        assert orjson.loads(line)["tokenwatch_handle"].encode()[:40] not in everywhere
