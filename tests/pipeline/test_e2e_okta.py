"""Okta System Log end to end: raw Okta lines (plus gateway lines for token uses)
through normalize, real offline enrichment and every detector.

Okta logs the IdP side only (grants, revocations, sessions, user lifecycle);
a use of an Okta token is a resource-server line in the gateway layout whose
``jwt.jti`` is the Okta token target's id.
"""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.detect_helpers import detect_lines

SAMPLE = [orjson.loads(line) for line in
          (Path(__file__).resolve().parents[1] / "data" / "formats" / "okta.jsonl").read_bytes().splitlines()]
LOGIN, ACCESS_GRANT, REFRESH_GRANT, REFRESH_FROM_SYDNEY, REVOKE_REFRESH, DEACTIVATE = SAMPLE

BOB_ID = "00u8f2kq1zXyAbCdE5d7"
SESSION = "102qZ8fGhJkLmN"
ACCESS = "AT.okta-0001"  # issued 2026-11-24T09:00:01Z, expires 10:00:01Z
REFRESH = "RT.okta-0001"
ADMIN = {"id": "00uadm1nXyz", "type": "User", "alternateId": "admin@example.org", "displayName": "Alice Admin"}
BERLIN_CLIENT = copy.deepcopy(ACCESS_GRANT["client"])
BERLIN_SECURITY = copy.deepcopy(ACCESS_GRANT["securityContext"])

def _epoch(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


def gateway_use(when: str, *, status: int = 200, sub: str = BOB_ID, jti: str = ACCESS) -> dict[str, Any]:
    """A resource-server request carrying the Okta access token (README "gateway" layout)."""
    return {
        "timestamp": when, "request_id": f"gw-{when}", "client_ip": "79.200.1.10", "method": "GET",
        "path": "/orders/42", "status": status, "user_agent": "Mozilla/5.0 (Macintosh)",
        "jwt": {"jti": jti, "sub": sub, "client_id": "0oa5portal", "scope": "openid profile orders:read",
                "iss": "https://example.okta.com/oauth2/aus1", "aud": "api://orders",
                "iat": _epoch("2026-11-24T09:00:01+00:00"), "exp": _epoch("2026-11-24T10:00:01+00:00")},
        "required_scope": "orders:read",
    }


def revoke_access(when: str, *, result: str = "SUCCESS") -> dict[str, Any]:
    """Bob's app revokes his access token at Okta's /revoke endpoint (RFC 7009)."""
    raw = copy.deepcopy(REVOKE_REFRESH)
    raw.update(uuid="u-revoke-at", published=when, outcome={"result": result, "reason": None})
    raw["target"][1] = {"id": ACCESS, "type": "access_token", "displayName": "access_token", "alternateId": None,
                        "detailEntry": {"expires": "2026-11-24T10:00:01.000Z", "subject": BOB_ID, "hash": "hN3xAT1"}}
    return raw


def deactivate_bob(when: str) -> dict[str, Any]:
    """An admin, from the office in Berlin, deactivates Bob."""
    raw = copy.deepcopy(DEACTIVATE)
    raw.update(uuid="u-deactivate", published=when, actor=ADMIN,
               client=copy.deepcopy(BERLIN_CLIENT), securityContext=copy.deepcopy(BERLIN_SECURITY))
    raw["authenticationContext"]["externalSessionId"] = "102adminSess"
    return raw


# -- (1) the sample: a refresh from Sydney 40 minutes after the session began in Berlin ------------
def test_sample_refresh_from_sydney_is_impossible_travel_of_the_session() -> None:
    """The refresh mints AT.okta-0002, a token with no history of its own, so there is
    nothing to compare per token; the Okta session (externalSessionId) ties it to
    RT.okta-0001 issued in Berlin 40 minutes earlier: 16,000 km at 24,000 km/h.
    Issue→use divergence stays quiet: it compares a token's *uses* with its issue,
    and Okta logs no uses. The revoke and the deactivation that follow cover no use."""
    detected = detect_lines(SAMPLE)
    assert detected.dead_letters == []
    assert detected.hits == [("geo_divergence.impossible_travel", "AT.okta-0002")]
    [alert] = detected.alerts
    assert alert["session"]["id"] == SESSION
    assert "Berlin" in alert["alert"]["summary"] and "Sydney" in alert["alert"]["summary"]
    assert [e["event_id"] for e in alert["evidence"]] == ["okta:u3", "okta:u4"]


def test_benign_twin_refresh_from_berlin_raises_nothing() -> None:
    refresh = copy.deepcopy(REFRESH_FROM_SYDNEY)
    refresh.update(client=copy.deepcopy(BERLIN_CLIENT), securityContext=copy.deepcopy(BERLIN_SECURITY))
    detected = detect_lines([LOGIN, ACCESS_GRANT, REFRESH_GRANT, refresh, REVOKE_REFRESH, DEACTIVATE])
    assert detected.dead_letters == []
    assert detected.alerts == []


# -- (2) revoked at Okta, still accepted by the gateway -------------------------------------------
@pytest.mark.parametrize("revoke_arrives_late", [False, True])
def test_gateway_accepts_an_access_token_revoked_at_okta(revoke_arrives_late: bool) -> None:
    revoke, use = revoke_access("2026-11-24T09:10:00.000Z"), gateway_use("2026-11-24T09:15:00.000Z")
    lines = [LOGIN, ACCESS_GRANT, *([use, revoke] if revoke_arrives_late else [revoke, use])]
    detected = detect_lines(lines)
    assert detected.dead_letters == []
    assert detected.hits == [("post_revocation_use.after_revocation", ACCESS)]
    assert "revoked" in detected.alerts[0]["alert"]["summary"]


def test_benign_twin_use_before_the_revoke_raises_nothing() -> None:
    lines = [LOGIN, ACCESS_GRANT, gateway_use("2026-11-24T09:05:00.000Z"), revoke_access("2026-11-24T09:10:00.000Z")]
    assert detect_lines(lines).alerts == []


def test_benign_twin_a_failed_revoke_revoked_nothing() -> None:
    lines = [LOGIN, ACCESS_GRANT, revoke_access("2026-11-24T09:10:00.000Z", result="FAILURE"),
             gateway_use("2026-11-24T09:15:00.000Z")]
    assert detect_lines(lines).alerts == []


def session_event(event_type: str, when: str) -> dict[str, Any]:
    """Bob logs out (user.session.end) or an admin clears all his sessions (user.session.clear)."""
    raw = copy.deepcopy(LOGIN)
    raw.update(uuid=f"u-{event_type}", eventType=event_type, published=when)
    if event_type == "user.session.clear":
        raw["actor"] = ADMIN
    return raw


def test_gateway_accepts_a_token_after_an_admin_cleared_the_users_sessions() -> None:
    """Clear user sessions revokes the user's OAuth tokens too (oauthTokens, the default here)."""
    lines = [LOGIN, ACCESS_GRANT, session_event("user.session.clear", "2026-11-24T09:10:00.000Z"),
             gateway_use("2026-11-24T09:15:00.000Z")]
    detected = detect_lines(lines)
    assert detected.hits == [("post_revocation_use.after_revocation", ACCESS)]
    assert f"all tokens of subject {BOB_ID} were revoked" in detected.alerts[0]["alert"]["summary"]


def test_benign_twin_the_token_outlives_an_okta_sign_out() -> None:
    """user.session.end ends the Okta sign-on session only: the access token stays valid until exp."""
    lines = [LOGIN, ACCESS_GRANT, session_event("user.session.end", "2026-11-24T09:10:00.000Z"),
             gateway_use("2026-11-24T09:15:00.000Z")]
    assert detect_lines(lines).alerts == []


# -- (3) Bob deactivated, his token still accepted ------------------------------------------------
def test_gateway_accepts_a_token_of_a_deactivated_user() -> None:
    lines = [LOGIN, ACCESS_GRANT, deactivate_bob("2026-11-24T09:20:00.000Z"), gateway_use("2026-11-24T09:25:00.000Z")]
    detected = detect_lines(lines)
    assert detected.hits == [("post_revocation_use.after_disable", ACCESS)]
    assert BOB_ID in detected.alerts[0]["alert"]["summary"]


def test_benign_twin_gateway_rejects_the_deactivated_users_token() -> None:
    lines = [LOGIN, ACCESS_GRANT, deactivate_bob("2026-11-24T09:20:00.000Z"),
             gateway_use("2026-11-24T09:25:00.000Z", status=401)]
    assert detect_lines(lines).alerts == []  # every detector on: a refused request is the system working


# -- (4) Okta's own refresh-token reuse verdict ----------------------------------------------------
def detect_reuse(result: str) -> dict[str, Any]:
    """Okta saw RT.okta-0001 presented again after it was rotated, from DigitalOcean in India."""
    raw = copy.deepcopy(REVOKE_REFRESH)
    raw.update(uuid="u-reuse", eventType="app.oauth2.as.token.detect_reuse", published="2026-11-24T09:30:00.000Z",
               outcome={"result": result, "reason": None})
    raw["client"]["ipAddress"] = "139.59.1.1"
    raw["client"]["userAgent"]["rawUserAgent"] = "python-requests/2.32"
    raw["client"]["geographicalContext"] = {"city": "Bengaluru", "country": "India",
                                            "geolocation": {"lat": 12.97, "lon": 77.59}}
    raw["securityContext"] = {"asNumber": 14061, "asOrg": "digitalocean llc", "isp": "digitalocean llc",
                              "domain": "digitalocean.com", "isProxy": False}
    return raw


@pytest.mark.parametrize("result", ["SUCCESS", "FAILURE"])
def test_okta_detect_reuse_is_a_refresh_reuse_alert(result: str) -> None:
    detected = detect_lines([LOGIN, ACCESS_GRANT, REFRESH_GRANT, detect_reuse(result)])
    assert detected.dead_letters == []
    assert detected.hits == [("replay.refresh_reuse", REFRESH)]


def test_benign_twin_refresh_without_a_reuse_verdict_raises_nothing() -> None:
    refresh = copy.deepcopy(REFRESH_FROM_SYDNEY)
    refresh.update(client=copy.deepcopy(BERLIN_CLIENT), securityContext=copy.deepcopy(BERLIN_SECURITY))
    assert detect_lines([LOGIN, ACCESS_GRANT, REFRESH_GRANT, refresh]).alerts == []


# -- one place seen by two sources ---------------------------------------------------------------
def test_okta_issue_and_gateway_use_from_the_same_place_agree() -> None:
    """Okta says "Germany" / "deutsche telekom ag" / AS3320, the offline lookup of the
    gateway's address says DE / "Deutsche Telekom AG": one place, one network."""
    assert detect_lines([LOGIN, ACCESS_GRANT, gateway_use("2026-11-24T09:05:00.000Z")]).alerts == []


# -- shapes the shared detectors had to learn for Okta ----------------------------------------
def test_okta_detect_reuse_naming_no_token_alerts_on_the_session() -> None:
    reuse = detect_reuse("SUCCESS")
    reuse["target"] = [reuse["target"][0]]
    detected = detect_lines([LOGIN, ACCESS_GRANT, REFRESH_GRANT, reuse])
    assert [a["rule"]["id"] for a in detected.alerts] == ["replay.refresh_reuse"]
    assert detected.alerts[0]["session"]["id"] == SESSION


def test_deactivation_is_found_when_the_jwt_sub_is_the_login() -> None:
    lines = [LOGIN, ACCESS_GRANT, deactivate_bob("2026-11-24T09:20:00.000Z"),
             gateway_use("2026-11-24T09:25:00.000Z", sub="bob@example.org")]
    assert detect_lines(lines).hits == [("post_revocation_use.after_disable", ACCESS)]
