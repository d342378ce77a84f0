"""Realistic benign behaviour that once raised alerts (false positives found while
building the synthetic world), each beside the attack twin that must still alert.

Issue 14 taught ``replay.concurrent_use`` that concurrency needs concurrency: a
phone handing over from home broadband to its carrier, or a laptop connecting the
corporate VPN, is one device changing network one way (roaming, recorded but not
alerted), while a token used from A, then B, then A again within the window is two
holders — whether B is another residential ISP, or A is the VPN. Each test is the
precise reproduction, in the vendors' own lines, through ``tokenwatch detect``.
"""

from __future__ import annotations

import random
from typing import Any

from pipeline.synthetic.vocabulary import CITIES, KEYCLOAK_ISSUER, NETWORKS
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.net import Place, vpn_place
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
              "iss": KEYCLOAK_ISSUER, "aud": "orders-api", "iat": int(T0), "exp": int(T0 + 300)}
    return emit.gateway(f"gw-{n}", t, place, "GET", "/orders", 200, agent, claims, "orders:read")


CONCURRENT = "replay.concurrent_use"
PHONE = "AcmeMobile/4.12"
BROWSER = "Mozilla/5.0"
THIEF_ISP = Place("79.200.44.7", NETWORKS["telekom"], CITIES["DE"][0])  # a residential ISP in the victim's city
THIEF_ABROAD = Place("90.12.8.31", NETWORKS["orange-fr"], CITIES["FR"][0])  # a residential ISP in Paris


def test_phone_leaving_home_wifi_mid_request_burst_is_benign() -> None:
    lines = [*_login("mobile-app", HOME), _use(1, T0 + 30, HOME, "mobile-app", PHONE),
             _use(2, T0 + 55, CARRIER, "mobile-app", PHONE)]  # 25 s later, on 5G down the street
    assert detect_lines(lines).hits == []


def test_connecting_the_corporate_vpn_mid_session_is_benign() -> None:
    vpn = vpn_place("corp-vpn-fra", random.Random(1))
    home = Place("79.200.1.10", NETWORKS["telekom"], CITIES["DE"][0])
    lines = [*_login("portal", home), _use(1, T0 + 30, home, "portal", BROWSER),
             _use(2, T0 + 50, vpn, "portal", BROWSER)]
    assert detect_lines(lines, DEMO_VPN).hits == []


def test_interleaved_residential_isps_in_one_country_alert() -> None:
    """The handover twin: the victim's ISP and another residential ISP of the same city take
    turns (A, B, A, B within two minutes). No hosting, no country change, no travel: only the
    interleaving says two holders."""
    places = (HOME, THIEF_ISP, HOME, THIEF_ISP)
    lines = [*_login("mobile-app", HOME),
             *(_use(n, T0 + 30 + 25 * n, place, "mobile-app", PHONE) for n, place in enumerate(places, 1))]
    found = detect_lines(lines)
    assert found.hits == [(CONCURRENT, "at-1")]
    [alert] = found.alerts
    assert alert["details"]["difference"] == "interleaved"
    assert alert["alert"]["count"] == 2  # at the second use from home, and at the thief's second use
    assert [e["ip"] for e in alert["evidence"]] == [HOME.ip, THIEF_ISP.ip, HOME.ip, THIEF_ISP.ip]


def test_victim_on_the_vpn_and_a_thief_on_a_residential_isp_alert() -> None:
    """The VPN twin: an allowlisted egress is one side of a pair like any other network."""
    vpn = vpn_place("corp-vpn-fra", random.Random(1))
    lines = [*_login("portal", vpn), _use(1, T0 + 30, vpn, "portal", BROWSER),
             _use(2, T0 + 45, THIEF_ISP, "portal", BROWSER), _use(3, T0 + 60, vpn, "portal", BROWSER)]
    found = detect_lines(lines, DEMO_VPN)
    assert found.hits == [(CONCURRENT, "at-1")]
    assert found.alerts[0]["details"]["difference"] == "interleaved"


# -- the thief tries to hide ----------------------------------------------------------------
def test_a_single_stolen_use_between_the_victims_uses_alerts() -> None:
    """One request from the thief's ISP between two of the victim's (A, B, A) is enough."""
    lines = [*_login("mobile-app", HOME), _use(1, T0 + 30, HOME, "mobile-app", PHONE),
             _use(2, T0 + 41, THIEF_ISP, "mobile-app", PHONE), _use(3, T0 + 60, HOME, "mobile-app", PHONE)]
    found = detect_lines(lines)
    assert found.hits == [(CONCURRENT, "at-1")]
    assert found.alerts[0]["evidence"][1]["ip"] == THIEF_ISP.ip


def test_a_thief_who_waits_for_the_victim_to_stop_is_caught_from_abroad() -> None:
    """Pure one-way handover from the victim's network to the thief's in another country:
    no interleaving, but no device moves from Germany to France in 20 s."""
    lines = [*_login("mobile-app", HOME), _use(1, T0 + 30, HOME, "mobile-app", PHONE),
             _use(2, T0 + 50, THIEF_ABROAD, "mobile-app", PHONE)]
    found = detect_lines(lines)
    assert (CONCURRENT, "at-1") in found.hits
    concurrent = next(a for a in found.alerts if a["rule"]["id"] == CONCURRENT)
    assert concurrent["details"]["difference"] == "country"  # geolocated by country: no distance to measure


def test_a_thief_who_waits_in_the_same_city_on_a_residential_isp_is_the_accepted_residual_risk() -> None:
    """Pure one-way handover to another residential ISP of the same city, the old network never
    seen again: exactly what a phone leaving home Wi-Fi looks like. ``replay.concurrent_use``
    records it as roaming and does not alert (README, rule table); a change of device at the
    same moment would (see tests/detectors/test_concurrency.py)."""
    lines = [*_login("mobile-app", HOME), _use(1, T0 + 30, HOME, "mobile-app", PHONE),
             _use(2, T0 + 50, THIEF_ISP, "mobile-app", PHONE), _use(3, T0 + 80, THIEF_ISP, "mobile-app", PHONE)]
    assert detect_lines(lines).hits == []
