"""Which stored alerts an analyst means: one predicate for `alerts list` and bulk triage.

Both store backends narrow candidates with the indexed fields (:meth:`AlertFilter.index_hints`:
severity, status, time range, rule ids and prefixes) and then keep those :meth:`AlertFilter.matches`
accepts, so SQLite and Elasticsearch give the same answer for every filter: the predicate
is the only definition of what a filter means, and the hints only ever narrow what it sees.

Within one criterion any value may match (``--severity high --severity critical``); across
criteria all must. A rule pattern is an exact id, a dotted prefix (``replay`` matches
``replay.*``) or a glob (``'replay.*'``, ``'*travel*'``). A user is matched by id, name or
e-mail address (names and addresses case-insensitively). A token by its id, its family id or
the id of an evidence event's token; a value ending in ``…`` (copied from a table that
shortened it) matches as a prefix.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

from pipeline.store.base import parse_time

GLOB_CHARS = "*?["
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in GLOB_CHARS)


def rule_matches(rule: str, pattern: str) -> bool:
    """``pattern`` as an exact id, a dotted prefix or a glob."""
    if is_glob(pattern):
        return fnmatchcase(rule, pattern)
    return rule == pattern or rule.startswith(pattern.rstrip(".") + ".")


@dataclass(frozen=True)
class IndexHints:
    """What a backend may filter on in its index before the predicate runs (None: no limit)."""

    rule_prefixes: tuple[str, ...] | None  # each matches the id itself or the id + "."
    severities: tuple[str, ...] | None
    statuses: tuple[str, ...] | None
    since: datetime | None
    until: datetime | None


@dataclass(frozen=True)
class AlertFilter:
    """Criteria over stored alert documents (with their triage merged in); empty matches all."""

    rules: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    users: tuple[str, ...] = ()
    clients: tuple[str, ...] = ()
    networks: tuple[IpNetwork, ...] = ()
    tokens: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def of(cls, rule: str | None = None, severity: str | None = None, status: str | None = None,
           user: str | None = None, since: datetime | None = None) -> AlertFilter:
        """The single-valued filter of ``AlertStore.list_alerts``."""
        def one(value: str | None) -> tuple[str, ...]:
            return (value,) if value is not None else ()
        return cls(rules=one(rule), severities=one(severity), statuses=one(status), users=one(user), since=since)

    def is_empty(self) -> bool:
        return self == AlertFilter()

    def index_hints(self) -> IndexHints:
        plain = not any(is_glob(r) for r in self.rules)
        return IndexHints(
            rule_prefixes=tuple(r.rstrip(".") for r in self.rules) if self.rules and plain else None,
            severities=self.severities or None,
            statuses=self.statuses or None,
            since=self.since,
            until=self.until,
        )

    def matches(self, doc: Mapping[str, Any]) -> bool:
        core = _section(doc, "alert")
        if self.severities and core.get("severity") not in self.severities:
            return False
        if self.statuses and core.get("status", "open") not in self.statuses:
            return False
        rule = _section(doc, "rule").get("id")
        if self.rules and not (isinstance(rule, str) and any(rule_matches(rule, p) for p in self.rules)):
            return False
        if (self.since or self.until) and not self._in_time(doc):
            return False
        if self.users and not self._user(_section(doc, "user")):
            return False
        if self.clients and _section(doc, "client").get("id") not in self.clients:
            return False
        if self.networks and not _in_networks(_section(doc, "source").get("ip"), self.networks):
            return False
        if self.tokens and not self._token(doc):
            return False
        return not self.assignees or _section(doc, "triage").get("assignee") in self.assignees

    def _in_time(self, doc: Mapping[str, Any]) -> bool:
        when = parse_time(doc.get("@timestamp"))
        if when is None:
            return False
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)

    def _user(self, user: Mapping[str, Any]) -> bool:
        wanted = {u.casefold() for u in self.users}
        if user.get("id") in self.users:
            return True
        return any(isinstance(v, str) and v.casefold() in wanted for v in (user.get("name"), user.get("email")))

    def _token(self, doc: Mapping[str, Any]) -> bool:
        token = _section(doc, "token")
        ids = {token.get("id"), token.get("family_id")}
        ids |= {e.get("token_id") for e in doc.get("evidence") or () if isinstance(e, Mapping)}
        have = [i for i in ids if isinstance(i, str)]
        for wanted in self.tokens:
            stem = wanted.removesuffix("…").removesuffix("...")
            if any(i == wanted or (stem != wanted and stem and i.startswith(stem)) for i in have):
                return True
        return False

    def describe(self) -> str:
        """The criteria as one line, for audit entries and dry-run output."""
        parts = [f"{name}={','.join(values)}" for name, values in (
            ("rule", self.rules), ("severity", self.severities), ("status", self.statuses),
            ("user", self.users), ("client", self.clients), ("ip", tuple(str(n) for n in self.networks)),
            ("token", self.tokens), ("assignee", self.assignees)) if values]
        parts += [f"{name}={when.isoformat()}" for name, when in (("since", self.since), ("until", self.until))
                  if when is not None]
        return " ".join(parts) or "all alerts"


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, Mapping) else {}


def _in_networks(ip: Any, networks: tuple[IpNetwork, ...]) -> bool:
    if not isinstance(ip, str):
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:  # a service name ("ec2.amazonaws.com") is in no network
        return False
    return any(address.version == n.version and address in n for n in networks)
