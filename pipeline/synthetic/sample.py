"""The bundled sample stream: each attack next to its benign twin.

Every scenario has its own user, session and token ids (prefixed with the
scenario name) and its own hour of event time, so an alert maps back to the
scenario that caused it. IdP events are canonical lines, resource-server
uses are gateway lines with real IP addresses (enrichment looks them up), the
vocabulary's fixed addresses (``pipeline.synthetic.vocabulary``).
``python -m pipeline.synthetic.sample`` rewrites ``pipeline/data/sample.jsonl``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from pipeline import DATA_DIR
from pipeline.synthetic.vocabulary import (
    BARE_BROWSER_AGENT,
    CORP_VPN_TEST_NET,
    HOME_DE,
    HOME_DE_NAT,
    HOME_US,
    HOSTING_DE,
    HOSTING_IN,
    ORDERS_ADMIN_SCOPE,
    ORDERS_API,
    PORTAL_CLIENT,
    SAMPLE_KEYCLOAK_ISSUER,
    SAMPLE_PORTAL_SCOPES,
    SAMPLE_START,
)

SCOPES = list(SAMPLE_PORTAL_SCOPES)
ADMIN_SCOPES = [*SCOPES, ORDERS_ADMIN_SCOPE]  # the portal's grant widened by the privileged scope
JKT_A = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
JKT_B = "x5PbE1nCfUPHkPmKdd1-4iY1jmW8O2yWmB3qGnW0g2Q"


@dataclass
class Scenario:
    name: str
    expected: tuple[str, ...]  # rule ids this scenario must raise (empty: benign twin)
    lines: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_attack(self) -> bool:
        return bool(self.expected)


class _Builder:
    """Writes the lines of one scenario, starting at its own hour."""

    def __init__(self, scenario: Scenario, slot: int) -> None:
        self.s = scenario
        self.start = SAMPLE_START + timedelta(hours=slot)
        self.user = f"{scenario.name}-user"
        self.session = f"{scenario.name}-session"
        self.n = 0

    def t(self, seconds: float) -> datetime:
        return self.start + timedelta(seconds=seconds)

    def idp(self, kind: str, seconds: float, token: str | None = None, ttype: str = "access",
            parent: str | None = None, scopes: list[str] | None = None, ip: str = HOME_DE,
            ttl: int = 600, target: str | None = None, grant: str | None = None) -> None:
        self.n += 1
        line: dict[str, Any] = {
            "canonical_version": 1, "event_id": f"{self.s.name}-e{self.n}", "kind": kind,
            "time": _iso(self.t(seconds)), "source": "idp", "tenant": "sample",
            "subject": {"id": self.user, "name": self.user, "kind": "user"},
            "client_id": PORTAL_CLIENT, "session_id": self.session,
            "network": {"ip": ip, "user_agent": BARE_BROWSER_AGENT},
        }
        if token:
            line["token"] = {"id": f"{self.s.name}-{token}", "type": ttype, "family_id": self.session,
                             "parent_id": f"{self.s.name}-{parent}" if parent else None}
            if kind in ("issued", "refreshed"):
                line["token"]["issued_at"] = _iso(self.t(seconds))
                line["token"]["expires_at"] = _iso(self.t(seconds + ttl))
        if scopes is not None:
            line["scopes"] = scopes
        if grant:
            line["grant_type"] = grant
        if target:
            line["revocation"] = {"target": target, "actor": "sample"}
        self.s.lines.append(line)

    def use(self, seconds: float, token: str, ip: str = HOME_DE, status: int = 200,
            required: str = "orders:read", scopes: list[str] | None = None, issued_at: float = 0,
            ttl: int = 600, request_id: str | None = None, jkt: str | None = None,
            proof: str | None = None) -> None:
        self.n += 1
        claims: dict[str, Any] = {
            "jti": f"{self.s.name}-{token}", "sub": self.user, "client_id": PORTAL_CLIENT, "sid": self.session,
            "scope": " ".join(scopes or SCOPES), "iss": SAMPLE_KEYCLOAK_ISSUER,
            "aud": ORDERS_API, "iat": int(self.t(issued_at).timestamp()),
            "exp": int(self.t(issued_at + ttl).timestamp()),
        }
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        line: dict[str, Any] = {
            "timestamp": _iso(self.t(seconds)), "request_id": request_id or f"{self.s.name}-r{self.n}",
            "client_ip": ip, "method": "GET", "path": "/orders/42", "status": status,
            "user_agent": BARE_BROWSER_AGENT, "required_scope": required, "jwt": claims,
        }
        if proof:
            line["dpop_jkt"] = proof
        self.s.lines.append(line)

    def login(self, scopes: list[str] | None = None, ip: str = HOME_DE) -> None:
        self.idp("issued", 0, "at1", scopes=scopes or SCOPES, ip=ip)
        self.idp("issued", 0, "rt1", "refresh", scopes=scopes or SCOPES, ip=ip, ttl=86_400)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def scenarios() -> list[Scenario]:
    out: list[Scenario] = []

    def add(name: str, expected: tuple[str, ...]) -> _Builder:
        scenario = Scenario(name, expected)
        out.append(scenario)
        return _Builder(scenario, len(out))

    b = add("refresh-reuse", ("replay.refresh_reuse",))
    b.login()
    b.idp("refreshed", 300, "rt2", "refresh", parent="rt1", scopes=SCOPES, ttl=86_400)
    b.idp("refreshed", 900, "rt3", "refresh", parent="rt1", scopes=SCOPES, ip=HOME_DE, ttl=86_400)
    b = add("refresh-retry-in-grace", ())
    b.login()
    b.idp("refreshed", 300, "rt2", "refresh", parent="rt1", scopes=SCOPES, ttl=86_400)
    b.idp("refreshed", 305, "rt2b", "refresh", parent="rt1", scopes=SCOPES, ttl=86_400)

    b = add("concurrent-use", ("replay.concurrent_use", "geo_divergence.impossible_travel",
                               "geo_divergence.issue_use_divergence"))
    b.login()
    b.use(10, "at1")
    b.use(30, "at1", ip=HOSTING_IN)
    b = add("nat-change-same-network", ())
    b.login()
    b.use(10, "at1")
    b.use(30, "at1", ip=HOME_DE_NAT)

    b = add("dpop-mismatch", ("replay.binding_mismatch",))
    b.use(10, "at1", jkt=JKT_A, proof=JKT_B)
    b = add("dpop-match", ())
    b.use(10, "at1", jkt=JKT_A, proof=JKT_A)

    b = add("duplicate-request", ("replay.duplicate_request",))
    b.use(10, "at1", request_id="dup-1")
    b.use(40, "at1", request_id="dup-1", ip=HOME_DE_NAT)
    b = add("duplicate-delivery", ())
    b.use(10, "at1", request_id="dup-1")
    b.s.lines.append(dict(b.s.lines[-1]))

    b = add("impossible-travel", ("geo_divergence.impossible_travel", "geo_divergence.issue_use_divergence"))
    b.login()
    b.use(60, "at1")
    b.use(1800, "at1", ip=HOME_US, ttl=3600)
    b = add("plausible-trip-same-country", ())
    b.login()
    b.use(60, "at1")
    b.use(500, "at1", ip=HOME_DE_NAT)

    b = add("hosting-divergence", ("geo_divergence.issue_use_divergence",))
    b.login()
    b.use(120, "at1", ip=HOSTING_DE)
    b = add("corporate-vpn-egress", ())
    b.login()
    b.use(120, "at1", ip=CORP_VPN_TEST_NET)

    b = add("scope-not-granted", ("scope_escalation.scope_not_granted",))
    b.login()
    b.use(60, "at1", required=ORDERS_ADMIN_SCOPE)
    b = add("scope-within-grant", ())
    b.login()
    b.use(60, "at1", required="orders:read")

    b = add("refresh-widening", ("scope_escalation.grant_widening", "scope_escalation.new_privileged_scope"))
    b.login()
    b.idp("refreshed", 300, "rt2", "refresh", parent="rt1", scopes=ADMIN_SCOPES, ttl=86_400)
    b = add("refresh-down-scoping", ())
    b.login()
    b.idp("refreshed", 300, "rt2", "refresh", parent="rt1", scopes=["openid", "orders:read"], ttl=86_400)

    b = add("new-privileged-scope", ("scope_escalation.new_privileged_scope",))
    b.login()
    b.idp("issued", 7200, "at2", scopes=ADMIN_SCOPES)
    b = add("privileged-scope-held-before", ())
    b.login(scopes=ADMIN_SCOPES)
    b.idp("issued", 7200, "at2", scopes=ADMIN_SCOPES)

    b = add("use-after-revocation", ("post_revocation_use.after_revocation",))
    b.login()
    b.idp("revoked", 60, "at1", target="token")
    b.use(300, "at1")
    b = add("use-within-propagation-lag", ())
    b.login()
    b.idp("revoked", 60, "at1", target="token")
    b.use(75, "at1")
    b.use(300, "at1", status=401)

    b = add("late-revocation-record", ("post_revocation_use.after_revocation",))
    b.login()
    b.use(300, "at1")
    b.idp("revoked", 60, "at1", target="token")  # arrives after the use, happened before it

    b = add("use-after-disable", ("post_revocation_use.after_disable",))
    b.login()
    b.idp("principal_disabled", 60)
    b.use(300, "at1")
    b = add("failed-use-after-disable", ())
    b.login()
    b.idp("principal_disabled", 60)
    b.use(300, "at1", status=401)

    b = add("use-after-expiry", ("post_revocation_use.after_expiry",))
    b.use(1200, "at1", issued_at=0, ttl=600)
    b = add("use-within-clock-skew", ())
    b.use(605, "at1", issued_at=0, ttl=600)
    return out


def render(all_scenarios: list[Scenario]) -> bytes:
    return b"".join(orjson.dumps(line) + b"\n" for s in all_scenarios for line in s.lines)


def scenario_of(token_id: str | None, all_scenarios: list[Scenario]) -> Scenario | None:
    """Which scenario an alert's token belongs to (longest matching name prefix)."""
    if not token_id:
        return None
    matches = [s for s in all_scenarios if token_id.startswith(s.name + "-")]
    return max(matches, key=lambda s: len(s.name)) if matches else None


SAMPLE_PATH = DATA_DIR / "sample.jsonl"

if __name__ == "__main__":
    SAMPLE_PATH.write_bytes(render(scenarios()))
    print(f"wrote {SAMPLE_PATH}")
