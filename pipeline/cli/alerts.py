"""Analyst triage commands: `tokenwatch alerts list|show|ack|close|reopen|assign|suppress|
unsuppress|suppressions|import` (the `actions` commands live in :mod:`pipeline.cli.response`).

They work on the configured store (``[store]``: SQLite file by default, Elasticsearch when
``backend = "elasticsearch"``). Every command that changes something takes ``--actor`` and is
written to the audit trail under that name (else ``$TOKENWATCH_ACTOR``, else the OS login
name); read-only commands take no ``--actor``. Unknown ids exit with 2 and say which id; an id
may be shortened to a unique prefix, as tables show it in a narrow terminal. What is printed
goes through :func:`pipeline.terminal.printable` (ids, names and notes come from input and
analysts); ``--json`` output is escaped by the JSON encoder (ASCII only). The filter options
live in :mod:`pipeline.cli.alert_filters`, bulk triage (``--where``) in
:mod:`pipeline.cli.alert_bulk`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipeline import exit_codes
from pipeline.actor import ActorError, resolve_actor
from pipeline.analyst import layout, render
from pipeline.cli import alert_bulk
from pipeline.cli.alert_filters import (
    add_filter_options,
    alert_filter,
    duration,
    has_filters,
    iso_time,
    known_rules,
)
from pipeline.config import Settings, load_settings
from pipeline.store import base
from pipeline.store.base import AlertStore, StatusConflict, StoreNotFound, open_store
from pipeline.store.ingest import AlertFileError, import_alerts, read_alert_lines
from pipeline.terminal import printable
from schemas.actions import AuditEntry, Suppression

DISPOSITIONS = ("true_positive", "false_positive", "benign")
ACTION_STATES = ("pending", "awaiting_approval", "in_progress", "succeeded", "failed", "gave_up",
                 "dry_run", "notified", "skipped", "denied", "cancelled")
DONE_WORDS = {"open": "reopened", "acknowledged": "acknowledged", "closed": "closed"}
MAX_LINK_CHARS = 2048


class UsageError(Exception):
    """Bad input found after parsing (unknown id, bad suppression): exit 2 with the message."""


def now() -> datetime:
    return base.utcnow()


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


def link_url(text: str) -> str:
    """A case or ticket URL: http(s), with a host, one line, no user or password in it."""
    try:
        parts = urlsplit(text)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"not an http(s) URL: {printable(text)!r} (e.g. https://jira.example/SOC-42)")
    if "@" in parts.netloc:
        raise argparse.ArgumentTypeError("the link must not carry a user or password (it is stored and audited)")
    if printable(text) != text or any(c.isspace() for c in text) or len(text) > MAX_LINK_CHARS:
        raise argparse.ArgumentTypeError(f"the link must be one line without spaces, at most {MAX_LINK_CHARS} characters")
    return text


# -- parser ------------------------------------------------------------------------------

def json_option() -> argparse.ArgumentParser:
    """The ``--json`` parent parser of the listing commands (alerts and actions alike)."""
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_true", help="JSON documents instead of a table")
    return as_json


def _command(asub: Any, name: str, parents: list[argparse.ArgumentParser], text: str, description: str,
             example: str) -> argparse.ArgumentParser:
    """A sub-command with its one-line help, a description and examples under ``--help``."""
    parser: argparse.ArgumentParser = asub.add_parser(
        name, parents=parents, help=text, description=description, epilog="examples:\n" + example,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser


def add_commands(sub: Any) -> None:
    """Register this module's sub-commands on the top-level sub-parser ``sub``."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", "-c", type=Path, help="TOML configuration file (its [store] table)")
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", default=None, help="who you are, for the audit trail "
                       "(default: $TOKENWATCH_ACTOR, else your login name)")
    as_json = json_option()
    reads, writes = [config], [config, actor]

    alerts = sub.add_parser(
        "alerts", help="review and triage alerts in the store", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Review and triage the alerts in the configured store ([store]): list and read them, take,\n"
        "assign and close them (one by id, or many with --where and the filter options), suppress\n"
        "known-benign patterns. Every change is written to the audit trail under --actor.",
        epilog="examples:\n  tokenwatch alerts list --status open --since 24h --relative-to data\n"
        "  tokenwatch alerts show tw-f7432d13\n"
        "  tokenwatch alerts close --where --rule replay --user bob@example.com --disposition benign --yes")
    alerts.set_defaults(func=lambda args: alerts.print_help(sys.stderr) or 2)
    asub = alerts.add_subparsers(metavar="ACTION")

    p = _command(asub, "list", [*reads, as_json], "alerts, newest first, filtered",
                 "Alerts in the store, newest first, one line each, fitted to the terminal's width\n"
                 "($COLUMNS, else the terminal's; piped output keeps whole lines). Users show as e-mail or\n"
                 "name when the alert carries one (--ids: the id). A duration in --since/--until counts\n"
                 "back from now, or with --relative-to data from the newest alert in the store.",
                 "  tokenwatch alerts list --severity high --severity critical --status open\n"
                 "  tokenwatch alerts list --rule replay --since 24h --relative-to data\n"
                 "  tokenwatch alerts list --ip 185.220.100.0/22 --format csv > tor.csv")
    add_filter_options(p)
    p.add_argument("--limit", type=int, default=100, help="at most this many (default: %(default)s)")
    p.add_argument("--format", choices=("table", "json", "csv"), default=None,
                   help="table (default), JSON lines (--json is the same) or CSV")
    p.add_argument("--ids", action="store_true", help="user ids instead of names or e-mail addresses")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour severities: auto (default: on a terminal, unless $NO_COLOR is set)")
    p.set_defaults(func=with_store(cmd_list))

    p = _command(asub, "show", [*reads, as_json], "one alert: evidence timeline, actions, audit trail",
                 "One alert: its facts (the source's place, AS and kind of network: hosting, egress list,\n"
                 "Tor exit), assignee, case links and notes, the evidence as a timeline, the actions\n"
                 "taken and the audit trail. --json prints the stored document with them.",
                 "  tokenwatch alerts show tw-f7432d13ea6fd778402572fb\n  tokenwatch alerts show tw-f7432d13 --json")
    p.add_argument("id", help="alert id, or a unique prefix of one (as a narrow table shows it)")
    p.set_defaults(func=with_store(cmd_show))

    for name, status, text, example in (
        ("ack", "acknowledged", "acknowledge alerts (you are on them)",
         "  tokenwatch alerts ack tw-f7432d13 --note 'looking' --link https://jira.example/SOC-42\n"
         "  tokenwatch alerts ack --where --rule replay --status open          # dry run: what would change\n"
         "  tokenwatch alerts ack --where --rule replay --status open --yes"),
        ("close", "closed", "close alerts with a disposition",
         "  tokenwatch alerts close tw-f7432d13 --disposition true_positive --note 'user confirmed'\n"
         "  tokenwatch alerts close --where --user ci-bot --rule geo_divergence --disposition benign --yes"),
        ("reopen", "open", "reopen acknowledged or closed alerts",
         "  tokenwatch alerts reopen tw-f7432d13 --note 'seen again'"),
    ):
        p = _command(asub, name, writes, text,
                     f"Set the status of one alert (ID) or, with --where, of every alert the filter options\n"
                     f"match. --where alone is a dry run: it prints how many match and the first few, and\n"
                     f"changes nothing until you add --yes. Each change is audited (alert.{name})."
                     + ("\nA closed alert is not acknowledged (that would reopen it) unless you pass --reopen."
                        if name == "ack" else ""), example)
        p.add_argument("id", nargs="?", help="alert id, or a unique prefix of one (leave out with --where)")
        p.add_argument("--disposition", choices=DISPOSITIONS, required=name == "close")
        p.add_argument("--note", help="why; kept with the alert and in the audit trail")
        if name != "reopen":
            p.add_argument("--link", type=link_url, metavar="URL", help="case or ticket URL (http/https), kept and audited")
        if name == "ack":
            p.add_argument("--reopen", action="store_true", help="acknowledge even a closed alert (reopens it)")
        alert_bulk.add_bulk_options(p)
        p.set_defaults(func=with_store(cmd_status), new_status=status)

    p = _command(asub, "assign", writes, "assign alerts to an analyst (- clears)",
                 "Set who works on one alert (ID) or, with --where, on every alert the filters match\n"
                 "(a dry run until --yes). The assignee shows in `alerts list` and `alerts show`;\n"
                 "each change is audited (alert.assign). WHO '-' clears the assignee.",
                 "  tokenwatch alerts assign tw-f7432d13 carol\n"
                 "  tokenwatch alerts assign --where --rule replay --status open carol --yes")
    p.add_argument("id", nargs="?", help="alert id, or a unique prefix of one (leave out with --where)")
    p.add_argument("who", help="analyst name, or - to clear")
    p.add_argument("--note", help="why; kept with the alert and in the audit trail")
    alert_bulk.add_bulk_options(p)
    p.set_defaults(func=with_store(cmd_assign))

    p = _command(asub, "suppress", writes, "suppress future alerts matching all given criteria",
                 "Suppress alerts matching every given criterion for a while (at most [store]\n"
                 "max_suppression_days): new ones are stored closed and audited. Open alerts that\n"
                 "already match are named, and closed with --close-matching.",
                 "  tokenwatch alerts suppress --rule geo_divergence.issue_use_divergence --user ci-bot \\\n"
                 "      --reason 'CI runner egress in AWS' --for 7d")
    p.add_argument("--rule", help="rule id, or a glob matching some ('replay.*')")
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

    p = _command(asub, "unsuppress", writes, "remove a suppression (see `alerts suppressions`)",
                 "Remove a suppression before it expires; audited (alert.unsuppress).",
                 "  tokenwatch alerts unsuppress 3f2a9c0e1b7d4e8f --reason 'load test over'")
    p.add_argument("id", help="suppression id, as `alerts suppressions` lists it")
    p.add_argument("--reason", default="", help="why (kept in the audit trail)")
    p.set_defaults(func=with_store(cmd_unsuppress))

    p = _command(asub, "suppressions", [*reads, as_json], "active suppressions",
                 "The suppressions in force now: id, end, criteria, who made them and why.",
                 "  tokenwatch alerts suppressions\n  tokenwatch alerts suppressions --json")
    p.set_defaults(func=with_store(cmd_suppressions))

    p = _command(asub, "import", writes, "load alert JSON lines (from `tokenwatch detect`) into the store",
                 "Load alert JSON lines (`tokenwatch detect` output) into the store, creating it if need\n"
                 "be. An alert already stored is updated in place (status, notes and assignee kept);\n"
                 "the count says how many were new. Audited (alerts.import).",
                 "  tokenwatch alerts import --input demo-output/alerts.jsonl\n"
                 "  tokenwatch detect -i events/ | tokenwatch alerts import --input -")
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
            if hasattr(args, "actor"):  # only commands that change something take one
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
        except (UsageError, StatusConflict, alert_bulk.BulkRefused) as exc:
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
    alerts = store.find_alerts(alert_filter(args, store), limit=args.limit)
    style = args.format or ("json" if args.json else "table")
    if style == "json":
        _lines(alerts)
    elif style == "csv":
        sys.stdout.write(render.alert_csv(alerts))
    else:
        sys.stdout.write(render.alert_table(alerts, layout.output_width(sys.stdout),
                                            layout.use_colour(sys.stdout, args.color), ids=args.ids))
    return 0


def resolve_id(store: AlertStore, given: str) -> str:
    """``given``, or the one stored id it is a prefix of; ``UsageError`` if none or several."""
    if store.get_alert(given) is not None:
        return given
    found = store.alert_ids_with_prefix(given, limit=6) if len(given) >= 4 else []
    if len(found) == 1:
        return found[0]
    if found:
        more = " …" if len(found) > 5 else ""
        raise UsageError(f"alert id {given!r} is ambiguous: {' '.join(found[:5])}{more}")
    raise UsageError(f"no alert with id {given!r} in the store")


def _alert_or_fail(store: AlertStore, alert_id: str) -> dict[str, Any]:
    doc = store.get_alert(resolve_id(store, alert_id))
    if doc is None:
        raise UsageError(f"no alert with id {alert_id!r} in the store")
    return doc


def cmd_show(args: argparse.Namespace, store: AlertStore) -> int:
    doc = _alert_or_fail(store, args.id)
    alert_id = doc["alert"]["id"]
    actions = store.list_actions(alert_id=alert_id, limit=1000)
    trail = {e.id: e for e in store.audit_trail(alert_id=alert_id)}
    for action in actions:
        trail.update((e.id, e) for e in store.audit_trail(action_id=action.id))
    entries = sorted(trail.values(), key=lambda e: e.time)
    if args.json:
        _lines([{"alert": doc, "actions": [a.model_dump(mode="json") for a in actions],
                 "audit": [e.model_dump(mode="json") for e in entries]}])
    else:
        sys.stdout.write(render.alert_detail(doc, actions, entries, layout.output_width(sys.stdout)))
    return 0


def _one_or_where(args: argparse.Namespace) -> None:
    """An id, or ``--where`` with filters; never both, never neither."""
    if args.where and args.id is not None:
        raise UsageError("give an alert id or --where with filter options, not both")
    if not args.where and args.id is None:
        raise UsageError("give an alert id, or --where with filter options (a dry run until --yes)")
    if not args.where and (has_filters(args) or args.yes):
        raise UsageError("filter options and --yes go with --where (to change every alert they match)")


def cmd_status(args: argparse.Namespace, store: AlertStore) -> int:
    _one_or_where(args)
    link = getattr(args, "link", None)
    reopen = getattr(args, "reopen", False) or args.new_status == "open"
    if args.where:
        return alert_bulk.change_status(args, store, alert_filter(args, store), link, reopen)
    alert_id = resolve_id(store, args.id)
    try:
        doc = store.set_status(alert_id, args.new_status, args.actor, disposition=args.disposition,
                               note=args.note, link=link, reopen=reopen)
    except KeyError:
        raise UsageError(f"no alert with id {args.id!r} in the store") from None
    print(printable(status_line(doc, args.new_status, args.actor)))
    return 0


def status_line(doc: dict[str, Any], status: str, actor: str) -> str:
    """``tw-a1: closed (benign) by bob``, ``tw-a1: reopened by alice``."""
    disposition = doc.get("triage", {}).get("disposition")
    extra = f" ({disposition})" if status == "closed" and disposition else ""
    return f"{doc['alert']['id']}: {DONE_WORDS[status]}{extra} by {actor}"


def cmd_assign(args: argparse.Namespace, store: AlertStore) -> int:
    _one_or_where(args)
    who = None if args.who == "-" else args.who
    if who is not None and (printable(who) != who or not who.strip()):
        raise UsageError("the assignee must be one line of printable text")
    if args.where:
        return alert_bulk.assign(args, store, alert_filter(args, store), who)
    alert_id = resolve_id(store, args.id)
    store.assign(alert_id, who, args.actor, note=args.note)
    print(printable(f"{alert_id}: assigned to {who} by {args.actor}" if who else
                    f"{alert_id}: unassigned by {args.actor}"))
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
    print(printable(f"imported {count.new} new, {count.present} already present from {name}"))
    return 0
