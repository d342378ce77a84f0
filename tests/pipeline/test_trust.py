"""Trust rules (``pipeline.ingest.trust``): which formats a topic carries, where canonical lines are
accepted, whose revocations are believed, and how a refusal is worded and dead-lettered."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from pipeline.cli.demo import DEMO_CONFIG
from pipeline.config import ConfigError, defaults_toml, load_settings
from pipeline.ingest.config import TrustConfig
from pipeline.ingest.trust import (
    DETECT_INPUT,
    MAX_REFUSED_LISTED,
    REVOCATION_KINDS,
    Refusal,
    TrustRules,
    describe,
    refused_letter,
)
from schemas.events import CanonicalEvent, EventKind
from schemas.redaction import make_token_hasher
from schemas.sources import FORMATS
from tests.conftest import TEST_HASH_KEY

T0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
HASH = make_token_hasher(TEST_HASH_KEY)
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def event(kind: str = "used", source: str = "keycloak", tenant: str | None = "main", n: int = 1) -> CanonicalEvent:
    return CanonicalEvent(event_id=f"e-{n}", kind=EventKind(kind), time=T0, source=source, tenant=tenant)


def rules(**config: Any) -> TrustRules:
    return TrustRules(TrustConfig(**config))


# -- formats per input ----------------------------------------------------------------------------
def test_by_default_a_topic_carries_every_format_but_canonical_and_detect_every_format() -> None:
    default = rules()
    assert default.allowed_formats("tokenwatch.events") == frozenset(FORMATS) - {"canonical"}
    assert default.allowed_formats(None) == frozenset(FORMATS)
    assert rules(detect_canonical=False).allowed_formats(None) == frozenset(FORMATS) - {"canonical"}


def test_a_trusted_topic_also_carries_canonical_by_name_or_pattern() -> None:
    trusted = rules(trusted_topics=["replay", "tw-*"])
    assert "canonical" in trusted.allowed_formats("replay")
    assert "canonical" in trusted.allowed_formats("tw-eu")
    assert "canonical" not in trusted.allowed_formats("tw")
    assert "canonical" not in trusted.allowed_formats("replay-2")


def test_topic_formats_exact_name_first_then_patterns_in_order() -> None:
    named = rules(topic_formats={"gw-*": ["gateway"], "gw-okta": ["okta", "gateway"], "*": ["keycloak"]})
    assert named.allowed_formats("gw-okta") == {"okta", "gateway"}
    assert named.allowed_formats("gw-eu") == {"gateway"}
    assert named.allowed_formats("idp") == {"keycloak"}


def test_a_named_trusted_topic_carries_canonical_only_when_listed() -> None:
    config = {"trusted_topics": ["mixed"], "topic_formats": {"mixed": ["gateway"], "own": ["canonical"]}}
    with pytest.raises(ValueError, match=r"topic_formats\['own'\] lists canonical but the topic is not in trusted"):
        TrustConfig(**config)
    both = rules(trusted_topics=["mixed", "own"], topic_formats={"mixed": ["gateway"], "own": ["canonical"]})
    assert both.allowed_formats("mixed") == {"gateway"}
    assert both.allowed_formats("own") == {"canonical"}
    refusal = both.check(event(source="idp"), "canonical", "mixed")  # trusted, but not meant to carry it
    assert refusal is not None and refusal.code == "format_not_allowed"


@pytest.mark.parametrize("config", [
    {"topic_formats": {"t": ["kafka"]}},
    {"authoritative": [{"format": "oktta"}]},
    {"authoritative": [{"format": "okta", "tenants": []}]},
    {"authoritative": [{"format": "okta", "realm": "x"}]},
    {"trusted": ["t"]},
])
def test_unknown_formats_and_keys_and_empty_allowlists_are_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TrustConfig(**config)


# -- the check ------------------------------------------------------------------------------------
def test_check_names_the_rule_that_refused() -> None:
    r = rules(topic_formats={"gw": ["gateway"]}, authoritative=[{"format": "keycloak", "tenants": ["main"]}])
    assert r.check(event(), "keycloak", "idp") is None
    assert r.check(event("revoked"), "keycloak", "idp") is None
    assert r.check(event(), "keycloak", "gw") == Refusal("format_not_allowed", "keycloak", "gw", "used", "main",
                                                         "keycloak")
    assert r.check(event(source="idp"), "canonical", "idp") == Refusal("canonical_untrusted", "canonical", "idp",
                                                                       "used", "main", "idp")
    assert r.check(event("session_ended", tenant="other"), "keycloak", "idp") == Refusal(
        "not_authoritative", "keycloak", "idp", "session_ended", "other", "keycloak")
    assert r.check(event("principal_disabled", "okta", None), "okta", None) == Refusal(
        "not_authoritative", "okta", DETECT_INPUT, "principal_disabled", None, "okta")


@pytest.mark.parametrize("kind", sorted(EventKind))
def test_only_revocation_class_events_need_an_authoritative_source(kind: EventKind) -> None:
    nobody = rules(authoritative=[])
    refusal = nobody.check(event(kind.value), "keycloak", "idp")
    assert (refusal is not None) == (kind in REVOCATION_KINDS)
    assert REVOCATION_KINDS == {EventKind.REVOKED, EventKind.SESSION_ENDED, EventKind.PRINCIPAL_DISABLED,
                                EventKind.REUSE_REPORTED}


def test_authoritative_sources_match_format_tenant_and_source() -> None:
    r = rules(trusted_topics=["own"], authoritative=[
        {"format": "canonical", "sources": ["idp"], "tenants": ["main", "eu"]},
        {"format": "okta"},
    ])
    assert r.check(event("revoked", "idp", "eu"), "canonical", "own") is None
    assert r.check(event("revoked", "idp", None), "canonical", "own") is not None  # no tenant is not "main"
    assert r.check(event("revoked", "okta", "main"), "canonical", "own") is not None  # says okta, is canonical
    assert r.check(event("revoked", "okta", None), "okta", "okta-logs") is None  # "*": even without a tenant


def test_by_default_idp_formats_and_canonical_are_authoritative_for_any_tenant() -> None:
    default = rules()
    for fmt in ("keycloak", "okta", "entra"):
        assert default.check(event("revoked", fmt, "any"), fmt, "idp") is None
    assert default.check(event("revoked", "gateway", "iss"), "gateway", "gw").code == "not_authoritative"
    assert default.check(event("revoked", "idp"), "canonical", None) is None  # detect: the operator's files
    assert default.check(event("revoked", "idp"), "canonical", "idp").code == "canonical_untrusted"


def test_split_keeps_order_and_pairs_each_refused_event_with_its_refusal() -> None:
    r = rules(authoritative=[{"format": "keycloak", "tenants": ["main"]}])
    events = [event("used", n=1), event("revoked", tenant="x", n=2), event("revoked", n=3), event("used", n=4)]
    kept, refused = r.split(events, "keycloak", "idp")
    assert [e.event_id for e in kept] == ["e-1", "e-3", "e-4"]
    assert [(e.event_id, f.code) for e, f in refused] == [("e-2", "not_authoritative")]
    plain = [event("used")]
    assert r.split(plain, "keycloak", "idp") == (plain, [])


# -- words and dead letters -----------------------------------------------------------------------------
def test_describe_names_the_deciding_key_and_quotes_the_senders_text_cut() -> None:
    assert describe(Refusal("canonical_untrusted", "canonical", DETECT_INPUT, "used", None, "x")) == (
        "trust: canonical events are not accepted from the detect input (trust.detect_canonical)")
    assert describe(Refusal("format_not_allowed", "okta", "gw", "used", None, "okta")) == (
        "trust: format okta is not allowed on topic 'gw' (trust.topic_formats)")
    hostile = describe(Refusal("not_authoritative", "canonical", "t", "revoked", "\x1b[2J" + "a" * 500, "idp"))
    assert "\x1b" not in hostile and "'\\x1b[2J" in hostile and len(hostile) < 300


def test_refused_letter_redacts_and_bounds_what_it_lists() -> None:
    refused = [(event("revoked", tenant=f"Bearer {JWT}", n=n),
                Refusal("not_authoritative", "canonical", "t", "revoked", f"Bearer {JWT}", "idp"))
               for n in range(MAX_REFUSED_LISTED + 5)]
    letter = refused_letter(refused, "canonical", "t:0:7", HASH)
    assert JWT not in str(letter)
    assert letter["trust"] == "not_authoritative" and letter["origin"] == "t:0:7"
    assert letter["refused_events"] == MAX_REFUSED_LISTED + 5 and len(letter["events"]) == MAX_REFUSED_LISTED
    assert letter["events"][0] == {"event_id": "e-0", "kind": "revoked"}


# -- configuration ----------------------------------------------------------------------------------------
def test_trust_section_loads_from_toml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokenwatch.toml"
    path.write_text('[trust]\ndetect_canonical = false\ntopic_formats = {"gw" = ["gateway"]}\n'
                    'authoritative = [{format = "keycloak", tenants = ["main"]}]\n')
    monkeypatch.setenv("TOKENWATCH_TRUST__TRUSTED_TOPICS", '["own"]')
    trust = load_settings(path).trust
    assert (trust.detect_canonical, trust.trusted_topics, trust.topic_formats) == (False, ("own",), {"gw": ("gateway",)})
    assert [(a.format, a.tenants, a.sources) for a in trust.authoritative] == [("keycloak", ("main",), ("*",))]
    path.write_text('[trust]\nauthoritative = [{format = "keycloack"}]\n')
    with pytest.raises(ConfigError, match=r"trust\.authoritative\.0\.format: .*unknown format 'keycloack'"):
        load_settings(path)


def test_defaults_file_documents_the_trust_section() -> None:
    text = defaults_toml()
    section = text[text.index("\n[trust]\n"):]
    assert "trusted_topics = []" in section and "topic_formats = {}" in section
    assert "detect_canonical = true" in section and "# authoritative: see README" in section


def test_demo_config_names_its_own_authoritative_sources() -> None:
    """The demo's topics carry the bundled sample (canonical, source "idp"); its revocations are
    believed, a canonical line claiming another source is not."""
    trust = TrustRules(load_settings(DEMO_CONFIG).trust)
    assert trust.check(event("revoked", "idp", "sample"), "canonical", "any-topic") is None
    assert trust.check(event("principal_disabled", "okta", "sample"), "canonical", "any-topic").code == (
        "not_authoritative")
    assert trust.check(event("session_ended", "keycloak", "other-realm"), "keycloak", "t").code == (
        "not_authoritative")


def test_an_authoritative_source_bound_to_its_topics_is_not_believed_from_another() -> None:
    """A writer to the gateway topic cannot pass a Keycloak LOGOUT of the right realm as the
    IdP's: the source is believed only from the topics its logs arrive on."""
    r = rules(authoritative=[{"format": "keycloak", "tenants": ["main"], "topics": ["idp-*"]}])
    assert r.check(event("session_ended"), "keycloak", "idp-events") is None
    refused = r.check(event("session_ended"), "keycloak", "gateway")
    assert refused is not None and refused.code == "not_authoritative"
    assert r.check(event("session_ended"), "keycloak", None) is None  # detect reads the files it is given
    assert r.check(event("used"), "keycloak", "gateway") is None  # uses need no authority
    assert rules().config.unbound_authorities() == ["keycloak", "okta", "entra", "k8s", "aks", "canonical"]
    assert r.config.unbound_authorities() == []


def test_run_with_response_enabled_refuses_sources_believed_from_any_topic(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline.cli.main import main

    config = tmp_path / "tokenwatch.toml"
    config.write_text('[response]\nenabled = true\n', encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "believes keycloak, okta, entra, k8s, aks, canonical revocations from any input topic" in err
    assert "topics = [" in err
