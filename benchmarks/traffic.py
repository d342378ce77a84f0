"""Synthetic but realistic token traffic as raw JSON lines (canonical + gateway).

A population of users on residential ISPs logs in (an ``issued`` access token
plus refresh token), calls APIs through a gateway for a while (``used``
lines, a few percent rejected), and rotates refresh tokens every few
minutes. No attacks: the benchmark measures the benign steady state, which is
where a detector spends its life.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import orjson

# Real residential prefixes (so enrichment does real lookups): (prefix, country)
RESIDENTIAL = [
    ("79.200", "DE"), ("91.64", "DE"), ("73.1", "US"), ("24.45", "US"), ("2.125", "GB"),
    ("81.2", "GB"), ("126.10", "JP"), ("89.160", "SE"), ("175.16", "CN"), ("45.83", "UA"),
]
CLIENTS = ["portal", "mobile", "cli", "reports"]
ROUTES = [("GET", "/orders/{}", "orders:read"), ("POST", "/orders", "orders:write"),
          ("GET", "/profile", "profile"), ("GET", "/payments/{}", "payments:read")]
SCOPES = "openid profile orders:read orders:write payments:read"
START = datetime(2026, 11, 24, 8, 0, tzinfo=timezone.utc)


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _issued(eid: str, t: datetime, token: str, ttype: str, family: str, user: str, client: str,
            ip: str, parent: str | None = None, kind: str = "issued", ttl: int = 300) -> bytes:
    return orjson.dumps({
        "canonical_version": 1, "event_id": eid, "kind": kind, "time": _iso(t), "source": "idp",
        "token": {"id": token, "type": ttype, "family_id": family, "parent_id": parent,
                  "issued_at": _iso(t), "expires_at": _iso(t + timedelta(seconds=ttl))},
        "subject": {"id": user, "kind": "user"}, "client_id": client, "session_id": family,
        "scopes": SCOPES.split(), "network": {"ip": ip, "user_agent": "Mozilla/5.0"},
    })


def _used(rid: str, t: datetime, token: str, user: str, client: str, ip: str, issued: datetime,
          rng: random.Random) -> bytes:
    method, path, scope = rng.choice(ROUTES)
    status = 200 if rng.random() > 0.03 else rng.choice([401, 403, 404])
    return orjson.dumps({
        "timestamp": _iso(t), "request_id": rid, "client_ip": ip, "method": method,
        "path": path.format(rng.randint(1, 9999)), "status": status, "user_agent": "Mozilla/5.0",
        "required_scope": scope,
        "jwt": {"jti": token, "sub": user, "client_id": client, "scope": SCOPES,
                "iss": "https://sso.example.org/realms/main", "aud": "api",
                "iat": int(issued.timestamp()), "exp": int(issued.timestamp()) + 300},
    })


def generate(n_events: int, users: int = 20_000, seed: int = 7) -> Iterator[bytes]:
    """Yield about ``n_events`` lines in near event-time order (sessions interleave)."""
    rng = random.Random(seed)
    homes = {f"user-{u}": f"{rng.choice(RESIDENTIAL)[0]}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
             for u in range(users)}
    active: list[dict] = []
    now = START
    produced = 0
    session_seq = 0
    while produced < n_events:
        now += timedelta(milliseconds=rng.randint(1, 20))
        if len(active) < 2_000 or rng.random() < 0.01:
            session_seq += 1
            user = f"user-{rng.randrange(users)}"
            fam = f"sess-{session_seq}"
            s = {"user": user, "client": rng.choice(CLIENTS), "ip": homes[user], "family": fam,
                 "gen": 0, "at": f"at-{session_seq}-0", "rt": f"rt-{session_seq}-0", "issued": now,
                 "left": rng.randint(20, 120)}
            active.append(s)
            yield _issued(f"iss-{session_seq}", now, s["at"], "access", fam, user, s["client"], s["ip"])
            yield _issued(f"issr-{session_seq}", now, s["rt"], "refresh", fam, user, s["client"], s["ip"], ttl=86_400)
            produced += 2
            continue
        s = active[rng.randrange(len(active))]
        if (now - s["issued"]).total_seconds() > 240:
            s["gen"] += 1
            old_rt = s["rt"]
            s["at"], s["rt"], s["issued"] = (f"at-{s['family']}-{s['gen']}", f"rt-{s['family']}-{s['gen']}", now)
            yield _issued(f"ref-{s['family']}-{s['gen']}", now, s["rt"], "refresh", s["family"], s["user"],
                          s["client"], s["ip"], parent=old_rt, kind="refreshed", ttl=86_400)
            yield _issued(f"refa-{s['family']}-{s['gen']}", now, s["at"], "access", s["family"], s["user"],
                          s["client"], s["ip"], parent=old_rt)
            produced += 2
            continue
        produced += 1
        yield _used(f"req-{produced}", now, s["at"], s["user"], s["client"], s["ip"], s["issued"], rng)
        s["left"] -= 1
        if s["left"] <= 0:
            active.remove(s)
