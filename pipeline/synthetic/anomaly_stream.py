"""A labeled evaluation stream: ordinary populations with daily rhythms, and injected
behavioural attacks that no rule catches.

Populations (archetypes): office workers on the web portal (weekday hours in
their own time zone, a personal set of pages), mobile-app users (home ISP and
mobile carrier), analysts (wide report sweeps are normal for them), a night
shift, and automation service accounts (around the clock, from a cloud
network, a handful of endpoints). Ordinary noise: a café or hotel network,
a browser update landing in the middle of a burst, a page never opened before,
late evenings, 3 % rejected requests, a phone handing over from home Wi-Fi to
its carrier (or back), an office worker connecting the corporate VPN
mid-session (one-way: the earlier network and agent are not used again).

Attacks, all on tokens valid at the time, from places and with scopes that
the rule families accept (same country, residential networks, granted
scopes, no concurrent second network, failures only where rejected):

- ``offhours_burst``: a stolen portal token used at night from another ISP of
  the victim's country with a script user agent, sweeping many pages;
- ``automation_reads_mail``: an automation account whose token starts reading
  mailboxes (granted but never used) at its usual rate, from its usual network;
- ``device_enumeration``: malware on the victim's own device (same address and
  browser) enumerating resources during working hours, many rejected;
- ``scope_sweep``: a stolen mobile token exercising every granted scope;
- ``low_and_slow``: a few extra ordinary requests from another address of the
  victim's ISP during working hours — deliberately close to normal, to show
  what the model misses;
- ``session_takeover``: the victim works from home, then a thief carries on with
  the same token, once the victim stops, from another ISP of the victim's country
  with another browser and OS, reading the victim's usual pages (a one-way move in
  one country: no concurrency rule fires; the device change inside the token does).

Labels: one JSON line per attack, ``{"token_id", "start", "end", "attack"}``;
a behaviour window of that token overlapping [start, end] is an attack window.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from detectors.device import agent_family
from pipeline.synthetic.vocabulary import (
    BROWSER_AGENT_TEMPLATES,
    MOBILE_APP_CLIENT,
    PORTAL_CLIENT,
    STREAM_CLOUD,
    STREAM_CORP,
    STREAM_ISPS,
    STREAM_MOBILE_APP_AGENT,
    STREAM_SCRIPT_AGENT,
    STREAM_START,
    STREAM_UTC_OFFSET,
    StatedNetwork,
)

ATTACKS = ("offhours_burst", "automation_reads_mail", "device_enumeration", "scope_sweep", "low_and_slow",
           "session_takeover")

PORTAL = [("orders", "orders:read"), ("orders/{id}", "orders:read"), ("invoices", "invoices:read"),
          ("invoices/{id}", "invoices:read"), ("profile", "profile"), ("calendar", "calendar:read"),
          ("calendar/events/{id}", "calendar:read"), ("files", "files:read"), ("files/{id}", "files:read"),
          ("tasks", "tasks:read"), ("tasks/{id}", "tasks:read"), ("team", "team:read"),
          ("team/{id}", "team:read"), ("wiki", "wiki:read"), ("wiki/{id}", "wiki:read"),
          ("tickets", "tickets:read"), ("tickets/{id}", "tickets:read"), ("expenses", "expenses:read"),
          ("expenses/{id}", "expenses:read"), ("contacts", "contacts:read"), ("contacts/{id}", "contacts:read"),
          ("mail/messages", "mail:read"), ("mail/messages/{id}", "mail:read"), ("hr/payslips", "hr:read"),
          ("hr/payslips/{id}", "hr:read"), ("crm/accounts", "crm:read"), ("crm/accounts/{id}", "crm:read")]
REPORTS = [(f"reports/{area}/{kind}", "reports:read") for area in
           ("sales", "ops", "finance", "hr", "support", "marketing", "it", "legal")
           for kind in ("daily", "weekly", "monthly", "kpi", "export", "trend", "detail", "summary", "raw", "pivot")]
ETL = [("ingest/batches", "etl:write"), ("ingest/batches/{id}", "etl:write"), ("jobs", "jobs:read"),
       ("jobs/{id}", "jobs:read"), ("jobs/{id}/status", "jobs:read"), ("datasets", "data:read"),
       ("datasets/{id}", "data:read"), ("metrics", "metrics:write"),
       ("mail/messages", "mail:read"), ("mail/messages/{id}", "mail:read"), ("mail/folders", "mail:read")]


@dataclass
class User:
    id: str
    kind: str  # office | mobile | analyst | night | service
    client: str
    country: str
    home: StatedNetwork
    host: int
    agent: str
    resources: list[tuple[str, str]]
    catalogue: list[tuple[str, str]]
    start: int  # first local hour of activity
    end: int  # last local hour (exclusive)
    ttl_s: int
    other_nets: list[StatedNetwork] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    """From ``at`` (epoch s) on, a user's uses come from ``net`` and/or with ``agent``."""

    at: float
    net: StatedNetwork | None = None
    agent: str | None = None


@dataclass
class Token:
    id: str
    expires: float


class Generator:
    def __init__(self, seed: int, scale: float = 1.0, days: int = 14, attack_days: int = 7,
                 attacks_per_kind: int = 8, low_and_slow: int = 3) -> None:
        self.rng = random.Random(seed)
        self.days, self.attack_days, self.attacks_per_kind = days, attack_days, attacks_per_kind
        self.low_and_slow = low_and_slow
        self.lines: list[dict[str, Any]] = []
        self.labels: list[dict[str, Any]] = []
        self.tokens: dict[str, Token] = {}
        self.seq = 0
        self.users = self._population(scale)

    # -- population ------------------------------------------------------------------
    def _population(self, scale: float) -> list[User]:
        rng, users = self.rng, []
        counts = {"office": 110, "mobile": 45, "analyst": 18, "night": 18, "service": 16}
        for kind, count in counts.items():
            for i in range(max(2, round(count * scale))):
                country = rng.choice(["DE", "DE", "DE", "US", "JP"]) if kind != "service" else "DE"
                home = rng.choice(STREAM_ISPS[country])
                agent = rng.choice(BROWSER_AGENT_TEMPLATES).format(v=f"{rng.randint(118, 124)}.0")
                if kind == "office":
                    user = User(f"{kind}-{i:03d}", kind, PORTAL_CLIENT, country, home, rng.randint(0, 9999), agent,
                                rng.sample(PORTAL[:21], rng.randint(4, 8)), PORTAL,
                                rng.choice([7, 8, 9]), rng.choice([16, 17, 18]), 12 * 3600, [STREAM_CORP[country]])
                elif kind == "mobile":
                    carrier = rng.choice([n for n in STREAM_ISPS[country] if n is not home])
                    user = User(f"{kind}-{i:03d}", kind, MOBILE_APP_CLIENT, country, home, rng.randint(0, 9999),
                                STREAM_MOBILE_APP_AGENT.format(minor=rng.randint(0, 4)), rng.sample(PORTAL[:21], 5),
                                PORTAL, 7, 23, 3600, [carrier])
                elif kind == "analyst":
                    user = User(f"{kind}-{i:03d}", kind, "reports", country, STREAM_CORP[country],
                                rng.randint(0, 9999), agent, rng.sample(REPORTS, 45), REPORTS, 9, 17, 12 * 3600)
                elif kind == "night":
                    user = User(f"{kind}-{i:03d}", kind, PORTAL_CLIENT, country, home, rng.randint(0, 9999), agent,
                                rng.sample(PORTAL[:21], 5), PORTAL, 21, 29, 12 * 3600)
                else:
                    client = f"etl-{i % 4}"
                    user = User(f"svc-{i:03d}", kind, client, "DE", STREAM_CLOUD, rng.randint(0, 9999),
                                STREAM_SCRIPT_AGENT, rng.sample(ETL[:8], 4), ETL, 0, 24, 3600)
                users.append(user)
        return users

    # -- events ----------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq:07d}"

    def _token(self, user: User, t: float, net: StatedNetwork) -> Token:
        """The user's current token, issuing a new one when it expired."""
        tok = self.tokens.get(user.id)
        if tok is not None and tok.expires > t + 600:
            return tok
        tok = Token(self._id(f"at-{user.id}"), t + user.ttl_s)
        self.tokens[user.id] = tok
        scopes = sorted({s for _, s in user.catalogue})
        self.lines.append(self._line("issued", t - 1, user, tok, net, user.agent, scopes=scopes,
                                     grant="client_credentials" if user.kind == "service" else "authorization_code"))
        return tok

    def _line(self, kind: str, t: float, user: User, tok: Token, net: StatedNetwork, agent: str, **extra: Any) -> dict[str, Any]:
        line: dict[str, Any] = {
            "canonical_version": 1, "event_id": self._id("ev"), "kind": kind, "time": _iso(t), "source": "synth",
            "token": {"id": tok.id, "type": "access", "family_id": tok.id, "expires_at": _iso(tok.expires)},
            "subject": {"id": user.id, "kind": "service" if user.kind == "service" else "user"},
            "client_id": user.client, "network": _network(net, user.host, agent),
        }
        if kind == "issued":
            line["token"]["issued_at"] = _iso(t)
            line["scopes"] = extra["scopes"]
            line["grant_type"] = extra["grant"]
        return line

    def _use(self, t: float, user: User, tok: Token, net: StatedNetwork, agent: str, resource: tuple[str, str],
             status: int = 200, host: int | None = None) -> None:
        path, scope = resource
        path = "/" + path.replace("{id}", str(self.rng.randint(1, 99_999)))
        line = self._line("used", t, user, tok, net, agent)
        if host is not None:
            line["network"]["ip"] = f"{net.prefix}.{host % 250 + 1}"
        line["scopes"] = sorted({s for _, s in user.catalogue})
        line["required_scopes"] = [scope]
        line["request"] = {"id": self._id("rq"), "method": "GET", "resource": path, "status": status}
        line["outcome"] = {"result": "success" if status < 400 else "failure"}
        self.lines.append(line)

    def _burst(self, user: User, t: float, n: int, span_s: float, net: StatedNetwork, agent: str,
               resources: list[tuple[str, str]], fail: float = 0.03, change: Change | None = None) -> None:
        """``n`` uses over ``span_s``; from ``change.at`` on, ``change``'s network or agent."""
        tok = self._token(user, t, net)
        for k in sorted(self.rng.uniform(0, span_s) for _ in range(n)):
            status = 403 if self.rng.random() < fail else 200
            now = change if change is not None and t + k >= change.at else None
            self._use(t + k, user, tok, now.net if now is not None and now.net else net,
                      now.agent if now is not None and now.agent else agent,
                      self.rng.choice(resources), status)

    def _day(self, user: User, day: int) -> None:
        rng = self.rng
        t0 = (STREAM_START + timedelta(days=day)).timestamp()
        weekend = day % 7 >= 5
        if user.kind == "service":
            for slot in range(144):
                if rng.random() < 0.5:
                    self._burst(user, t0 + slot * 600 + rng.uniform(0, 60), rng.randint(3, 8), 480, user.home,
                                user.agent, user.resources, fail=0.01)
            return
        if weekend and rng.random() > 0.15:
            return
        agent = user.agent
        updated = None
        if rng.random() < 0.03:  # a browser or app update: a new user agent from now on
            updated = user.agent = user.agent.rsplit("/", 1)[0] + f"/{rng.randint(125, 140)}.0"
        if user.kind != "analyst" and rng.random() < 0.15:
            user.host += 1  # residential addresses change now and then
        day_net = user.home  # one network at a time: a token is never used from two at once
        if user.other_nets and rng.random() < 0.6:
            day_net = user.other_nets[0]
        if rng.random() < 0.04:
            day_net = rng.choice(STREAM_ISPS[user.country])  # café, hotel, a friend's network
        handover = None
        if user.kind == "mobile" and rng.random() < 0.3:  # home Wi-Fi <-> carrier
            handover = user.other_nets[0] if day_net is user.home else user.home
        elif user.kind == "office" and day_net is not STREAM_CORP[user.country] and rng.random() < 0.1:
            handover = STREAM_CORP[user.country]  # the corporate VPN connects
        plan = []
        for _ in range(max(1, int(rng.gauss({"office": 6, "mobile": 8, "analyst": 4, "night": 5}[user.kind], 1.5)))):
            hour = rng.uniform(user.start, user.end)
            if rng.random() < 0.03:
                hour = rng.uniform(user.end, user.end + 3)  # working late
            resources = list(user.resources)
            if rng.random() < 0.1:
                resources.append(rng.choice(user.catalogue[:21]))  # a page never opened before
            if user.kind == "analyst":
                n, span = rng.randint(20, 60), 540
            else:
                n, span = max(1, int(rng.gauss(7 if user.kind == "office" else 4, 2))), 420
            plan.append((t0 + (hour - STREAM_UTC_OFFSET[user.country]) * 3600, n, span, resources))
        # A handover or an update happens once, in the middle of one burst, and holds from then
        # on (one-way: the earlier network or agent is not used again that day).
        middle = rng.choice(plan)
        change = Change(middle[0] + middle[2] / 2, handover, updated) if handover or updated else None
        for t, n, span, resources in plan:
            self._burst(user, t, n, span, day_net, agent, resources, change=change)

    # -- attacks ---------------------------------------------------------------------
    def _attack(self, kind: str, victim: User, day: int) -> None:
        rng = self.rng
        t0 = (STREAM_START + timedelta(days=day)).timestamp()

        def local(hour: float) -> float:
            """Epoch seconds of ``hour`` o'clock in the victim's time zone on that day."""
            return t0 + (hour - STREAM_UTC_OFFSET[victim.country]) * 3600

        self.tokens.pop(victim.id, None)  # a token of its own: the victim's other uses stay unlabeled
        if kind == "offhours_burst":
            # the victim worked in the afternoon: its token is valid through the night
            self._burst(victim, local(15 + rng.random()), 5, 300, victim.home, victim.agent, victim.resources)
            start = local(24 + rng.uniform(0.5, 2.5))
            net = rng.choice([n for n in STREAM_ISPS[victim.country] if n is not victim.home])
            n, span, agent = rng.randint(25, 60), 500, STREAM_SCRIPT_AGENT
            tok = self.tokens[victim.id]
            sweep = rng.sample(victim.catalogue[:21], 15)
            for k in sorted(rng.uniform(0, span) for _ in range(n)):
                self._use(start + k, victim, tok, net, agent, rng.choice(sweep), host=rng.randint(0, 9999))
        elif kind == "automation_reads_mail":
            start = t0 + rng.uniform(2, 20) * 3600
            tok = self._token(victim, start, victim.home)
            n = rng.randint(4, 9)
            for k in sorted(rng.uniform(0, 480) for _ in range(n)):
                self._use(start + k, victim, tok, victim.home, victim.agent, rng.choice(ETL[8:]))
        elif kind == "device_enumeration":
            start = local(rng.uniform(victim.start + 1, victim.end - 1))
            tok = self._token(victim, start, victim.home)
            n = rng.randint(40, 80)
            for k in sorted(rng.uniform(0, 540) for _ in range(n)):
                res = rng.choice(victim.catalogue)
                self._use(start + k, victim, tok, victim.home, victim.agent, res, 403 if rng.random() < 0.4 else 200)
        elif kind == "scope_sweep":
            start = local(rng.uniform(victim.start + 1, victim.end - 2))
            net = victim.other_nets[0] if victim.other_nets else victim.home
            tok = self._token(victim, start, net)
            scoped: dict[str, tuple[str, str]] = {s: (p, s) for p, s in victim.catalogue}
            for k, res in enumerate(rng.sample(list(scoped.values()), min(10, len(scoped)))):
                self._use(start + 20 + k * 40, victim, tok, net, victim.agent, res)
        elif kind == "session_takeover":
            begin = local(rng.uniform(victim.start + 1, victim.end - 1))
            tok = self._token(victim, begin, victim.home)
            for k in range(rng.randint(2, 4)):
                self._use(begin + k * 40, victim, tok, victim.home, victim.agent, rng.choice(victim.resources))
            start = begin + 200
            net = rng.choice([n for n in STREAM_ISPS[victim.country] if n is not victim.home])
            other = [b for b in BROWSER_AGENT_TEMPLATES if agent_family(b) != agent_family(victim.agent)]
            agent = rng.choice(other).format(v=f"{rng.randint(118, 124)}.0")
            for k in range(rng.randint(4, 8)):
                self._use(start + k * 45, victim, tok, net, agent, rng.choice(victim.resources),
                          host=rng.randint(0, 9999))
        else:  # low_and_slow
            start = local(rng.uniform(victim.start + 1, victim.end - 1))
            tok = self._token(victim, start, victim.home)
            for k in range(rng.randint(4, 8)):
                self._use(start + 30 + k * 60, victim, tok, victim.home, victim.agent,
                          rng.choice(victim.resources), host=victim.host + 7)
        end = max(_epoch(line["time"]) for line in self.lines[-200:] if line["token"]["id"] == tok.id)
        self.labels.append({"token_id": tok.id, "start": _iso(start), "end": _iso(end), "attack": kind,
                            "subject": victim.id})

    def generate(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rng = self.rng
        victims_of = {
            "offhours_burst": [u for u in self.users if u.kind == "office"],
            "automation_reads_mail": [u for u in self.users if u.kind == "service"],
            "device_enumeration": [u for u in self.users if u.kind == "office"],
            "scope_sweep": [u for u in self.users if u.kind == "mobile"],
            "low_and_slow": [u for u in self.users if u.kind == "office"],
            "session_takeover": [u for u in self.users if u.kind == "office"],
        }
        first = self.days - self.attack_days
        plan: dict[int, list[tuple[str, User]]] = {}
        for kind in ATTACKS:
            for _ in range(self.attacks_per_kind if kind != "low_and_slow" else self.low_and_slow):
                day = rng.randrange(first, self.days)
                while day % 7 >= 5 and kind != "automation_reads_mail":
                    day = rng.randrange(first, self.days)
                plan.setdefault(day, []).append((kind, rng.choice(victims_of[kind])))
        for day in range(self.days):
            for user in self.users:
                self._day(user, day)
            for kind, victim in plan.get(day, []):
                self._attack(kind, victim, day)
        self.lines.sort(key=lambda line: (line["time"], line["event_id"]))
        return self.lines, self.labels


def generate(seed: int, scale: float = 1.0, days: int = 14, attack_days: int = 7,
             attacks_per_kind: int = 8, low_and_slow: int = 3) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(canonical event lines in event-time order, attack labels)."""
    return Generator(seed, scale, days, attack_days, attacks_per_kind, low_and_slow).generate()


def split_time(days: int, attack_days: int) -> datetime:
    """Where the attack-free training prefix ends."""
    return STREAM_START + timedelta(days=days - attack_days)


def lines_before(lines: list[dict[str, Any]], end: datetime) -> Iterator[dict[str, Any]]:
    stamp = _iso(end.timestamp())
    return (line for line in lines if line["time"] < stamp)


def _network(net: StatedNetwork, host: int, agent: str) -> dict[str, Any]:
    """An event's network as the stream states it: address, agent, AS and place."""
    return {"ip": f"{net.prefix}.{host % 250 + 1}", "user_agent": agent, "asn": net.asn, "as_org": net.as_org,
            "hosting": net.hosting, "geo": {"country": net.country, "city": net.city.name, "lat": net.city.lat,
                                            "lon": net.city.lon, "accuracy_km": 25.0, "source": "event"}}


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
