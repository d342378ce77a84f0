"""Policy: mode per rule and severity, protected principals, what to revoke, routing."""

from __future__ import annotations

import pytest

from pipeline.response.config import ResponseConfig
from pipeline.response.policy import mode_for, plan, responder_for, target_for
from schemas.actions import RevocationTarget, action_id
from tests.response.conftest import T0, alert_doc


def test_defaults_auto_for_reuse_and_post_revocation_approve_others_notify_low() -> None:
    config = ResponseConfig()
    assert mode_for(alert_doc(), config)[0] == "auto"
    assert mode_for(alert_doc(rule="post_revocation_use.after_revocation", severity="critical"), config)[0] == "auto"
    assert mode_for(alert_doc(rule="replay.concurrent_use", action="revoke_token"), config)[0] == "approve"
    assert mode_for(alert_doc(rule="x.y", severity="low"), config)[0] == "notify"
    mode, why = mode_for(alert_doc(severity="medium"), config)  # auto rule, but below auto_min_severity
    assert mode == "approve" and "auto_min_severity" in why


@pytest.mark.parametrize("config", [
    ResponseConfig(protected_users=["alice"]),
    ResponseConfig(protected_clients=["portal"]),
    ResponseConfig(protected_patterns=["break-glass-*"]),
])
def test_protected_principals_fall_back_to_approve(config: ResponseConfig) -> None:
    doc = alert_doc(user="break-glass-1" if config.protected_patterns else "alice")
    mode, why = mode_for(doc, config)
    assert mode == "approve" and "is protected" in why


@pytest.mark.parametrize(("action", "expected"), [
    ("revoke_token", ("token", "rt-1", "refresh_token")),
    ("revoke_family", ("family", "fam-1", "refresh_token")),
    ("revoke_session", ("session", "s-1", None)),
    ("revoke_subject", ("subject", "alice", None)),
])
def test_what_to_revoke_per_response_action(action: str, expected: tuple) -> None:
    target = target_for(alert_doc(action=action))
    assert target is not None and (target.kind, target.id, target.token_type_hint) == expected
    assert (target.source, target.user_id, target.client_id) == ("idp", "alice", "portal")


def test_missing_ids_fall_back_to_a_wider_named_scope_or_nothing() -> None:
    doc = alert_doc(action="revoke_session")
    doc["session"] = {}
    assert target_for(doc) == RevocationTarget(kind="subject", id="alice", source="idp", user_id="alice",
                                               client_id="portal")
    assert target_for(alert_doc(action="none")) is None


def test_routes_most_specific_first() -> None:
    config = ResponseConfig(routes={"idp:session": "kc-admin", "idp": "kc-7009", "*": "fallback"})
    assert responder_for(RevocationTarget(kind="session", id="s", source="idp"), config) == "kc-admin"
    assert responder_for(RevocationTarget(kind="family", id="f", source="idp"), config) == "kc-7009"
    assert responder_for(RevocationTarget(kind="family", id="f", source="okta"), config) == "fallback"
    assert responder_for(RevocationTarget(kind="family", id="f"), ResponseConfig()) is None


def test_plan_builds_an_idempotent_action() -> None:
    config = ResponseConfig(routes={"idp": "kc"}, dry_run=True)
    action = plan(alert_doc(), config, T0)
    assert action is not None
    assert action.id == action_id("al-1", action.target) == plan(alert_doc(), config, T0).id  # type: ignore[union-attr]  # the same alert plans an action again (not None, above)
    assert (action.mode, action.state, action.responder, action.dry_run, action.actor) == (
        "auto", "pending", "kc", True, "tokenwatch")
    manual = plan(alert_doc(rule="replay.concurrent_use"), config, T0, mode="manual", actor="ana")
    assert manual is not None and (manual.mode, manual.state, manual.actor) == ("manual", "pending", "ana")


@pytest.mark.parametrize(("config", "details", "expected"), [
    (ResponseConfig(protected_users=["admin"]), {"lineage_user_id": "admin"}, "user admin is protected"),
    (ResponseConfig(protected_clients=["console"]), {"lineage_client_id": "console"}, "client console is protected"),
    (ResponseConfig(protected_patterns=["adm*"]), {"lineage_user_id": "admin"}, "user admin (pattern adm*)"),
], ids=["user", "client", "pattern"])
def test_protection_checks_what_lineage_knows_not_only_the_trigger(config: ResponseConfig, details: dict,
                                                                   expected: str) -> None:
    doc = alert_doc(user="eve")  # the trigger claims eve, on portal; lineage says otherwise
    assert mode_for(doc, config)[0] == "auto"
    doc["details"] = details
    mode, why = mode_for(doc, config)
    assert mode == "approve" and expected in why


def test_protection_checks_user_and_client_both() -> None:
    config = ResponseConfig(protected_users=["admin"], protected_clients=["console"])
    mode, why = mode_for(alert_doc(user="bob", client="console"), config)
    assert mode == "approve" and "client console is protected" in why


@pytest.mark.parametrize(("field", "config", "expected"), [
    ("user", ResponseConfig(protected_users=["admin"]), "its token's user is unknown"),
    ("client", ResponseConfig(protected_clients=["console"]), "its token's client is unknown"),
    ("user", ResponseConfig(protected_patterns=["adm*"]), "its token's user is unknown"),
])
def test_unknown_owner_is_not_known_safe(field: str, config: ResponseConfig, expected: str) -> None:
    doc = alert_doc()
    doc[field] = {}
    mode, why = mode_for(doc, config)
    assert mode == "approve" and f"{expected} (it may be protected)" in why
    assert mode_for(doc, ResponseConfig())[0] == "auto"  # nothing protected: nothing the owner could be
    assert mode_for(alert_doc(), config)[0] == "auto"  # owner known and not protected


def test_a_lineage_naming_several_owners_is_not_known_safe() -> None:
    doc = alert_doc()
    doc["details"] = {"lineage_ambiguous": True}
    mode, why = mode_for(doc, ResponseConfig(protected_users=["admin"]))
    assert mode == "approve" and "several owners" in why
    assert mode_for(doc, ResponseConfig())[0] == "auto"


def test_the_target_names_the_user_and_client_lineage_knows() -> None:
    doc = alert_doc(action="revoke_subject", user="eve-login", client="portal")
    doc["details"] = {"lineage_user_id": "00u-eve", "lineage_client_id": "portal-web"}
    target = target_for(doc)
    assert target is not None and (target.kind, target.id, target.user_id, target.client_id) == (
        "subject", "00u-eve", "00u-eve", "portal-web")
