"""Realistic benign behaviour that the detectors currently alert on (false positives
found while building the synthetic world). The default world leaves these behaviours
out so the demo's figures stay exact; each test here is the precise reproduction, in
the vendors' own lines, and is expected to fail until its detector learns the case
(``strict``: a fixed detector turns the test red, so the world can then include it).
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.world import emit
from pipeline.world.net import CITIES, NETWORKS, Place, vpn_place
from tests.detect_helpers import detect_lines

T0 = 1794214800.0  # 2026-11-09T09:00:00Z
USER, SESSION, REALM_CLIENT = "5b0e9a7c-3f21-4d8e-a1c2-77d9e4b1f0aa", "3e9d7a51-2c4b-4f1e-9a8d-5b6c7d8e9f01", "mobile-app"
HOME = Place("88.70.14.20", NETWORKS["vodafone-de"], CITIES["DE"][0])  # home broadband (cable)
CARRIER = Place("176.0.33.9", NETWORKS["o2-de"], CITIES["DE"][0])  # the phone's carrier, same city
DEMO_VPN = {"enrich": {"allowlist": [{"name": "corp-vpn-fra", "cidrs": ["3.121.200.0/24"]}]}}


def _login(client: str, place: Place, access: str = "at-1") -> list[dict[str, Any]]:
    return [
        emit.keycloak("kc-1", T0, "LOGIN", client, USER, SESSION, place.ip, {"auth_method": "openid-connect", "code_id": "c1"}),
        emit.keycloak("kc-2", T0 + 0.4, "CODE_TO_TOKEN", client, USER, SESSION, place.ip, {
            "code_id": "c1", "token_id": access, "refresh_token_id": "rt-1", "refresh_token_type": "Refresh",
            "scope": "openid orders:read", "grant_type": "authorization_code"}),
    ]


def _use(n: int, t: float, place: Place, client: str, agent: str) -> dict[str, Any]:
    claims = {"jti": "at-1", "sub": USER, "client_id": client, "sid": SESSION, "scope": "openid orders:read",
              "iss": emit.KEYCLOAK_ISSUER, "aud": "orders-api", "iat": int(T0), "exp": int(T0 + 300)}
    return emit.gateway(f"gw-{n}", t, place, "GET", "/orders", 200, agent, claims, "orders:read")


@pytest.mark.xfail(strict=True, reason="replay.concurrent_use: a phone handing over from home wifi to its "
                   "carrier (another ASN, same country, no hosting) within concurrent_window_s")
def test_phone_leaving_home_wifi_mid_request_burst_is_benign() -> None:
    lines = [*_login("mobile-app", HOME), _use(1, T0 + 30, HOME, "mobile-app", "AcmeMobile/4.12"),
             _use(2, T0 + 55, CARRIER, "mobile-app", "AcmeMobile/4.12")]  # 25 s later, on 5G down the street
    assert detect_lines(lines).hits == []


@pytest.mark.xfail(strict=True, reason="replay.concurrent_use: connecting the corporate VPN (an allowlisted "
                   "egress) in the middle of a session: the egress allowlist is only honoured when both uses share it")
def test_connecting_the_corporate_vpn_mid_session_is_benign() -> None:
    vpn = vpn_place("corp-vpn-fra", random.Random(1))
    home = Place("79.200.1.10", NETWORKS["telekom"], CITIES["DE"][0])
    lines = [*_login("portal", home), _use(1, T0 + 30, home, "portal", "Mozilla/5.0"),
             _use(2, T0 + 50, vpn, "portal", "Mozilla/5.0")]
    assert detect_lines(lines, DEMO_VPN).hits == []
