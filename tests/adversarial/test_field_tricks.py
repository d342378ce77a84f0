"""The attacker writes part of each line (their User-Agent, path, request id, extra
fields): whatever they put there, the same attacks raise the same alerts.

Each trick is applied to every gateway line of the sample's attack scenarios (the
resource-server side, where the thief's own requests are logged), and the alerts
with the trick must equal the alerts without it: same rule ids, same token ids.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from pipeline.synthetic.sample import render, scenarios
from tests.detect_helpers import detect_lines
from tests.pipeline.test_e2e_keycloak import HOME, login_and_code, refresh
from tests.pipeline.test_e2e_okta import ACCESS_GRANT, LOGIN, REFRESH, REFRESH_GRANT, detect_reuse

ATTACKS = [s for s in scenarios() if s.is_attack]
# Every attack scenario that has a gateway line: the thief's own requests.
GATEWAY_ATTACKS = [s for s in ATTACKS if any("client_ip" in line for line in s.lines)]


def _lines(scenario_names: list[str]) -> list[bytes]:
    chosen = [s for s in scenarios() if s.name in scenario_names]
    return render(chosen).splitlines()


def _is_gateway(raw: dict[str, Any]) -> bool:
    return "client_ip" in raw and "status" in raw


def _edit(change: Callable[[dict[str, Any], int], None]) -> Callable[[bytes, int], bytes]:
    def trick(line: bytes, index: int) -> bytes:
        raw = orjson.loads(line)
        if not _is_gateway(raw):
            return line
        change(raw, index)
        return orjson.dumps(raw)
    return trick


def _bytes(marker: bytes) -> Callable[[bytes, int], bytes]:
    """Splices raw bytes into the user agent, as a gateway writing header bytes as-is does."""
    def trick(line: bytes, index: int) -> bytes:
        if not _is_gateway(orjson.loads(line)):
            return line
        return re.sub(rb'("user_agent": ?")', rb"\1" + marker.replace(b"\\", b"\\\\"), line, count=1)
    return trick


def _set(key: str, value: Callable[[dict[str, Any], int], Any]) -> Callable[[bytes, int], bytes]:
    return _edit(lambda raw, i: raw.__setitem__(key, value(raw, i)))


TRICKS: dict[str, Callable[[bytes, int], bytes]] = {
    "user agent of 3,000 chars": _set("user_agent", lambda raw, i: "Mozilla/5.0 " + "A" * 3000),
    "user agent of 1 MB minus a little": _set("user_agent", lambda raw, i: "B" * 900_000),
    "raw non-UTF-8 byte in the user agent": _bytes(b"\xff\xfe"),
    "lone surrogate escape in the user agent": _bytes(b"\\ud800"),
    "terminal escape in the user agent": _set("user_agent", lambda raw, i: "\x1b[2J\r\n| fake | row"),
    "path of 9,000 chars": _set("path", lambda raw, i: raw.get("path", "/") + "?q=" + "p" * 9000),
    "request id of 600 chars": _set("request_id", lambda raw, i: str(raw.get("request_id")) + "r" * 600),
    "NaN in an extra numeric field": _bytes(b'", "bytes_sent": NaN, "x": "'),
    "Infinity in an extra numeric field": _bytes(b'", "upstream_s": -Infinity, "x": "'),
    "integer beyond 64 bits in an extra field": _bytes(b'", "size": 123456789012345678901234567890, "x": "'),
    "extra field nested 300 deep": _bytes(b'", "extra": ' + b"[" * 300 + b"]" * 300 + b', "x": "'),
    "extra field nested 1,000 deep": _bytes(b'", "extra": ' + b"{\"a\":" * 1000 + b"1" + b"}" * 1000 + b', "x": "'),
    "user agent of the wrong type": _set("user_agent", lambda raw, i: {"ua": ["x"] * 10}),
    "method of the wrong type and too long": _set("method", lambda raw, i: "G" * 100),
    "forwarded-for chain padded with 40 spoofed entries": _edit(
        lambda raw, i: raw.__setitem__("client_ip", ["79.200.1.10"] * 40 + [raw["client_ip"]])
    ),
    "forwarded-for chain of 5,000 chars": _edit(
        lambda raw, i: raw.__setitem__("client_ip", "79.200.1.10, " * 400 + raw["client_ip"])
    ),
    "forwarded-for chain as client_ip": _edit(
        lambda raw, i: raw.__setitem__("client_ip", f"1.2.3.4, {raw['client_ip']}")
    ),
}


def _hits(lines: list[bytes]) -> list[tuple[str, str | None]]:
    found = detect_lines(list(lines))
    assert found.dead_letters == [], [d["reason"] for d in found.dead_letters]
    return found.hits


@pytest.fixture(scope="module")
def baseline() -> tuple[list[bytes], list[tuple[str, str | None]]]:
    lines = _lines([s.name for s in GATEWAY_ATTACKS])
    return lines, _hits(lines)


def test_the_gateway_attacks_raise_their_alerts_without_tricks(baseline: tuple[list[bytes], list]) -> None:
    lines, hits = baseline
    assert len(GATEWAY_ATTACKS) >= 8
    expected = {rule for s in GATEWAY_ATTACKS for rule in s.expected}
    assert {rule for rule, _ in hits} == expected


@pytest.mark.parametrize("name", list(TRICKS))
def test_a_trick_on_the_attackers_gateway_lines_hides_no_alert(name: str, baseline: tuple[list[bytes], list]) -> None:
    lines, hits = baseline
    tricked = [TRICKS[name](line, index) for index, line in enumerate(lines)]
    assert tricked != lines  # the trick was applied
    assert _hits(tricked) == hits


def test_an_oversized_user_agent_on_oktas_reuse_verdict_still_raises_it() -> None:
    plain = [LOGIN, ACCESS_GRANT, REFRESH_GRANT, detect_reuse("SUCCESS")]
    padded = copy.deepcopy(plain)
    padded[-1]["client"]["userAgent"]["rawUserAgent"] = "python-requests/2.32 " + "X" * 8200
    assert detect_lines(plain).hits == [("replay.refresh_reuse", REFRESH)]
    found = detect_lines(padded)
    assert found.hits == [("replay.refresh_reuse", REFRESH)] and found.dead_letters == []
    assert found.summary.repairs == {"okta.client.userAgent.rawUserAgent: cut": 1}


def test_the_cut_keeps_long_values_that_share_a_head_apart() -> None:
    """Two 600-character request ids with one head stay two ids: a cut is no way to
    forge a duplicate request (or to hide one)."""
    [scenario] = [s for s in scenarios() if s.name == "duplicate-delivery"]
    lines = []
    for index, line in enumerate(render([scenario]).splitlines()):
        raw = orjson.loads(line)
        if _is_gateway(raw):
            raw["request_id"] = "r" * 600 + str(index)
            raw["user_agent"] = f"agent {index}"  # distinct lines: not a redelivery
        lines.append(orjson.dumps(raw))
    found = detect_lines(lines)
    assert found.alerts == [] and found.dead_letters == []


# -- forwarded-for chains (Keycloak ipAddress) ------------------------------------------------------
THIEF = "88.198.10.10"  # Hetzner


def test_a_spoofed_first_forwarded_for_entry_does_not_pass_a_reuse_as_a_retry() -> None:
    """The thief redeems the rotated refresh token 10 s after the victim, inside the grace
    period, claiming the victim's address in X-Forwarded-For: the connection is theirs."""
    rotation = refresh(300, "rt-1", "rt-2", "at-2")
    plain = refresh(310, "rt-1", "rt-3", "at-3", ipAddress=THIEF)
    spoofed = refresh(310, "rt-1", "rt-3", "at-3", ipAddress=f"{HOME}, {THIEF}")
    assert detect_lines([*login_and_code(), rotation, plain]).hits == [("replay.refresh_reuse", "rt-1")]
    assert detect_lines([*login_and_code(), rotation, spoofed]).hits == [("replay.refresh_reuse", "rt-1")]


def test_behind_trusted_proxies_the_caller_is_the_rightmost_untrusted_address() -> None:
    settings = {"enrich": {"trusted_proxies": ["10.0.0.0/8"]}}
    rotation = refresh(300, "rt-1", "rt-2", "at-2", ipAddress=f"{HOME}, 10.0.4.1")
    spoofed = refresh(310, "rt-1", "rt-3", "at-3", ipAddress=f"{HOME}, {THIEF}, 10.0.4.1")
    retry = refresh(310, "rt-1", "rt-3", "at-3", ipAddress=f"{HOME}, 10.0.4.2")  # the victim's own retry
    found = detect_lines([*login_and_code(), rotation, spoofed], settings)
    assert found.hits == [("replay.refresh_reuse", "rt-1")]
    assert detect_lines([*login_and_code(), rotation, retry], settings).alerts == []


@pytest.mark.parametrize("name", ["user agent of 3,000 chars", "raw non-UTF-8 byte in the user agent",
                                  "lone surrogate escape in the user agent", "NaN in an extra numeric field"])
def test_a_tricked_line_is_keyed_to_its_tokens_partition(name: str, hasher: Any) -> None:
    """`tokenwatch produce` keys a line as the service maps it: a repaired line lands where
    the rest of its token's lineage is, not on a partition of its own."""
    from pipeline.kafka.keys import line_key

    gateway = [line for line in _lines([s.name for s in GATEWAY_ATTACKS]) if _is_gateway(orjson.loads(line))]
    for index, line in enumerate(gateway):
        tricked = TRICKS[name](line, index)
        assert (line_key(tricked, hasher).key, line_key(tricked, hasher).basis) == (
            line_key(line, hasher).key, line_key(line, hasher).basis)


def test_a_credential_written_as_the_request_id_is_hashed_in_the_alert() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0aGllZiJ9.c2lnbmF0dXJl"
    lines = []
    for line in _lines(["duplicate-request"]):
        raw = orjson.loads(line)
        if _is_gateway(raw):
            raw["request_id"] = f"Authorization: Bearer {jwt}"
        lines.append(orjson.dumps(raw))
    found = detect_lines(lines)
    assert found.hits == [("replay.duplicate_request", "duplicate-request-at1")]
    assert jwt not in orjson.dumps(found.alerts).decode()


@pytest.mark.parametrize("padding", [1, 64, 500])
def test_a_forwarded_for_chain_padded_with_the_pods_address_does_not_hide_the_thief(padding: int) -> None:
    """Kubernetes sourceIPs: the thief pads X-Forwarded-For with the pod's address; the
    peer (the last entry) is still the thief, however long the chain."""
    from tests.pipeline.test_e2e_k8s import JTI, POD_IP, kubelet_token, use

    spoofed = use("a-4", "2026-11-24T09:20:00.000000Z", ip="88.198.10.10")
    spoofed["sourceIPs"] = [POD_IP] * padding + ["88.198.10.10"]
    found = detect_lines([kubelet_token(), use("a-2", "2026-11-24T09:01:00.000000Z"), spoofed])
    assert found.hits == [("replay.binding_mismatch", JTI)] and found.dead_letters == []
