"""Forged revocations cannot steer automated response (issue 12, "Forged revocations").

Whoever can write to an input topic can write a ``canonical`` ``principal_disabled``
line naming any user: the victim's next ordinary request would be
``post_revocation_use.after_disable``, whose response (``revoke_subject``) is
automatic by default. The trust rules (``pipeline.ingest.trust``) refuse canonical lines
from untrusted topics and revocation-class events from sources that are not
authoritative; each refusal is a dead letter with its reason, and counted.

A topic is exercised as the service does it (normalize → trust → engine); ``detect``
through ``DetectRun`` itself. Every alert is planned with the response policy in dry
run: an attack plans no automatic action, its benign twin (the same revocation from
the authoritative source) still raises the alert and plans the revocation.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from pipeline.config import Settings
from pipeline.ingest.normalize import Normalizer
from pipeline.ingest.trust import Refusal, TrustRules, refused_letter
from pipeline.response.config import ResponseConfig
from pipeline.response.policy import plan
from pipeline.runtime.build import build_engine
from pipeline.service.config import ServiceConfig
from pipeline.sinks.base import MemorySink
from pipeline.sinks.kafka import KafkaSink
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY
from tests.detect_helpers import NOW, detect_lines
from tests.integration.conftest import kafka_bootstrap  # noqa: F401 -- the real broker, as in tests/integration
from tests.integration.test_service_poison import _alerts, _produce_to, _service, _topics
from tests.integration.test_service_run import _config, _read_topic
from tests.pipeline.test_e2e_keycloak import REALM, _session_then, introspect, kc
from tests.pipeline.test_e2e_okta import (
    ACCESS,
    ACCESS_GRANT,
    BOB_ID,
    LOGIN,
    SESSION,
    deactivate_bob,
    gateway_use,
)

TOPIC = "idp-and-gateway"
HASH = make_token_hasher(TEST_HASH_KEY)
DRY_RUN = ResponseConfig(enabled=True, dry_run=True)


def forged(kind: str, when: str, subject: str = BOB_ID, **extra: Any) -> dict[str, Any]:
    """A canonical line as anyone with write access to the topic can produce it."""
    return {"canonical_version": 1, "event_id": f"forged-{kind}-{subject}-{when}", "kind": kind, "time": when,
            "source": "okta", "subject": {"id": subject, "kind": "user"}, **extra}


def grant_for(user_id: str) -> dict[str, Any]:
    """Okta grants ``AT.<user_id>`` to ``user_id`` in a session of their own."""
    grant = copy.deepcopy(ACCESS_GRANT)
    user, token = grant["target"]
    grant.update(uuid=f"grant-{user_id}", actor={**grant["actor"], "id": user_id})
    grant["authenticationContext"]["externalSessionId"] = f"session-{user_id}"
    user["id"] = token["detailEntry"]["subject"] = user_id
    token["id"] = f"AT.{user_id}"
    return grant


def through_topic(lines: list[dict[str, Any]], trust: dict[str, Any] | None = None,
                  topic: str = TOPIC) -> tuple[list[dict[str, Any]], list[Refusal], list[dict[str, Any]]]:
    """Lines as the service takes them from ``topic``: normalize, the trust rules, the engine.
    Returns the alert documents, the refusals and the dead letters of the refused records."""
    settings = Settings(trust=trust or {})
    normalizer = Normalizer(HASH, settings.input, clock=lambda: NOW)
    rules, engine = TrustRules(settings.trust), build_engine(settings, None)
    alerts, refusals, letters = [], [], []
    for number, line in enumerate(lines):
        result = normalizer.normalize(orjson.dumps(line), f"{topic}:0:{number}")
        assert result.dead_letter is None, result.dead_letter
        kept, refused = rules.split(result.events, result.format or "unknown", topic)
        if refused:
            refusals += [refusal for _, refusal in refused]
            letters.append(refused_letter(refused, result.format or "unknown", f"{topic}:0:{number}", HASH))
        for event in kept:
            alerts += engine.submit(event)
    alerts += engine.flush()
    return [alert.to_json_dict() for alert in alerts], refusals, letters


def automatic(alerts: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(rule, action, target id) of every action the policy would take automatically."""
    now = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    planned = [plan(alert, DRY_RUN, now) for alert in alerts]
    return [(a.rule_id, a.action, a.target.id) for a in planned if a is not None and a.mode == "auto"]


def rules_of(alerts: list[dict[str, Any]]) -> list[str]:
    return sorted(alert["rule"]["id"] for alert in alerts)


BOB_SESSION = [LOGIN, ACCESS_GRANT]
BOBS_REQUEST = gateway_use("2026-11-24T09:25:00.000Z")


# -- canonical principal_disabled on an input topic -----------------------------------------------
def test_forged_canonical_disable_on_the_input_topic_triggers_nothing_and_is_dead_lettered() -> None:
    lines = [*BOB_SESSION, forged("principal_disabled", "2026-11-24T09:20:00Z"), BOBS_REQUEST]
    alerts, refusals, letters = through_topic(lines)  # the default [trust]: no topic is trusted
    assert alerts == [] and automatic(alerts) == []
    assert [(r.code, r.format, r.origin, r.kind) for r in refusals] == [
        ("canonical_untrusted", "canonical", TOPIC, "principal_disabled")]
    [letter] = letters
    assert letter["reason"] == f"trust: canonical events are not accepted from topic {TOPIC!r} (trust.trusted_topics)"
    assert (letter["trust"], letter["format"], letter["origin"], letter["refused_events"]) == (
        "canonical_untrusted", "canonical", f"{TOPIC}:0:2", 1)
    assert letter["events"] == [{"event_id": f"forged-principal_disabled-{BOB_ID}-2026-11-24T09:20:00Z",
                                 "kind": "principal_disabled"}]


def test_the_forged_line_is_an_attack_wherever_canonical_is_believed() -> None:
    """What the trust rules stop: the same line on a topic trusted without restriction."""
    lines = [*BOB_SESSION, forged("principal_disabled", "2026-11-24T09:20:00Z"), BOBS_REQUEST]
    alerts, refusals, _ = through_topic(lines, {"trusted_topics": [TOPIC]})
    assert refusals == []
    assert automatic(alerts) == [("post_revocation_use.after_disable", "revoke_subject", BOB_ID)]


def test_benign_twin_the_okta_deactivation_still_raises_after_disable_and_plans_the_revocation() -> None:
    lines = [*BOB_SESSION, deactivate_bob("2026-11-24T09:20:00.000Z"), BOBS_REQUEST]
    alerts, refusals, _ = through_topic(lines)
    assert refusals == []
    assert automatic(alerts) == [("post_revocation_use.after_disable", "revoke_subject", BOB_ID)]


def test_five_forged_lines_plan_no_automatic_revocation_and_are_counted() -> None:
    """The finding's figure: 5 forged disables of 5 users with live tokens, each user then making an
    ordinary request. Believed, they plan 5 automatic subject revocations; refused, none."""
    lines = [grant_for(f"victim-{n}") for n in range(5)]
    lines += [forged("principal_disabled", "2026-11-24T09:20:00Z", subject=f"victim-{n}") for n in range(5)]
    lines += [gateway_use(f"2026-11-24T09:2{5 + n // 3}:0{n}.000Z", sub=f"victim-{n}", jti=f"AT.victim-{n}")
              for n in range(5)]
    believed, _, _ = through_topic(lines, {"trusted_topics": [TOPIC]})
    assert Counter(action for _, action, _ in automatic(believed)) == {"revoke_subject": 5}
    alerts, refusals, letters = through_topic(lines)
    assert automatic(alerts) == [] and not any("after_disable" in rule for rule in rules_of(alerts))
    assert Counter(r.code for r in refusals) == {"canonical_untrusted": 5} and len(letters) == 5


# -- a forged canonical revocation, on a topic that is trusted but names its authorities --------------
def test_forged_canonical_revoked_from_a_source_not_named_authoritative_triggers_nothing() -> None:
    """A trusted topic whose producer maps the IdP's logs (source "idp", tenant "main"): a line
    claiming another source is not believed as a revocation; its benign twin is."""
    trust = {"trusted_topics": [TOPIC],
             "authoritative": [{"format": "okta"}, {"format": "canonical", "sources": ["idp"], "tenants": ["main"]}]}
    revoke = forged("revoked", "2026-11-24T09:20:00Z", token={"id": ACCESS},
                    revocation={"target": "token"})
    alerts, refusals, letters = through_topic([*BOB_SESSION, revoke, BOBS_REQUEST], trust)
    assert automatic(alerts) == [] and "post_revocation_use.after_revocation" not in rules_of(alerts)
    assert [(r.code, r.kind, r.tenant, r.source) for r in refusals] == [("not_authoritative", "revoked", None, "okta")]
    assert letters[0]["reason"] == ("trust: revoked from canonical (tenant none, source 'okta') is not from an "
                                    "authoritative source (trust.authoritative)")
    twin = {**revoke, "source": "idp", "tenant": "main"}
    alerts, refusals, _ = through_topic([*BOB_SESSION, twin, BOBS_REQUEST], trust)
    assert refusals == []
    assert rules_of(alerts) == ["post_revocation_use.after_revocation"]
    # revoke_session: the session the token was issued in (lineage state)
    assert automatic(alerts) == [("post_revocation_use.after_revocation", "revoke_session", SESSION)]


# -- an IdP format, from a tenant that is not authoritative -----------------------------------------
KEYCLOAK_ONLY_OURS = {"authoritative": [{"format": "keycloak", "tenants": [REALM]}]}


def _logout(realm: str) -> dict[str, Any]:
    return kc("LOGOUT", 600, {"redirect_uri": "https://portal.example.org/"}, clientId=None, realmId=realm)


def test_keycloak_logout_from_another_realm_is_not_believed() -> None:
    lines = _session_then(_logout("attackers-realm"), introspect(900, "at-2"))
    alerts, refusals, letters = through_topic(lines, KEYCLOAK_ONLY_OURS)
    assert alerts == [] and automatic(alerts) == []
    assert [(r.code, r.format, r.kind, r.tenant) for r in refusals] == [
        ("not_authoritative", "keycloak", "session_ended", "attackers-realm")]
    assert "tenant 'attackers-realm'" in letters[0]["reason"]
    believed, _, _ = through_topic(lines)  # the default: every Keycloak realm is authoritative
    assert rules_of(believed) == ["post_revocation_use.after_revocation"]


def test_benign_twin_keycloak_logout_from_our_realm_raises_after_revocation() -> None:
    alerts, refusals, _ = through_topic(_session_then(_logout(REALM), introspect(900, "at-2")), KEYCLOAK_ONLY_OURS)
    assert refusals == [] and rules_of(alerts) == ["post_revocation_use.after_revocation"]


# -- a format the topic is not meant to carry ---------------------------------------------------------
def test_okta_deactivation_on_a_gateway_only_topic_is_refused() -> None:
    lines = [*BOB_SESSION, deactivate_bob("2026-11-24T09:20:00.000Z"), BOBS_REQUEST]
    trust = {"topic_formats": {"gateway-*": ["gateway"]}}
    alerts, refusals, _ = through_topic(lines, trust, topic="gateway-eu")
    assert alerts == []
    assert Counter((r.code, r.format) for r in refusals) == {("format_not_allowed", "okta"): 3}
    alerts, refusals, _ = through_topic(lines, trust, topic="okta-logs")  # not named: every format but canonical
    assert refusals == [] and rules_of(alerts) == ["post_revocation_use.after_disable"]


# -- `tokenwatch detect`: its input is one source, trusted by configuration -----------------------------
@pytest.mark.parametrize("detect_canonical", [False, True])
def test_detect_refuses_forged_canonical_lines_when_its_input_is_not_trusted(detect_canonical: bool) -> None:
    lines = [*BOB_SESSION, forged("principal_disabled", "2026-11-24T09:20:00Z"), BOBS_REQUEST]
    found = detect_lines(lines, {"trust": {"detect_canonical": detect_canonical}})
    if detect_canonical:  # the operator's own file: believed, as before
        assert automatic(found.alerts) == [("post_revocation_use.after_disable", "revoke_subject", BOB_ID)]
        assert found.summary.refused == {}
        return
    assert found.alerts == [] and automatic(found.alerts) == []
    assert found.summary.refused == {"canonical_untrusted": 1}
    assert found.summary.dead_letters == {"canonical": 1}
    assert found.summary.per_format == {"okta": 2, "gateway": 1}
    [letter] = found.dead_letters
    assert letter["reason"] == "trust: canonical events are not accepted from the detect input (trust.detect_canonical)"
    assert "refused by trust rules (dead-lettered): 1 canonical_untrusted=1" in found.summary.render()


def test_detect_refuses_a_revocation_from_a_realm_that_is_not_authoritative() -> None:
    lines = _session_then(_logout("attackers-realm"), introspect(900, "at-2"))
    found = detect_lines(lines, {"trust": KEYCLOAK_ONLY_OURS})
    assert found.alerts == []
    assert found.summary.refused == {"not_authoritative": 1}
    assert [d["trust"] for d in found.dead_letters] == ["not_authoritative"]
    twin = detect_lines(_session_then(_logout(REALM), introspect(900, "at-2")), {"trust": KEYCLOAK_ONLY_OURS})
    assert [a["rule"]["id"] for a in twin.alerts] == ["post_revocation_use.after_revocation"]


# -- `tokenwatch run`: the forged line ends on the dead-letter topic, never on the revocations topic -----
def test_service_dead_letters_the_forged_line_and_publishes_only_the_real_revocation(
    kafka_bootstrap: str,  # noqa: F811 -- the imported fixture
) -> None:
    """Default [trust], a real broker: Bob's forged disable is refused, Carol's real Okta deactivation
    goes to every instance and her next use still raises after_disable (so Bob's use, earlier in the
    same partition, was judged too)."""
    name = f"trust-{uuid.uuid4().hex[:8]}"
    kafka = _config(kafka_bootstrap, name)
    _topics(kafka, 1)
    carol_off = deactivate_bob("2026-11-24T09:20:00.000Z")
    carol_off.update(uuid="u-deactivate-carol")
    carol_off["target"][0]["id"] = "carol"
    lines = [LOGIN, ACCESS_GRANT, grant_for("carol"), forged("principal_disabled", "2026-11-24T09:20:00Z"),
             carol_off, BOBS_REQUEST, gateway_use("2026-11-24T09:25:30.000Z", sub="carol", jti="AT.carol")]
    offsets = _produce_to(kafka, name, [(0, orjson.dumps(line)) for line in lines])
    settings = Settings(kafka=kafka, service=ServiceConfig(metrics_port=0, checkpoint_interval_s=0.5,
                                                           poll_timeout_ms=100))
    memory = MemorySink()
    with _service(settings, [KafkaSink(kafka), memory]) as running:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and running.thread.is_alive() and not _alerts(memory):
            time.sleep(0.2)
        assert running.thread.is_alive(), running.error
        assert running.service.counts["trust_refused"] == 1
    assert running.error is None, repr(running.error)
    assert [(a["rule"]["id"], a["token"]["id"]) for a in _alerts(memory)] == [
        ("post_revocation_use.after_disable", "AT.carol")]
    revocations = _read_topic(kafka, kafka.topics.revocations, 2, timeout_s=5)  # 2: an extra one would show
    assert [orjson.loads(r.value)["event_id"] for r in revocations] == ["okta:u-deactivate-carol"]
    dead = _read_topic(kafka, kafka.topics.dead_letter, 1)
    assert [(r.key, dict(r.headers)["tokenwatch.reason"]) for r in dead] == [
        (f"{name}-0-{offsets[3][1]}-trust".encode(),
         f"trust: canonical events are not accepted from topic {name!r} (trust.trusted_topics)".encode())]
    letter = orjson.loads(dead[0].value)
    assert (letter["trust"], letter["format"], letter["refused_events"]) == ("canonical_untrusted", "canonical", 1)
    assert letter["source_record"] == {"topic": name, "partition": 0, "offset": offsets[3][1]}
