"""The filter options of `alerts list` and of bulk triage (`alerts ack|close|assign --where`).

Options become one :class:`pipeline.store.filters.AlertFilter`, so what `list` shows is what
`--where` changes. ``--since``/``--until`` take an ISO time or a duration (``24h``, ``7d``);
a duration counts back from now, or with ``--relative-to data`` from the newest alert in the
store (replayed or demo data is not from the last day).
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import re
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

from detectors import DETECTORS
from pipeline.response.breaker import RULE_ID as BREAKER_RULE_ID
from pipeline.store import base
from pipeline.store.base import AlertStore, parse_time
from pipeline.store.filters import AlertFilter, IpNetwork, is_glob, rule_matches
from pipeline.terminal import printable

SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "acknowledged", "closed")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
FILTER_DESTS = ("rule", "severity", "status", "user", "client", "ip", "token", "assignee", "since", "until")


def duration(text: str) -> timedelta:
    """``90m``, ``24h``, ``7d``, ``2w``, ``1h30m``."""
    parts = re.fullmatch(r"(?:\d+[smhdw])+", text.strip().lower())
    if not parts:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30m, 24h, 7d)")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhdw])", text.lower()))
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return timedelta(seconds=seconds)


def iso_time(text: str) -> datetime:
    """An ISO time; UTC if it has no zone."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r} (e.g. 2026-11-24T10:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def time_spec(text: str) -> datetime | timedelta:
    """An ISO time (UTC if it has no zone), or a duration: that long before the anchor."""
    try:
        return duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return iso_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not a time or duration: {text!r} (e.g. 24h, 2026-11-24T10:00Z)") from None


def network(text: str) -> IpNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address or CIDR range: {text!r} (e.g. 203.0.113.0/24)") from None


def known_rules() -> list[str]:
    """Every rule id an alert can carry: the detectors' rules and tokenwatch's own (the breaker)."""
    return sorted({rule.id for cls in DETECTORS.values() for rule in cls.rules} | {BREAKER_RULE_ID})


def add_filter_options(p: argparse.ArgumentParser) -> None:
    """The filter options (each repeatable: any value matches; different options must all match)."""
    g = p.add_argument_group("filters (repeat an option for any of several values; all options must match)")
    g.add_argument("--rule", action="append", metavar="RULE",
                   help="rule id, prefix (replay: replay.*) or glob ('*travel*')")
    g.add_argument("--severity", action="append", choices=SEVERITIES)
    g.add_argument("--status", action="append", choices=STATUSES)
    g.add_argument("--user", action="append", metavar="USER", help="user id, name or e-mail address")
    g.add_argument("--client", action="append", metavar="CLIENT", help="client id")
    g.add_argument("--ip", action="append", type=network, metavar="ADDR|CIDR",
                   help="source address, or a range it lies in (203.0.113.0/24)")
    g.add_argument("--token", action="append", metavar="TOKEN",
                   help="token or family id as shown (a shortened id ending in … matches as a prefix)")
    g.add_argument("--assignee", action="append", metavar="WHO", help="assigned to (see `alerts assign`)")
    g.add_argument("--since", type=time_spec, metavar="TIME",
                   help="at or after: ISO time (UTC if no zone) or a duration ago (24h, 7d)")
    g.add_argument("--until", type=time_spec, metavar="TIME", help="at or before: ISO time or a duration ago")
    g.add_argument("--relative-to", choices=("now", "data"), default="now",
                   help="what a duration counts back from: the clock (default) or the newest alert in the store")


def has_filters(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) is not None for name in FILTER_DESTS)


def alert_filter(args: argparse.Namespace, store: AlertStore) -> AlertFilter:
    """The filter the options describe; durations resolved against ``--relative-to``."""
    for pattern in args.rule or ():
        _warn_unknown_rule(pattern)
    anchor: datetime | None = None

    def resolve(spec: datetime | timedelta | None) -> datetime | None:
        nonlocal anchor
        if not isinstance(spec, timedelta):
            return spec
        if anchor is None:
            anchor = _anchor(args.relative_to, store)
        return anchor - spec

    return AlertFilter(
        rules=tuple(args.rule or ()), severities=tuple(args.severity or ()), statuses=tuple(args.status or ()),
        users=tuple(args.user or ()), clients=tuple(args.client or ()), networks=tuple(args.ip or ()),
        tokens=tuple(args.token or ()), assignees=tuple(args.assignee or ()),
        since=resolve(args.since), until=resolve(args.until),
    )


def _anchor(relative_to: str, store: AlertStore) -> datetime:
    """Now, or the newest alert's ``@timestamp`` (now for an empty store)."""
    if relative_to == "data":
        newest = store.find_alerts(AlertFilter(), limit=1)
        when = parse_time(newest[0].get("@timestamp")) if newest else None
        if when is not None:
            return when
    return base.utcnow()


def _warn_unknown_rule(pattern: str) -> None:
    """A pattern no known rule matches is likely a typo: say so (the store may hold older rules)."""
    rules = known_rules()
    if any(rule_matches(r, pattern) for r in rules):
        return
    close = difflib.get_close_matches(pattern, rules, n=3, cutoff=0.6) if not is_glob(pattern) else []
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    print(printable(f"tokenwatch: warning: --rule {pattern!r} matches no known rule{hint}"), file=sys.stderr)


def described(where: AlertFilter) -> dict[str, Any]:
    """The filter for an audit entry's details."""
    return {"where": where.describe()}
