"""Bulk triage: `alerts ack|close|reopen|assign --where <filters>`.

A change to many alerts starts as a dry run: it prints how many alerts the filters match, how
many of those it would leave as they are (already in that state; closed ones for ``ack``
without ``--reopen``) and the first few, and changes nothing. ``--yes`` applies it, one alert
at a time through the store (each audited as a single change would be), and adds one
``alert.bulk`` entry naming the filter and the count.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from pipeline.analyst import layout, render
from pipeline.cli.alert_filters import add_filter_options
from pipeline.store import base
from pipeline.store.base import AlertStore, StatusConflict
from pipeline.store.filters import AlertFilter
from pipeline.terminal import printable
from schemas.actions import AuditEntry

BULK_MAX = 10_000
PREVIEW = 5
VERBS = {"open": "reopen", "acknowledged": "acknowledge", "closed": "close"}


class BulkRefused(Exception):
    """A bulk change that would be unsafe to run (no filter, too many matches)."""


def add_bulk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--where", action="store_true",
                   help="change every alert the filter options match instead of one id (a dry run until --yes)")
    p.add_argument("--yes", action="store_true", help="with --where: make the change (else only show what it would do)")
    add_filter_options(p)


def change_status(args: argparse.Namespace, store: AlertStore, where: AlertFilter, link: str | None,
                  reopen: bool) -> int:
    status: str = args.new_status

    def skip(doc: dict[str, Any]) -> str | None:
        current = doc["alert"].get("status", "open")
        if current == status and not (status == "closed" and args.disposition != doc["triage"].get("disposition")):
            return f"already {current}"
        if status == "acknowledged" and current == "closed" and not reopen:
            return "closed (--reopen acknowledges them too)"
        return None

    def apply(alert_id: str) -> None:
        store.set_status(alert_id, status, args.actor, disposition=args.disposition, note=args.note, link=link,
                         reopen=reopen)

    return _run(args, store, where, VERBS[status], status, skip, apply)


def assign(args: argparse.Namespace, store: AlertStore, where: AlertFilter, who: str | None) -> int:
    def skip(doc: dict[str, Any]) -> str | None:
        return "already assigned so" if doc["triage"].get("assignee") == who else None

    def apply(alert_id: str) -> None:
        store.assign(alert_id, who, args.actor, note=args.note)

    return _run(args, store, where, f"assign to {who}" if who else "unassign", "assigned" if who else "unassigned",
                skip, apply)


def _run(args: argparse.Namespace, store: AlertStore, where: AlertFilter, verb: str, result: str,
         skip: Callable[[dict[str, Any]], str | None], apply: Callable[[str], None]) -> int:
    if where.is_empty():
        raise BulkRefused("--where needs at least one filter option (--status open matches every open alert)")
    matched = store.find_alerts(where, limit=BULK_MAX + 1)
    if len(matched) > BULK_MAX:
        raise BulkRefused(f"more than {BULK_MAX:,} alerts match {where.describe()}: narrow the filters")
    todo = [d for d in matched if skip(d) is None]
    reasons: dict[str, int] = {}
    for doc in matched:
        reason = skip(doc)
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
    left = "".join(f"; {n} left as they are: {why}" for why, n in reasons.items())
    print(printable(f"{len(matched)} alerts match {where.describe()}{left}"))
    if todo:
        width = layout.output_width(sys.stdout)
        sys.stdout.write(render.alert_table(todo[:PREVIEW], width, layout.use_colour(sys.stdout)))
        if len(todo) > PREVIEW:
            print(f"… and {len(todo) - PREVIEW} more")
    if not args.yes:
        print(f"dry run: nothing changed; add --yes to {verb} {len(todo)} alerts")
        return 0
    done: list[str] = []
    refused = 0
    for doc in todo:
        try:
            apply(doc["alert"]["id"])
        except (KeyError, StatusConflict):  # gone or changed since the match: leave it
            refused += 1
            continue
        done.append(doc["alert"]["id"])
    store.audit(AuditEntry(
        time=base.utcnow(), actor=args.actor, verb="alert.bulk", target=where.describe(), why=args.note or "",
        result=result, details={"verb": verb, "alerts": len(done), "left": len(matched) - len(done)},
    ))
    also = f" ({refused} changed meanwhile and were left)" if refused else ""
    print(printable(f"{verb}: {len(done)} alerts by {args.actor}{also}"))
    return 0
