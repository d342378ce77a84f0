"""Per-source revocation semantics of post_revocation_use: what each IdP's logout or revocation
kills (``REVOCATION_POLICY``), in order and when the revocation arrives late."""

from __future__ import annotations

from typing import Any

import pytest

from detectors.revocation_policy import EVERYTHING, NOTHING, REVOCATION_POLICY, Kills
from schemas.events import CanonicalEvent, TokenType
from schemas.sources import FORMATS
from tests.factories import event, rule_hits, run

AFTER_REVOCATION = "post_revocation_use.after_revocation"
HOUR = 3600.0


def issue(t: float, token: str, source: str, **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "expires_in": HOUR, **kw}
    return event("issued", t, token=token, source=source, **kw)


def refresh(t: float, token: str, source: str, **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "expires_in": HOUR, **kw}
    return event("refreshed", t, token=token, source=source, **kw)


def use(t: float, token: str, **kw: Any) -> CanonicalEvent:
    kw = {"family": "fam-1", "session": "s-1", "scopes": ("read",), "required": ("read",), **kw}
    return event("used", t, token=token, source="gateway", **kw)


def logout(t: float, source: str) -> CanonicalEvent:
    return event("session_ended", t, session="s-1", source=source)


def revoke_subject(t: float, source: str) -> CanonicalEvent:
    return event("revoked", t, revoke="subject", source=source, client=None)


def late(events: list[CanonicalEvent], revocation: CanonicalEvent) -> list[str]:
    """The revocation processed after the uses it covers (beyond the engine's lateness)."""
    return [f"{rule}:{token}" for rule, token in rule_hits(run([*events, revocation]))]


def test_policy_names_registered_sources_and_known_labels() -> None:
    labels = {"token", "family", "session", "logout", "subject"}
    for source, label in REVOCATION_POLICY:
        assert source in FORMATS, source
        assert label in labels, label  # "disabled" is after_disable's, which no policy narrows
    assert EVERYTHING == Kills(refresh=True, issued=True) and NOTHING == Kills(refresh=False, issued=False)


# -- Okta ---------------------------------------------------------------------------------
def test_okta_sign_out_kills_no_token_in_order_or_late() -> None:
    """user.session.end: the access token, the refresh token and what it mints all live on."""
    before = [issue(0, "at-1", "okta"), issue(0, "rt-1", "okta", token_type=TokenType.REFRESH)]
    after = [refresh(5 * HOUR, "at-2", "okta"), use(5 * HOUR + 20, "at-2"), use(600, "at-1")]
    assert rule_hits(run([*before, logout(300, "okta"), *after])) == []
    assert late([*before, *after], logout(300, "okta")) == []


def test_unlisted_source_keeps_the_strict_reading_of_logout() -> None:
    """A canonical producer's logout (no documented semantics): every token of the session dies."""
    assert rule_hits(run([issue(0, "at-1", "canonical"), logout(300, "canonical"), use(600, "at-1")])) == [
        (AFTER_REVOCATION, "at-1")]


@pytest.mark.parametrize("arrives_late", [False, True])
def test_okta_clear_with_tokens_kills_issued_tokens_and_what_their_refresh_mints(arrives_late: bool) -> None:
    history = [issue(0, "at-1", "okta"), issue(0, "rt-1", "okta", token_type=TokenType.REFRESH),
               use(600, "at-1"), refresh(2 * HOUR, "at-9", "okta"), use(2 * HOUR + 20, "at-9")]
    clear = revoke_subject(300, "okta")
    if arrives_late:
        assert late(history, clear) == [f"{AFTER_REVOCATION}:at-1", f"{AFTER_REVOCATION}:at-9"]
    else:
        events = [*history[:2], clear, *history[2:]]
        assert rule_hits(run(events)) == [(AFTER_REVOCATION, "at-1"), (AFTER_REVOCATION, "at-9")]


def test_okta_new_grant_after_the_clear_is_benign() -> None:
    """A fresh sign-in after the clear: a new session, a new chain, nothing to do with the revocation."""
    events = [issue(0, "at-1", "okta"), revoke_subject(300, "okta"),
              issue(HOUR, "at-5", "okta", family="fam-2", session="s-2"),
              refresh(2 * HOUR, "at-6", "okta", family="fam-2", session="s-2"),
              use(HOUR + 60, "at-5", family="fam-2", session="s-2"),
              use(2 * HOUR + 60, "at-6", family="fam-2", session="s-2")]
    assert rule_hits(run(events)) == []


# -- Entra --------------------------------------------------------------------------------
@pytest.mark.parametrize("arrives_late", [False, True])
def test_entra_revoke_sign_in_sessions_leaves_access_tokens_valid_until_exp(arrives_late: bool) -> None:
    history = [issue(0, "uti-1", "entra"), use(1200, "uti-1")]
    revoke = revoke_subject(600, "entra")
    hits = late(history, revoke) if arrives_late else rule_hits(run([history[0], revoke, history[1]]))
    assert hits == []


def test_entra_access_token_used_after_exp_is_still_an_expiry_alert() -> None:
    events = [issue(0, "uti-1", "entra"), revoke_subject(600, "entra"), use(HOUR + 600, "uti-1", expires_in=None)]
    assert rule_hits(run(events)) == [("post_revocation_use.after_expiry", "uti-1")]


def test_entra_refresh_after_revoke_sign_in_sessions_is_a_revoked_refresh_token_working() -> None:
    events = [issue(0, "uti-1", "entra"), revoke_subject(600, "entra"),
              refresh(2 * HOUR, "uti-2", "entra"), use(2 * HOUR + 30, "uti-2")]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "uti-2")]


# -- Keycloak -----------------------------------------------------------------------------
def test_keycloak_logout_spares_offline_tokens_only() -> None:
    offline = ("openid", "offline_access", "read")
    events = [issue(0, "at-off", "keycloak", scopes=offline), issue(0, "at-on", "keycloak"), logout(60, "keycloak"),
              use(200, "at-off", scopes=offline), use(200, "at-on")]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "at-on")]


def test_keycloak_logout_kills_what_the_sessions_refresh_token_mints_later() -> None:
    events = [issue(0, "rt-1", "keycloak", token_type=TokenType.REFRESH), logout(60, "keycloak"),
              issue(HOUR, "at-2", "keycloak", parent="rt-1"), use(HOUR + 10, "at-2")]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "at-2")]


# -- Kubernetes ---------------------------------------------------------------------------
def test_k8s_pod_deletion_kills_the_tokens_bound_to_it() -> None:
    pod = "pod:3c1b2a9d"
    events = [issue(0, "JTI=a", "k8s", session=pod, family=None, token_type=TokenType.SERVICE_ACCOUNT),
              event("revoked", 300, revoke="session", session=pod, source="k8s"),
              use(600, "JTI=a", session=pod, family=None), use(610, "JTI=b", session="pod:other", family=None)]
    assert rule_hits(run(events)) == [(AFTER_REVOCATION, "JTI=a")]
