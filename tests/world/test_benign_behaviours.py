"""The demo world's benign network moves (issue 14), read back from its own lines: phones
handing over from home Wi-Fi to the carrier while the app is in use, laptops connecting the
corporate VPN mid-session, Safari on iCloud Private Relay, a transatlantic flight on in-flight
Wi-Fi, Okta's HR app refreshing hours after the user signed out of Okta. Each is present in
the default world (``tokenwatch demo``), raises no alert through detection with the demo's
configuration, and turns into an alert when a second holder joins the same token.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from itertools import pairwise
from typing import Any

import orjson
import pytest

from pipeline.cli.demo import DEMO_CONFIG
from pipeline.config import load_settings
from pipeline.ingest.enrich import Enricher
from pipeline.synthetic.vocabulary import CITIES, NETWORKS, VPN_EGRESS, Network
from pipeline.synthetic.world import World, WorldSpec, emit, generate
from pipeline.synthetic.world.net import Place
from tests.detect_helpers import Detected, detect_lines

DEFAULT_WORLD = WorldSpec(users=300, seed=7, hours=24)  # `tokenwatch demo` without options
CONCURRENT = "replay.concurrent_use"
WINDOW_S = 60.0  # replay.concurrent_window_s


@dataclass(frozen=True)
class Use:
    t: float
    ip: str
    net: str  # network key in pipeline/synthetic/world/net.py, or the VPN egress name
    line: bytes


@cache
def world() -> World:
    return generate(DEFAULT_WORLD)


@cache
def _prefixes() -> dict[str, str]:
    found = {prefix: name for name, (_, prefix) in VPN_EGRESS.items()}
    for net in NETWORKS.values():
        for block in net.blocks:
            found.setdefault(block, net.key)
    return found


def network_of(ip: str) -> str:
    parts = ip.split(".")
    prefixes = _prefixes()
    return prefixes.get(".".join(parts[:3])) or prefixes.get(".".join(parts[:2])) or "?"


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@cache
def token_uses() -> dict[str, tuple[Use, ...]]:
    """Accepted resource-server uses per token (gateway jti, Graph sign-in id), in time order."""
    uses: dict[str, list[Use]] = defaultdict(list)
    for fmt, line in world().lines():
        if fmt == "gateway":
            raw = orjson.loads(line)
            if raw["status"] < 400 and "jti" in raw["jwt"]:
                ip = raw["client_ip"]
                uses[raw["jwt"]["jti"]].append(Use(_time(raw["timestamp"]), ip, network_of(ip), line))
        elif fmt == "graph":
            raw = orjson.loads(line)
            if raw["ResponseStatusCode"] < 400:
                ip = raw["IPAddress"]
                uses[raw["SignInActivityId"]].append(Use(_time(raw["TimeGenerated"]), ip, network_of(ip), line))
    return {token: tuple(sorted(found, key=lambda u: u.t)) for token, found in uses.items()}


def _asn(use: Use) -> int | None:
    """The AS the detectors compare (Telekom's broadband and its mobile network share AS3320)."""
    return NETWORKS[VPN_EGRESS[use.net][0]].asn if use.net in VPN_EGRESS else NETWORKS[use.net].asn


def _kind(key: str) -> str:
    return "vpn" if key in VPN_EGRESS else NETWORKS[key].kind if key in NETWORKS else "?"


def moves(kind_from: str, kind_to: str) -> list[tuple[str, Use, Use]]:
    """(token, last use before, first use after) of tokens that moved once, one way, between
    networks of these kinds within the concurrent window, never to come back."""
    found = []
    for token, uses in token_uses().items():
        changes = [(a, b) for a, b in pairwise(uses) if a.net != b.net]
        if len(changes) != 1:
            continue
        a, b = changes[0]
        if _kind(a.net) == kind_from and _kind(b.net) == kind_to and b.t - a.t <= WINDOW_S and _asn(a) != _asn(b):
            found.append((token, a, b))
    return found


def relay_tokens() -> list[str]:
    """Tokens used only through relays, from more than one relay address."""
    return [token for token, uses in token_uses().items()
            if all(_kind(u.net) == "relay" for u in uses) and len({u.ip for u in uses}) > 1]


def in_flight_country_changes() -> list[tuple[str, Use, Use]]:
    """Consecutive uses of one token from in-flight egress in two countries."""
    found = []
    for token, uses in token_uses().items():
        for a, b in pairwise(uses):
            if _kind(a.net) == _kind(b.net) == "in_flight" and NETWORKS[a.net].country != NETWORKS[b.net].country:
                found.append((token, a, b))
    return found


def okta_refreshes_after_sign_out(min_gap_s: float = 3600.0) -> list[tuple[str, float, str]]:
    """(Okta session, hours since its user.session.end, access token minted by a refresh grant
    at least ``min_gap_s`` later) — the token then used at the gateway."""
    ended: dict[str, float] = {}
    found = []
    for fmt, line in world().lines():
        if fmt != "okta":
            continue
        raw = orjson.loads(line)
        session = raw["authenticationContext"]["externalSessionId"]
        t = _time(raw["published"])
        if raw["eventType"] == "user.session.end":
            ended[session] = t
        elif (raw["eventType"] == "app.oauth2.as.token.grant.access_token" and session in ended
              and raw["debugContext"]["debugData"].get("grantType") == "refresh_token" and t - ended[session] >= min_gap_s):
            token = next(x["id"] for x in raw["target"] if x["type"] == "access_token")
            found.append((session, (t - ended[session]) / 3600, token))
    return [f for f in found if f[2] in token_uses()]


# -- the behaviours are in the default world ------------------------------------------------
def test_the_default_world_has_each_benign_behaviour_at_a_realistic_share() -> None:
    w, users = world(), world().users
    assert set(w.behaviours) == {"phone_handover_in_use", "vpn_connected_mid_session", "private_relay_sessions",
                                 "flight_on_board_wifi", "okta_refresh_after_sign_out"}
    assert 2 <= len(moves("home", "mobile")) <= 30  # a few phones lose Wi-Fi with the app open
    assert 8 <= len(moves("home", "vpn")) <= 120  # VPN users connecting in the middle of a session
    relay_users = [u for u in users if u.relay]
    assert 0.02 * len(users) <= len(relay_users) <= 0.1 * len(users)
    assert len(relay_tokens()) >= 20
    assert in_flight_country_changes()  # the plane's egress jumps from one country to another
    late = okta_refreshes_after_sign_out()
    assert len(late) >= 5 and max(hours for _, hours, _ in late) >= 3


def test_world_behaviours_are_reproducible() -> None:
    again = generate(DEFAULT_WORLD)
    assert again.behaviours == world().behaviours
    assert [u.relay for u in again.users] == [u.relay for u in world().users]


@pytest.mark.parametrize("key", sorted(k for k, n in NETWORKS.items() if n.kind in ("relay", "in_flight")))
def test_the_demo_config_classes_the_worlds_relay_and_in_flight_egress(key: str) -> None:
    """By the AS name the lookup gives (gateway, Keycloak, Graph lines) and the one Okta logs."""
    net = NETWORKS[key]
    enricher = Enricher(load_settings(DEMO_CONFIG).enrich)
    assert enricher.egress_lists is not None
    for address in (f"{block}.9" for block in net.blocks):
        info = enricher.locator.lookup(address)
        for org in (info.as_org, net.as_org.lower()):
            found = enricher.egress_lists.classify(info.address, None, (org,) if org else ())
            assert found is not None and found[0] == net.kind, (address, org, found)


# -- and raise nothing ----------------------------------------------------------------------
def _lines_of(user_ids: set[str]) -> list[bytes]:
    keys = [uid.encode() for uid in user_ids]
    return [line for _, line in world().lines() if any(k in line for k in keys)]


def _detect(lines: list[bytes]) -> Detected:
    batch: list[dict[str, Any] | bytes] = [*lines]
    return detect_lines(batch, load_settings(DEMO_CONFIG).model_dump(exclude={"store"}))


def _subject(line: bytes) -> str:
    raw = orjson.loads(line)
    return str(raw["jwt"]["sub"] if "jwt" in raw else raw["UserId"])


@cache
def _benign_users() -> set[str]:
    victims = {label.user_id for label in world().labels}
    users = {_subject(a.line) for _, a, _ in moves("home", "mobile") + moves("home", "vpn")}
    users |= {_subject(token_uses()[t][0].line) for t in relay_tokens()}
    users |= {_subject(a.line) for _, a, _ in in_flight_country_changes()}
    users |= {_subject(token_uses()[token][0].line) for _, _, token in okta_refreshes_after_sign_out()}
    return users - victims


@pytest.mark.parametrize("delivery", ["in_order", "one_source_after_another"])
def test_every_user_with_a_benign_move_raises_no_alert(delivery: str) -> None:
    """Also when each source's file is read after the other's (Okta's and Graph's lines
    arrive after the gateway's uses they explain), as `detect` over a directory does."""
    users = _benign_users()
    assert len(users) >= 40
    lines = _lines_of(users)
    if delivery == "one_source_after_another":
        formats = {id(line): fmt for fmt, line in world().lines()}
        lines = sorted(lines, key=lambda line: formats[id(line)])  # stable: time order within a source
    found = _detect(lines)
    assert found.dead_letters == []
    assert found.alerts == [], [(a["rule"]["id"], a["alert"]["summary"]) for a in found.alerts]


# -- the same tokens with a second holder ---------------------------------------------------
def _with_use(token: str, t: float, ip: str) -> list[bytes]:
    """The owner's lines, plus one more accepted use of ``token`` at ``t`` from ``ip``."""
    first = token_uses()[token][0]
    raw: dict[str, Any] = orjson.loads(first.line)
    if "jwt" in raw:
        raw.update(timestamp=emit.iso(t), client_ip=ip, request_id=f"gw-thief-{t}")
    else:
        raw.update(TimeGenerated=emit.iso(t, 7), IPAddress=ip, RequestId=f"thief-{t}", OperationId=f"thief-{t}")
    lines = _lines_of({_subject(first.line)})
    return sorted([*lines, orjson.dumps(raw)], key=_line_time)


def _line_time(line: bytes) -> float:
    raw = orjson.loads(line)
    for key in ("timestamp", "TimeGenerated", "published", "time", "eventTime", "requestReceivedTimestamp"):
        value = raw.get(key) or (raw.get("properties") or {}).get("createdDateTime")
        if isinstance(value, int):
            return value / 1000
        if isinstance(value, str):
            return _time(value)
    raise AssertionError(line)


def _concurrent_hits(found: Detected, token: str) -> list[str]:
    return [a["details"]["difference"] for a in found.alerts if a["rule"]["id"] == CONCURRENT
            and a["token"].get("id") == token]


def _between(token: str, kind: str) -> float:
    """A moment between two consecutive uses of ``token`` from ``kind`` networks that are
    closer than the window, so a use slipped in there is sandwiched (A, B, A)."""
    uses = token_uses()[token]
    a, b = next((a, b) for a, b in pairwise(uses)
                if _kind(a.net) == _kind(b.net) == kind and b.t - a.t < WINDOW_S - 5)
    return (a.t + b.t) / 2


def _address(net: Network) -> str:
    return f"{net.blocks[0]}.77" if net.blocks[0].count(".") == 2 else f"{net.blocks[0]}.7.77"


def test_phone_back_on_home_wifi_between_carrier_uses_is_two_holders() -> None:
    """The handover twin: the home network again right after the carrier took over."""
    token, home, carrier = moves("home", "mobile")[0]
    found = _detect(_with_use(token, carrier.t + 10, home.ip))
    assert _concurrent_hits(found, token) == ["interleaved"]


def test_a_residential_thief_while_the_victim_is_on_the_vpn_is_two_holders() -> None:
    token, home, vpn = moves("home", "vpn")[0]
    thief = next(n for n in NETWORKS.values() if n.kind == "home" and n.key != home.net
                 and n.country == NETWORKS[home.net].country)
    found = _detect(_with_use(token, _between(token, "vpn"), _address(thief)))
    assert _concurrent_hits(found, token) == ["interleaved"]


def test_a_hosting_network_beside_a_relay_user_is_two_holders() -> None:
    token = relay_tokens()[0]
    found = _detect(_with_use(token, token_uses()[token][1].t + 5, _address(NETWORKS["do-de"])))
    assert _concurrent_hits(found, token) == ["anonymising"]


def test_a_ground_use_between_in_flight_uses_is_two_holders() -> None:
    token = in_flight_country_changes()[0][0]
    found = _detect(_with_use(token, _between(token, "in_flight"), _address(NETWORKS["orange-fr"])))
    assert _concurrent_hits(found, token) == ["interleaved"]


def test_okta_sessions_cleared_with_tokens_make_the_late_refresh_an_alert() -> None:
    """The Okta twin: an admin clears the user's sessions with their tokens (Okta Users API,
    "Clear user sessions", oauthTokens=true) before the app's late refresh; the refresh is
    minted from a killed refresh token, so the new token's use alerts."""
    _, _, token = okta_refreshes_after_sign_out()[0]
    subject = _subject(token_uses()[token][0].line)
    lines = _lines_of({subject})
    refresh_at = next(_line_time(x) for x in lines if token.encode() in x and b"grant.access_token" in x)
    uri = f"/api/v1/users/{subject}/sessions"
    desk = NETWORKS["telekom"]
    admin = emit.okta_actor("00uadm1nXyzAbCdE123", "it-admin@acme.example", "IT Admin")
    clear = emit.okta("o-clear-demo", refresh_at - 600, "user.session.clear", admin,
                      Place(_address(desk), desk, CITIES["DE"][0]), "Mozilla/5.0", "102adminSessXyz",
                      {"requestUri": uri, "url": f"{uri}?oauthTokens=true"}, [{"id": subject, "type": "User"}])
    found = _detect(sorted([*lines, orjson.dumps(clear)], key=_line_time))
    hits = {(a["rule"]["id"], a["token"].get("id")) for a in found.alerts}
    assert ("post_revocation_use.after_revocation", token) in hits
    assert {rule for rule, _ in hits} == {"post_revocation_use.after_revocation"}
