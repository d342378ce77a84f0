"""What each IdP's logout or revocation kills, in the vendors' own lines through `detect`.

``post_revocation_use.after_revocation`` fires only when the revocation, as the
source that logged it defines it, kills the token that was used
(``detectors.revocation_policy.REVOCATION_POLICY``). Each behaviour has its attack
and its benign twin; the expected alerts are exact.

Okta: ``user.session.end`` is a sign-out or session expiry and revokes no OAuth
token; ``user.session.clear`` ("Clear user sessions", oauthTokens) revokes the
user's refresh and access tokens (Okta Users API, "Clear user sessions"; event
types reference: one ``user.session.end`` per session, same transaction id).
Keycloak: LOGOUT removes the user session (its refresh tokens, and the access
tokens introspection now calls inactive); offline tokens (``offline_access``)
live in the offline session (Keycloak Server Administration, "Offline access").
Entra ``revokeSignInSessions`` invalidates refresh tokens and session cookies;
access tokens stay valid until they expire (Microsoft Graph ``user:
revokeSignInSessions``). Kubernetes: a bound service-account token is invalid
once its pod or service account is deleted (Kubernetes "Service account tokens",
bound tokens). Every revocation is the vendor's own line: Okta System Log events,
Keycloak events, the Entra audit log's "Update StsRefreshTokenValidFrom Timestamp",
Kubernetes audit events of ``delete`` of pods and service accounts.
"""

from __future__ import annotations

from typing import Any

from pipeline.synthetic.vocabulary import CITIES, KEYCLOAK_ISSUER, NETWORKS, OKTA_ISSUER
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.net import Place
from tests.detect_helpers import Detected, detect_lines

T0 = 1794214800.0  # 2026-11-09T09:00:00Z
HOUR = 3600.0
AFTER_REVOCATION = "post_revocation_use.after_revocation"
AFTER_DISABLE = "post_revocation_use.after_disable"

BERLIN = CITIES["DE"][0]
HOME = Place("79.200.1.10", NETWORKS["telekom"], BERLIN)
THIEF = Place("88.70.14.20", NETWORKS["vodafone-de"], BERLIN)  # a residential proxy in the victim's city
ADMIN_DESK = Place("62.158.4.2", NETWORKS["telekom"], BERLIN)


# -- Okta --------------------------------------------------------------------------------
OKTA_USER, OKTA_SESSION, OKTA_CLIENT = "00u8f2kq1zXyAbCdE5d7", "102qZ8fGhJkLmN", "0oa5portal"
BOB = emit.okta_actor(OKTA_USER, "bob@example.org", "Bob")
ADMIN = emit.okta_actor("00uadm1nXyz", "admin@example.org", "Alice Admin")
BOB_TARGET = {"id": OKTA_USER, "type": "User", "alternateId": "bob@example.org", "displayName": "Bob"}
AGENT = "Mozilla/5.0 (Macintosh)"


def okta_login() -> list[dict[str, Any]]:
    """Bob signs in at 09:00 and his app gets AT1 (1 h) and RT1 (offline_access, 7 days)."""
    code = {"grantType": "authorization_code", "grantedScopes": "openid, offline_access, orders:read"}
    return [
        emit.okta("o-start", T0, "user.session.start", BOB, HOME, AGENT, OKTA_SESSION, {}, [BOB_TARGET], OKTA_CLIENT),
        emit.okta("o-at1", T0 + 1, "app.oauth2.as.token.grant.access_token", BOB, HOME, AGENT, OKTA_SESSION, code,
                  [BOB_TARGET, emit.okta_token_target("access_token", "AT1", T0 + 1 + HOUR, OKTA_USER)],
                  OKTA_CLIENT),
        emit.okta("o-rt1", T0 + 1.1, "app.oauth2.as.token.grant.refresh_token", BOB, HOME, AGENT, OKTA_SESSION, code,
                  [BOB_TARGET, emit.okta_token_target("refresh_token", "RT1", T0 + 7 * 24 * HOUR, OKTA_USER)],
                  OKTA_CLIENT),
    ]


def okta_refresh(uuid: str, t: float, place: Place, token: str) -> dict[str, Any]:
    """A refresh grant (RT1 redeemed; Okta does not name it) minting ``token`` in Bob's session."""
    return emit.okta(uuid, t, "app.oauth2.as.token.grant.access_token", BOB, place, AGENT, OKTA_SESSION,
                     {"grantType": "refresh_token", "grantedScopes": "orders:read"},
                     [BOB_TARGET, emit.okta_token_target("access_token", token, t + HOUR, OKTA_USER)], OKTA_CLIENT)


def okta_sign_out(t: float) -> dict[str, Any]:
    return emit.okta("o-end", t, "user.session.end", BOB, HOME, AGENT, OKTA_SESSION, {}, [BOB_TARGET], OKTA_CLIENT)


def okta_clear(t: float, query: str = "oauthTokens=true") -> list[dict[str, Any]]:
    """An admin clears Bob's sessions: one user.session.clear, and one user.session.end per
    session with the same transaction id (Okta's event-type reference)."""
    uri = f"/api/v1/users/{OKTA_USER}/sessions"
    clear = emit.okta("o-clear", t, "user.session.clear", ADMIN, ADMIN_DESK, AGENT, "102adminSess",
                      {"requestUri": uri, "url": f"{uri}?{query}"}, [BOB_TARGET])
    end = emit.okta("o-clear-end", t, "user.session.end", BOB, ADMIN_DESK, AGENT, OKTA_SESSION, {}, [BOB_TARGET])
    end["transaction"] = clear["transaction"]
    return [clear, end]


def okta_use(n: int, t: float, place: Place, token: str, issued: float) -> dict[str, Any]:
    claims = {"jti": token, "sub": OKTA_USER, "client_id": OKTA_CLIENT, "scope": "orders:read",
              "iss": OKTA_ISSUER, "aud": "api://orders", "iat": int(issued), "exp": int(issued + HOUR)}
    return emit.gateway(f"gw-o{n}", t, place, "GET", "/orders", 200, AGENT, claims, "orders:read")


def test_okta_refresh_hours_after_the_session_ended_then_first_use_is_benign() -> None:
    """The issue's third false positive: Okta refresh tokens outlive the sign-on session."""
    lines = [*okta_login(), okta_use(1, T0 + 60, HOME, "AT1", T0 + 1), okta_sign_out(T0 + 2 * HOUR),
             okta_refresh("o-at2", T0 + 5 * HOUR, HOME, "AT2"),
             okta_use(2, T0 + 5 * HOUR + 20, HOME, "AT2", T0 + 5 * HOUR)]
    detected = detect_lines(lines)
    assert detected.dead_letters == []
    assert detected.hits == []


def test_okta_session_cleared_with_tokens_then_use_alerts() -> None:
    lines = [*okta_login(), *okta_clear(T0 + 600), okta_use(1, T0 + 1200, HOME, "AT1", T0 + 1)]
    detected = detect_lines(lines)
    assert detected.hits == [(AFTER_REVOCATION, "AT1")]
    [alert] = detected.alerts
    assert alert["details"]["revoked"] == "subject" and alert["details"]["revocation_event_id"] == "okta:o-clear"


def test_okta_stolen_refresh_token_redeemed_after_a_clear_with_tokens_still_alerts() -> None:
    """The thief waits out the clear and refreshes, so the token he uses was issued after the
    revocation; it descends from RT1, which the clear killed: Okta should have refused it."""
    lines = [*okta_login(), *okta_clear(T0 + 2 * HOUR), okta_refresh("o-at9", T0 + 5 * HOUR, THIEF, "AT9"),
             okta_use(9, T0 + 5 * HOUR + 20, THIEF, "AT9", T0 + 5 * HOUR)]
    detected = detect_lines(lines)
    assert detected.hits == [(AFTER_REVOCATION, "AT9")]
    assert "all tokens of subject 00u8f2kq1zXyAbCdE5d7 were revoked" in detected.alerts[0]["alert"]["summary"]


def test_okta_fresh_sign_in_after_the_clear_is_benign() -> None:
    """The benign twin: Bob signs in again (a new session, a new grant) and uses the new token."""
    relogin = [dict(line) for line in okta_login()]
    for n, line in enumerate(relogin):
        t = T0 + 5 * HOUR + n
        line.update(uuid=f"{line['uuid']}-2", published=emit.iso(t))
        line["authenticationContext"] = {"authenticationStep": 0, "externalSessionId": "102newSess"}
    relogin[1]["target"] = [BOB_TARGET, emit.okta_token_target("access_token", "AT5", T0 + 6 * HOUR, OKTA_USER)]
    lines = [*okta_login(), *okta_clear(T0 + 2 * HOUR), *relogin, okta_use(5, T0 + 5 * HOUR + 30, HOME, "AT5",
                                                                               T0 + 5 * HOUR + 1)]
    assert detect_lines(lines).hits == []


def test_okta_clear_without_tokens_lets_the_refresh_token_live() -> None:
    """``oauthTokens=false`` clears the sign-on sessions only: the refresh and its use are benign."""
    lines = [*okta_login(), *okta_clear(T0 + 2 * HOUR, "oauthTokens=false"),
             okta_refresh("o-at2", T0 + 5 * HOUR, HOME, "AT2"),
             okta_use(2, T0 + 5 * HOUR + 20, HOME, "AT2", T0 + 5 * HOUR)]
    detected = detect_lines(lines)
    assert detected.dead_letters == []
    assert detected.hits == []


# -- Keycloak ----------------------------------------------------------------------------
KC_USER, KC_SESSION = "5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa", "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01"
KC_CLIENT = "portal"


def kc_login(scope: str) -> list[dict[str, Any]]:
    kind = "Offline" if "offline_access" in scope.split() else "Refresh"
    return [
        emit.keycloak("kc-1", T0, "LOGIN", KC_CLIENT, KC_USER, KC_SESSION, HOME.ip,
                      {"auth_method": "openid-connect", "code_id": "c1"}),
        emit.keycloak("kc-2", T0 + 0.4, "CODE_TO_TOKEN", KC_CLIENT, KC_USER, KC_SESSION, HOME.ip, {
            "code_id": "c1", "token_id": "kat-1", "refresh_token_id": "krt-1", "refresh_token_type": kind,
            "scope": scope, "grant_type": "authorization_code"}),
    ]


def kc_logout(t: float) -> dict[str, Any]:
    return emit.keycloak("kc-out", t, "LOGOUT", KC_CLIENT, KC_USER, KC_SESSION, HOME.ip,
                         {"redirect_uri": "https://portal"})


def kc_refresh(t: float, scope: str, access: str) -> dict[str, Any]:
    kind = "Offline" if "offline_access" in scope.split() else "Refresh"
    return emit.keycloak(f"kc-r-{access}", t, "REFRESH_TOKEN", KC_CLIENT, KC_USER, KC_SESSION, HOME.ip, {
        "token_id": access, "refresh_token_id": "krt-1", "updated_refresh_token_id": f"krt-{access}",
        "refresh_token_type": kind, "scope": scope, "grant_type": "refresh_token"})


def kc_use(n: int, t: float, token: str, issued: float, scope: str) -> dict[str, Any]:
    claims = {"jti": token, "sub": KC_USER, "client_id": KC_CLIENT, "sid": KC_SESSION, "scope": scope,
              "iss": KEYCLOAK_ISSUER, "aud": "orders-api", "iat": int(issued), "exp": int(issued + 300)}
    return emit.gateway(f"gw-k{n}", t, HOME, "GET", "/orders", 200, AGENT, claims, "orders:read")


def test_keycloak_access_token_accepted_after_logout_alerts() -> None:
    """A self-contained JWT accepted by a gateway after LOGOUT: Keycloak's introspection calls
    it inactive from the logout on, so a resource server still honouring it is the gap."""
    scope = "openid orders:read"
    lines = [*kc_login(scope), kc_logout(T0 + 60), kc_use(1, T0 + 200, "kat-1", T0 + 0.4, scope)]
    detected = detect_lines(lines)
    assert detected.hits == [(AFTER_REVOCATION, "kat-1")]
    assert f"its session {KC_SESSION} ended (logout)" in detected.alerts[0]["alert"]["summary"]


def test_keycloak_offline_token_refreshed_after_logout_is_benign() -> None:
    """Offline tokens survive LOGOUT: the offline session is the app's, not the browser's."""
    scope = "openid offline_access orders:read"
    lines = [*kc_login(scope), kc_logout(T0 + 60), kc_refresh(T0 + 3 * HOUR, scope, "kat-2"),
             kc_use(2, T0 + 3 * HOUR + 10, "kat-2", T0 + 3 * HOUR, scope)]
    detected = detect_lines(lines)
    assert detected.dead_letters == []
    assert detected.hits == []


def test_keycloak_online_refresh_token_redeemed_after_logout_alerts() -> None:
    """The twin: an ordinary refresh token died with the session; a refresh Keycloak logged as
    successful after LOGOUT and its token's use are a session that should be dead."""
    scope = "openid orders:read"
    lines = [*kc_login(scope), kc_logout(T0 + 60), kc_refresh(T0 + 3 * HOUR, scope, "kat-2"),
             kc_use(2, T0 + 3 * HOUR + 10, "kat-2", T0 + 3 * HOUR, scope)]
    assert detect_lines(lines).hits == [(AFTER_REVOCATION, "kat-2")]


# -- Entra + Graph -----------------------------------------------------------------------
ENTRA_USER, UPN = "6a1f0d4e-1111-4b2c-9d3e-5f6a7b8c9d0e", "carol@acme.example"
APP = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
ENTRA_SESSION = "00a1b2c3-0000-4000-8000-00000000e5e5"
DEVICE = {"operatingSystem": "Windows 10", "browser": "Edge 131.0"}
SCOPES = ["User.Read", "Mail.Read"]


def entra_sign_in(uti: str, t: float, place: Place, interactive: bool, session: str = ENTRA_SESSION) -> dict[str, Any]:
    category = "SignInLogs" if interactive else "NonInteractiveUserSignInLogs"
    incoming = "none" if interactive else "refreshToken"
    return emit.entra(uti, t, category, ENTRA_USER, UPN, APP, "Azure Portal", place, session, incoming, SCOPES, DEVICE)


def graph_use(n: int, t: float, place: Place, uti: str, issued: float) -> dict[str, Any]:
    return emit.graph(f"g-{n}", t, place, "GET", "/me/messages", 200, "Mozilla/5.0", APP, ENTRA_USER, uti, SCOPES,
                      issued)


def revoke_sign_in_sessions(t: float) -> dict[str, Any]:
    """POST /users/{id}/revokeSignInSessions, as the Entra audit log records it."""
    return emit.entra_revoke_sign_in_sessions("Directory_rev-0001", t, ENTRA_USER, UPN, "admin@acme.example")


def test_entra_access_token_stays_valid_after_revoke_sign_in_sessions() -> None:
    """Access tokens outlive revokeSignInSessions until they expire (no CAE): no alert."""
    lines = [entra_sign_in("uti-1", T0, HOME, True), graph_use(1, T0 + 60, HOME, "uti-1", T0),
             revoke_sign_in_sessions(T0 + 600), graph_use(2, T0 + 1200, HOME, "uti-1", T0)]
    detected = detect_lines(lines)
    assert detected.dead_letters == []
    assert detected.hits == []


def test_entra_access_token_used_past_its_lifetime_after_revoke_sign_in_sessions_alerts() -> None:
    """Entra access tokens live 60-90 minutes; one still accepted 3 h after issue, after the user's
    sessions were revoked, is a CAE token a CAE resource must have refused (up to 28 h): a thief
    who holds one cannot wait out the revocation. Also when the revocation is logged late."""
    lines = [entra_sign_in("uti-1", T0, HOME, True), graph_use(1, T0 + 60, HOME, "uti-1", T0),
             revoke_sign_in_sessions(T0 + 600), graph_use(2, T0 + 3 * HOUR, THIEF, "uti-1", T0)]
    assert detect_lines(lines).hits == [(AFTER_REVOCATION, "uti-1")]
    late = [lines[0], lines[1], lines[3], {**lines[2]}]  # the audit record arrives after the use
    assert (AFTER_REVOCATION, "uti-1") in detect_lines(late).hits
    within = [*lines[:3], graph_use(2, T0 + 80 * 60, THIEF, "uti-1", T0)]  # 80 min: inside its lifetime
    assert (AFTER_REVOCATION, "uti-1") not in detect_lines(within).hits


def test_entra_token_refreshed_after_revoke_sign_in_sessions_alerts() -> None:
    """The refresh tokens were invalidated: a refresh Entra logged afterwards in the same session,
    and the use of the token it minted, are a revoked refresh token still working."""
    lines = [entra_sign_in("uti-1", T0, HOME, True), revoke_sign_in_sessions(T0 + 600),
             entra_sign_in("uti-2", T0 + 2 * HOUR, THIEF, False), graph_use(2, T0 + 2 * HOUR + 30, THIEF, "uti-2",
                                                                            T0 + 2 * HOUR)]
    detected = detect_lines(lines)
    assert detected.hits == [(AFTER_REVOCATION, "uti-2")]


def test_entra_fresh_sign_in_after_revoke_sign_in_sessions_is_benign() -> None:
    lines = [entra_sign_in("uti-1", T0, HOME, True), revoke_sign_in_sessions(T0 + 600),
             entra_sign_in("uti-3", T0 + 2 * HOUR, HOME, True, session="00a1b2c3-0000-4000-8000-0000000fresh"),
             graph_use(3, T0 + 2 * HOUR + 30, HOME, "uti-3", T0 + 2 * HOUR)]
    assert detect_lines(lines).hits == []


# -- Kubernetes --------------------------------------------------------------------------
NS, ACCOUNT, ACCOUNT_UID, NODE, NODE_IP = "shop", "orders", "0f9a4c2e-8b1d-4e6f-a3c5-7d9e1b2f4a68", "node-a", "10.0.1.7"
POD, POD_UID, POD_IP = "orders-7d9f-abcde", "3c1b2a9d-5e4f-4a3b-8c7d-6e5f4a3b2c1d", "10.0.1.23"


# The apiserver's audit log is the authority on its own deletions; the operator names it so.
K8S_TRUSTED = {"trust": {"authoritative": [{"format": name} for name in ("keycloak", "okta", "entra", "k8s")]}}


def detect_k8s(lines: list[dict[str, Any]]) -> Detected:
    return detect_lines(lines, K8S_TRUSTED)


def k8s_lines(call_at: float, jti: str = "5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0") -> list[dict[str, Any]]:
    issue = emit.k8s_token_request("a-1", T0, NS, ACCOUNT, POD, POD_UID, NODE, NODE_IP, jti, 3607)
    call = emit.k8s_call("a-2", call_at, NS, ACCOUNT, ACCOUNT_UID, POD, POD_UID, NODE, jti, POD_IP,
                         "orders/1.4", "get", "configmaps", "orders", 200)
    return [issue, call]


def pod_deleted(t: float, grace_s: float = 0.0) -> dict[str, Any]:
    """An operator deletes the pod (audit level RequestResponse: the deleted pod names its uid)."""
    return emit.k8s_delete("a-del-pod", t, NS, "pods", POD, POD_UID, "alice@example.org", ADMIN_DESK.ip, grace_s)


def service_account_deleted(t: float) -> dict[str, Any]:
    return emit.k8s_delete("a-del-sa", t, NS, "serviceaccounts", ACCOUNT, ACCOUNT_UID, "alice@example.org",
                           ADMIN_DESK.ip)


def test_k8s_token_of_a_deleted_pod_accepted_alerts() -> None:
    issue, call = k8s_lines(T0 + 600)
    detected = detect_k8s([issue, pod_deleted(T0 + 300), call])
    assert detected.hits == [(AFTER_REVOCATION, "JTI=5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")]
    assert f"its session pod:{POD_UID} was revoked" in detected.alerts[0]["alert"]["summary"]


def test_k8s_token_used_before_its_pod_was_deleted_is_benign() -> None:
    issue, call = k8s_lines(T0 + 200)
    assert detect_k8s([issue, call, pod_deleted(T0 + 300)]).hits == []


def test_k8s_token_of_a_deleted_service_account_accepted_alerts() -> None:
    issue, call = k8s_lines(T0 + 600)
    detected = detect_k8s([issue, service_account_deleted(T0 + 300), call])
    assert detected.hits == [(AFTER_DISABLE, "JTI=5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")]


def test_k8s_token_used_before_its_service_account_was_deleted_is_benign() -> None:
    issue, call = k8s_lines(T0 + 200)
    assert detect_k8s([issue, call, service_account_deleted(T0 + 300)]).hits == []


def test_k8s_token_used_while_its_pod_terminates_gracefully_is_benign() -> None:
    """The pod exists until its deletionTimestamp (request + grace period): its tokens still work."""
    issue, call = k8s_lines(T0 + 600)
    detected = detect_k8s([issue, pod_deleted(T0 + 300, grace_s=600), call])
    assert detected.dead_letters == []
    assert detected.hits == []


def test_k8s_token_used_after_its_pods_grace_period_alerts() -> None:
    issue, call = k8s_lines(T0 + 300 + 600 + 120)
    detected = detect_k8s([issue, pod_deleted(T0 + 300, grace_s=600), call])
    assert detected.hits == [(AFTER_REVOCATION, "JTI=5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0")]


def test_k8s_deletions_count_only_from_an_authoritative_source() -> None:
    """The API server is authoritative by default (it issues the tokens and deletes the pods);
    an operator who names other authorities refuses its deletions, dead-lettered."""
    issue, call = k8s_lines(T0 + 600)
    assert detect_lines([issue, pod_deleted(T0 + 300), call]).hits != []
    idps_only = {"trust": {"authoritative": [{"format": name} for name in ("keycloak", "okta", "entra")]}}
    detected = detect_lines([issue, pod_deleted(T0 + 300), call], idps_only)
    assert detected.hits == []
    assert [d["trust"] for d in detected.dead_letters] == ["not_authoritative"]
