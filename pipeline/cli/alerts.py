"""Analyst triage commands: `tokenwatch alerts list|show|ack|close|reopen|suppress|unsuppress|
suppressions|import` (the `actions` commands live in :mod:`pipeline.cli.response`).

They work on the configured store (``[store]``: SQLite file by default, Elasticsearch when
``backend = "elasticsearch"``). Every command that changes something is written to the
audit trail with the analyst's name (``--actor``, else ``$TOKENWATCH_ACTOR``, else the
OS login name). Unknown ids exit with 2 and say which id. What is printed goes through
:func:`pipeline.terminal.printable` (ids, names and notes come from input and analysts);
``--json`` output is escaped by the JSON encoder (ASCII only).
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from detectors import DETECTORS
from pipeline import exit_codes
from pipeline.actor import ActorError, resolve_actor
from pipeline.config import Settings, load_settings
from pipeline.response.breaker import RULE_ID as BREAKER_RULE_ID
from pipeline.store import base, render
from pipeline.store.base import AlertStore, StoreNotFound, open_store
from pipeline.store.ingest import AlertFileError, import_alerts, read_alert_lines
from pipeline.terminal import printable
from schemas.actions import AuditEntry, Suppression

DISPOSITIONS = ("true_positive", "false_positive", "benign")
SEVERITIES = ("low", "medium", "high", "critical")
STATUSES = ("open", "acknowledged", "closed")
ACTION_STATES = ("pending", "awaiting_approval", "in_progress", "succeeded", "failed", "gave_up",
                 "dry_run", "notified", "skipped", "denied", "cancelled")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class UsageError(Exception):
    """Bad input found after parsing (unknown id, bad suppression): exit 2 with the message."""


def now() -> datetime:
    return base.utcnow()


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


def known_rules() -> list[str]:
    """Every rule id an alert can carry: the detectors' rules and tokenwatch's own (the breaker)."""
    return sorted({rule.id for cls in DETECTORS.values() for rule in cls.rules} | {BREAKER_RULE_ID})


def checked_rule(pattern: str) -> str:
    """``pattern`` if it names a known rule id or is a glob matching at least one; else a
    ``UsageError`` with the closest ids (a typo would make a suppression that never matches)."""
    rules = known_rules()
    if any(fnmatchcase(rule, pattern) for rule in rules):
        return pattern
    what = "matches no rule" if any(c in pattern for c in "*?[") else "is not a rule id"
    close = difflib.get_close_matches(pattern, rules, n=3, cutoff=0.8)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; rule ids: {', '.join(rules)}"
    raise UsageError(f"--rule {pattern!r} {what}{hint}")


def point_in_time(text: str) -> datetime:
    """An ISO time (UTC if it has no zone) or a duration meaning that long ago."""
    try:
        return now() - duration(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        return iso_time(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not a time or duration: {text!r} (e.g. 24h, 2026-11-24T10:00Z)") from None


# -- parser ------------------------------------------------------------------------------

def json_option() -> argparse.ArgumentParser:
    """The ``--json`` parent parser of the listing commands (alerts and actions alike)."""
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="JSON documents instead of a table")
    return as_json


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", type=Path, help="TOML configuration file (its [store] table)")
    common.add_argument("--actor", default=None, help="who you are, for the audit trail "
                        "(default: $TOKENWATCH_ACTOR, else your login name)")
    as_json = json_option()

    alerts = sub.add_parser("alerts", help="review and triage alerts in the store")
    alerts.set_defaults(func=lambda args: alerts.print_help(sys.stderr) or 2)
    asub = alerts.add_subparsers(metavar="ACTION")

    p = asub.add_parser("list", parents=[common, as_json], help="alerts, newest first (--json: JSON lines)")
    p.add_argument("--rule", help="rule id, e.g. replay.refresh_reuse")
    p.add_argument("--severity", choices=SEVERITIES)
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--user", help="user id")
    p.add_argument("--since", type=point_in_time, help="ISO time, or a duration ago (24h, 7d)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: %(default)s)")
    p.set_defaults(func=with_store(cmd_list))

    p = asub.add_parser("show", parents=[common, as_json], help="one alert: evidence timeline, actions, audit trail")
    p.add_argument("id")
    p.set_defaults(func=with_store(cmd_show))

    for name, status, text in (("ack", "acknowledged", "acknowledge an alert (you are on it)"),
                               ("close", "closed", "close an alert with a disposition"),
                               ("reopen", "open", "reopen an acknowledged or closed alert")):
        p = asub.add_parser(name, parents=[common], help=text)
        p.add_argument("id")
        p.add_argument("--disposition", choices=DISPOSITIONS, required=name == "close")
        p.add_argument("--note", help="why; kept with the alert and in the audit trail")
        p.set_defaults(func=with_store(cmd_status), status=status)

    p = asub.add_parser("suppress", parents=[common], help="suppress future alerts matching all given criteria")
    p.add_argument("--rule", help="rule id")
    p.add_argument("--user", help="user id")
    p.add_argument("--client", help="client id")
    p.add_argument("--ip", help="source address or CIDR range")
    p.add_argument("--asn", type=int, help="source autonomous system number")
    p.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    until = p.add_mutually_exclusive_group(required=True)
    until.add_argument("--for", dest="for_", type=duration, metavar="DURATION", help="e.g. 24h, 7d")
    until.add_argument("--expires", type=iso_time, help="ISO time the suppression ends (UTC if no zone)")
    p.add_argument("--close-matching", action="store_true",
                   help="also close the open alerts it matches now (each audited)")
    p.set_defaults(func=with_store(cmd_suppress))

    p = asub.add_parser("unsuppress", parents=[common], help="remove a suppression (see `alerts suppressions`)")
    p.add_argument("id")
    p.add_argument("--reason", default="", help="why (kept in the audit trail)")
    p.set_defaults(func=with_store(cmd_unsuppress))

    p = asub.add_parser("suppressions", parents=[common, as_json], help="active suppressions")
    p.set_defaults(func=with_store(cmd_suppressions))

    p = asub.add_parser("import", parents=[common], help="load alert JSON lines (from `tokenwatch detect`) into the store")
    p.add_argument("--input", "-i", required=True, help="file of alert JSON lines, or - for stdin")
    p.set_defaults(func=with_store(cmd_import, create=True))


@contextmanager
def opened_store(config: Path | None) -> Iterator[AlertStore]:
    """The configured store for a command that reads it (a missing one raises ``StoreNotFound``)."""
    store = open_store(load_settings(config), create=False)
    try:
        yield store
    finally:
        store.close()


def with_store(
    command: Callable[[argparse.Namespace, AlertStore], int], *, create: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Open the store, resolve the actor, map usage errors to exit 2, store failures to 1
    and a store that does not exist to 3 (only ``create`` commands, such as ``import``,
    make a new one: an empty table from a mistyped path looks like "no alerts").
    The command finds the settings in ``args.settings``."""

    def run(args: argparse.Namespace) -> int:
        try:
            args.actor = resolve_actor(args.actor)
        except ActorError as exc:
            print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
            return 2
        try:
            args.settings = load_settings(args.config)
            try:
                store = open_store(args.settings, create=create)
            except StoreNotFound as exc:
                print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
                return exit_codes.NOT_FOUND
            try:
                return command(args, store)
            finally:
                store.close()
        except UsageError as exc:
            print(printable(f"tokenwatch: {exc}"), file=sys.stderr)
            return 2
        except Exception as exc:  # the store is unreachable or broken: say so, no traceback
            if _is_store_error(exc):
                print(printable(f"tokenwatch: cannot use the store: {type(exc).__name__}: {exc}"), file=sys.stderr)
                return 1
            raise

    return run


def _is_store_error(exc: Exception) -> bool:
    import sqlite3

    if isinstance(exc, sqlite3.Error):
        return True
    try:
        from elastic_transport import TransportError
        from elasticsearch import ApiError
    except ImportError:  # pragma: no cover - elasticsearch is a runtime dependency
        return False
    return isinstance(exc, (TransportError, ApiError))


def _lines(docs: list[Any]) -> None:
    """JSON lines; ``ensure_ascii`` (the default) escapes every control and non-ASCII character."""
    for doc in docs:
        sys.stdout.write(json.dumps(doc, separators=(",", ":"), default=str) + "\n")


# -- commands ----------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace, store: AlertStore) -> int:
    alerts = store.list_alerts(rule=args.rule, severity=args.severity, status=args.status, user=args.user,
                               since=args.since, limit=args.limit)
    if args.json:
        _lines(alerts)
    else:
        sys.stdout.write(render.table(render.ALERT_HEADERS, render.alert_rows(alerts)))
    return 0


def _alert_or_fail(store: AlertStore, alert_id: str) -> dict[str, Any]:
    doc = store.get_alert(alert_id)
    if doc is None:
        raise UsageError(f"no alert with id {alert_id!r} in the store")
    return doc


def cmd_show(args: argparse.Namespace, store: AlertStore) -> int:
    doc = _alert_or_fail(store, args.id)
    actions = store.list_actions(alert_id=args.id, limit=1000)
    trail = {e.id: e for e in store.audit_trail(alert_id=args.id)}
    for action in actions:
        trail.update((e.id, e) for e in store.audit_trail(action_id=action.id))
    entries = sorted(trail.values(), key=lambda e: e.time)
    if args.json:
        _lines([{"alert": doc, "actions": [a.model_dump(mode="json") for a in actions],
                 "audit": [e.model_dump(mode="json") for e in entries]}])
    else:
        sys.stdout.write(render.alert_detail(doc, actions, entries))
    return 0


def cmd_status(args: argparse.Namespace, store: AlertStore) -> int:
    try:
        doc = store.set_status(args.id, args.status, args.actor, disposition=args.disposition, note=args.note)
    except KeyError:
        raise UsageError(f"no alert with id {args.id!r} in the store") from None
    disposition = doc.get("triage", {}).get("disposition")
    extra = f" ({disposition})" if args.status == "closed" and disposition else ""
    print(printable(f"{args.id}: {args.status}{extra} by {args.actor}"))
    return 0


def cmd_suppress(args: argparse.Namespace, store: AlertStore) -> int:
    created = now()
    expires = created + args.for_ if args.for_ is not None else args.expires
    if args.rule is not None:
        checked_rule(args.rule)
    settings: Settings = args.settings
    longest = timedelta(days=settings.store.max_suppression_days)
    if expires - created > longest:
        raise UsageError(
            f"a suppression may last at most {settings.store.max_suppression_days} days ([store] "
            "max_suppression_days); a lasting exception belongs in [[enrich.allowlist]]")
    try:
        suppression = Suppression(
            rule_id=args.rule, user_id=args.user, client_id=args.client, ip=args.ip, asn=args.asn,
            reason=args.reason, actor=args.actor, created=created, expires=expires,
        )
    except ValueError as exc:
        errors = getattr(exc, "errors", None)
        raise UsageError((errors()[0]["msg"] if errors else str(exc)).removeprefix("Value error, ")) from None
    store.add_suppression(suppression)
    text = render.criteria(suppression)
    store.audit(AuditEntry(
        time=created, actor=args.actor, verb="alert.suppress", target=text, why=args.reason, result="created",
        details={"suppression": suppression.id, "expires": expires.isoformat()},
    ))
    print(printable(f"suppression {suppression.id}: {text} until {render.short_time(expires)} by {args.actor}"))
    if args.close_matching:
        closed = store.close_suppressed(suppression)
        print(printable(f"closed {len(closed)} open matching alerts: {' '.join(closed)}" if closed
                        else "no open alerts match"))
    else:
        left = [a for a in store.list_alerts(status="open", rule=args.rule if _plain(args.rule) else None,
                                             user=args.user, limit=1000) if suppression.matches(a, created)]
        if left:
            print(printable(f"{len(left)} open alerts match and stay open (--close-matching closes them): "
                            + " ".join(a["alert"]["id"] for a in left[:10]) + (" …" if len(left) > 10 else "")))
    return 0


def _plain(rule: str | None) -> bool:
    return rule is not None and not any(c in rule for c in "*?[")


def cmd_unsuppress(args: argparse.Namespace, store: AlertStore) -> int:
    removed = store.remove_suppression(args.id)
    if removed is None:
        raise UsageError(f"no suppression with id {args.id!r} (see `tokenwatch alerts suppressions`)")
    text = render.criteria(removed)
    store.audit(AuditEntry(
        time=now(), actor=args.actor, verb="alert.unsuppress", target=text, why=args.reason or "removed",
        result="removed", details={"suppression": removed.id, "created_by": removed.actor},
    ))
    print(printable(f"suppression {removed.id} removed ({text}) by {args.actor}"))
    return 0


def cmd_suppressions(args: argparse.Namespace, store: AlertStore) -> int:
    active = store.active_suppressions(now())
    if args.json:
        _lines([s.model_dump(mode="json") for s in active])
    else:
        sys.stdout.write(render.table(render.SUPPRESSION_HEADERS, render.suppression_rows(active)))
    return 0


def cmd_import(args: argparse.Namespace, store: AlertStore) -> int:
    name = "stdin" if args.input == "-" else args.input
    try:
        if args.input == "-":
            count = import_alerts(store, read_alert_lines(sys.stdin, name), args.actor, name, now)
        else:
            with open(args.input, encoding="utf-8") as handle:
                count = import_alerts(store, read_alert_lines(handle, name), args.actor, name, now)
    except AlertFileError as exc:
        raise UsageError(f"{exc} (alerts before that line were stored and audited)") from None
    print(printable(f"imported {count} alerts from {name}"))
    return 0
