"""Plain-text views of stored alerts, actions and audit entries for the analyst CLI.

Tables are left-aligned columns separated by two spaces, so they read in a terminal and
split with ``awk``; given a width (:func:`pipeline.analyst.layout.output_width`) they fit it
(:mod:`pipeline.analyst.layout`). ``--json`` gives the documents themselves. Every value shown
passes through :func:`pipeline.terminal.printable`: input lines and analysts write these
fields, and a raw escape sequence or newline would forge rows or rewrite the screen.
"""

from __future__ import annotations

import csv
import io
import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.analyst.layout import Column, Step, fit, render
from pipeline.store.base import parse_time
from pipeline.store.network import network_kinds
from pipeline.terminal import printable
from schemas.actions import Action, AuditEntry, Suppression

SUMMARY_WIDTH = 80
SEVERITY_COLOURS = {"critical": "1;31", "high": "31", "medium": "33", "low": "36"}
SHORT_SEVERITY = {"critical": "crit", "high": "high", "medium": "med", "low": "low"}
SHORT_STATUS = {"acknowledged": "ack"}
# An id inside a sentence: a run of 16+ word characters and dashes with letters and digits
# (UUIDs, opaque token and key ids), after an optional short type prefix ("AT.", "RT.").
_ID_IN_TEXT = re.compile(r"(?<![\w.-])((?:[A-Za-z]{2,4}\.)?)([A-Za-z0-9_-]{16,})(?![\w-])")
ID_HEAD = 8
KEPT_WHOLE = frozenset({"ID", "TIME", "CREATED", "NEXT", "EXPIRES"})  # never cut by table()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None) -> str:
    """Columns padded to their widest cell; ``-`` for empty cells; no trailing spaces; with
    ``width``, the widest columns are cut (at the end) until the table fits."""
    cells = [[_cell(v) for v in row] for row in rows]
    columns = [Column(h, [r[i] for r in cells], keep=h in KEPT_WHOLE) for i, h in enumerate(headers)]
    return render(fit(columns, width), len(cells), width)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return short_time(value)
    return printable(str(value))


def short_time(value: Any) -> str:
    """``2026-11-24 10:15:02Z`` (UTC, seconds) from a datetime or ISO text."""
    when = parse_time(value)
    return when.strftime("%Y-%m-%d %H:%M:%SZ") if when else "-"


def clip(text: str, width: int = SUMMARY_WIDTH) -> str:
    """At most ``width`` characters as shown: escaped first, so escapes count in the width."""
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


ALERT_HEADERS = ("ID", "TIME", "SEVERITY", "STATUS", "RULE", "USER", "COUNT", "SUMMARY")
# How the alert table gives way, in order, while the summary has less room than it wants.
ALERT_STEPS = (
    Step("USER", 20), Step("RULE", 24), Step("ASSIGNEE", 12), Step("TIME", 11), Step("STATUS", 6),
    Step("ID", 11), Step("COUNT"), Step("USER", 12), Step("RULE", 16), Step("ASSIGNEE", 8),
    Step("SEVERITY", 4), Step("ASSIGNEE"), Step("STATUS"), Step("TIME"),
)


def user_label(user: Mapping[str, Any], ids: bool = False) -> str | None:
    """Who the alert is about as an analyst knows them: e-mail, else name, else id (``ids``: the id)."""
    order = ("id",) if ids else ("email", "name", "id")
    return next((user[k] for k in order if isinstance(user.get(k), str) and user[k]), None)


def short_ids(text: str) -> str:
    """``text`` with each id-like word cut to its first characters and ``…`` (for tables:
    "Refresh token 4b85b3d5… of family 78aaa6ea…/portal was redeemed again …")."""
    def shorten(match: re.Match[str]) -> str:
        word = match.group(2)
        if not (any(c.isdigit() for c in word) and any(c.isalpha() for c in word)):
            return match.group(0)
        return match.group(1) + word[:ID_HEAD] + "…"
    return _ID_IN_TEXT.sub(shorten, text)


def alert_table(alerts: Sequence[Mapping[str, Any]], width: int | None = None, colour: bool = False,
                ids: bool = False) -> str:
    """`alerts list`: one line per alert, fitted to ``width`` with the summary kept longest."""
    def get(a: Mapping[str, Any], section: str, key: str) -> Any:
        return (a.get(section) or {}).get(key)

    cores = [a["alert"] for a in alerts]
    severities = [str(c.get("severity") or "") for c in cores]
    statuses = [str(c.get("status") or "") for c in cores]
    users = [user_label(a.get("user") or {}, ids) for a in alerts]
    rules = [str(get(a, "rule", "id") or "") for a in alerts]
    columns = [
        Column("ID", [_cell(c["id"]) for c in cores], how="prefix"),
        Column("TIME", [short_time(a.get("@timestamp")) for a in alerts],
               compact=[_compact_time(a.get("@timestamp")) for a in alerts]),
        Column("SEVERITY", [_cell(s) for s in severities], compact=[SHORT_SEVERITY.get(s, s) for s in severities],
               colours=[SEVERITY_COLOURS.get(s) for s in severities], short_header="SEV"),
        Column("STATUS", [_cell(s) for s in statuses], compact=[SHORT_STATUS.get(s, s) for s in statuses]),
        Column("RULE", [_cell(r) for r in rules], compact=[_cell(r.partition(".")[2] or r) for r in rules]),
        Column("USER", [_cell(u) for u in users], how="auto"),
    ]
    if any(get(a, "triage", "assignee") for a in alerts):
        columns.append(Column("ASSIGNEE", [_cell(get(a, "triage", "assignee")) for a in alerts]))
    columns += [
        Column("COUNT", [_cell(c.get("count", 1)) for c in cores]),
        Column("SUMMARY", [_cell(short_ids(str(c.get("summary", "")))) for c in cores]),
    ]
    wanted = max(36, (width or 0) * 2 // 5)
    shown = fit(columns, width, ALERT_STEPS, flex="SUMMARY", flex_wanted=wanted)
    return render(shown, len(alerts), width, colour)


def _compact_time(value: Any) -> str:
    when = parse_time(value)
    return when.strftime("%m-%d %H:%M") if when else "-"


CSV_FIELDS = ("id", "time", "severity", "status", "rule", "user_id", "user", "client", "source_ip", "token",
              "count", "assignee", "disposition", "summary")


def alert_csv(alerts: Sequence[Mapping[str, Any]]) -> str:
    """CSV with a header. Values are escaped like the tables (one row a line, nothing a terminal
    obeys), and a value a spreadsheet would take for a formula (``=``, ``+``, ``-``, ``@``) is
    prefixed with ``'``: summaries and names come from the logs."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for a in alerts:
        core, user, triage = a["alert"], a.get("user") or {}, a.get("triage") or {}
        writer.writerow([_csv_value(v) for v in (
            core["id"], a.get("@timestamp"), core.get("severity"), core.get("status"), (a.get("rule") or {}).get("id"),
            user.get("id"), user_label(user), (a.get("client") or {}).get("id"), (a.get("source") or {}).get("ip"),
            (a.get("token") or {}).get("id"), core.get("count", 1), triage.get("assignee"), triage.get("disposition"),
            core.get("summary"))])
    return out.getvalue()


def _csv_value(value: Any) -> str:
    text = "" if value is None else printable(str(value))
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


ACTION_HEADERS = ("ID", "CREATED", "ALERT", "ACTION", "TARGET", "MODE", "STATE", "ATTEMPTS", "NEXT", "ACTOR", "ERROR")


def action_rows(actions: Sequence[Action]) -> list[list[Any]]:
    return [
        [
            a.id, a.created, a.alert_id, a.action, a.target.label(), a.mode,
            a.state + (" (dry run)" if a.dry_run and a.state != "dry_run" else ""),
            a.attempts, a.next_attempt_at, a.actor, clip(a.last_error or "", 60),
        ]
        for a in actions
    ]


AUDIT_HEADERS = ("TIME", "ACTOR", "VERB", "TARGET", "RESULT", "WHY")


def audit_rows(entries: Sequence[AuditEntry]) -> list[list[Any]]:
    return [[e.time, e.actor, e.verb, e.target or e.action_id, e.result, clip(e.why, 60)] for e in entries]


SUPPRESSION_HEADERS = ("ID", "EXPIRES", "CRITERIA", "ACTOR", "REASON")


def criteria(s: Suppression) -> str:
    parts = [
        f"{name}={value}"
        for name, value in (("rule", s.rule_id), ("user", s.user_id), ("client", s.client_id),
                            ("ip", s.ip), ("asn", s.asn))
        if value is not None
    ]
    return " ".join(parts)


def suppression_rows(items: Sequence[Suppression]) -> list[list[Any]]:
    return [[s.id, s.expires, criteria(s), s.actor, clip(s.reason, 60)] for s in items]


EVIDENCE_HEADERS = ("TIME", "KIND", "SOURCE", "TOKEN", "IP", "PLACE", "AS", "OUTCOME", "DETAIL")


def as_label(number: Any, name: Any) -> str | None:
    """``AS64500 Example AS``, the number or the name alone when only one is known."""
    parts = [f"AS{number}" if number is not None else None, name if name else None]
    return " ".join(str(p) for p in parts if p) or None


def evidence_rows(evidence: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The evidence as a timeline: oldest first (ties keep the detector's order)."""
    ordered = sorted(evidence, key=lambda e: parse_time(e.get("time")) or datetime.min)
    rows = []
    for e in ordered:
        place = ", ".join(p for p in (e.get("city"), e.get("country")) if p)
        rows.append([
            short_time(e.get("time")), e.get("kind"), e.get("source"), e.get("token_id"), e.get("ip") or e.get("service"),
            place, as_label(e.get("asn"), e.get("as_org")), e.get("outcome"), _evidence_detail(e),
        ])
    return rows


def _evidence_detail(e: Mapping[str, Any]) -> str:
    parts = []
    if e.get("scopes"):
        parts.append("scopes=" + ",".join(e["scopes"]))
    if e.get("required_scopes"):
        parts.append("required=" + ",".join(e["required_scopes"]))
    for key in ("client_id", "resource", "binding", "request_id"):
        if e.get(key):
            parts.append(f"{key.removesuffix('_id') if key == 'client_id' else key}={e[key]}")
    return " ".join(parts)


def alert_detail(
    doc: Mapping[str, Any], actions: Sequence[Action], trail: Sequence[AuditEntry], width: int | None = None,
) -> str:
    """``alerts show``: the alert's facts, its evidence timeline, its actions and audit trail."""
    core, rule = doc["alert"], doc.get("rule") or {}
    triage = doc.get("triage") or {}
    token, user = doc.get("token") or {}, doc.get("user") or {}
    facts = [
        ("Alert", f"{core['id']}  {core.get('severity')} (risk {core.get('risk_score')})  {core.get('status')}"),
        ("Rule", f"{rule.get('id')} ({rule.get('name')})"),
        ("Summary", core.get("summary")),
        ("Seen", f"{short_time(core.get('first_seen'))} .. {short_time(core.get('last_seen'))}"
                 f"  count {core.get('count', 1)}"),
        ("Token", _join(token.get("id"), token.get("type") and f"type {token['type']}",
                        token.get("family_id") and f"family {token['family_id']}")),
        ("User", _join(user.get("id"), *(f"({user[k]})" for k in ("name", "email") if user.get(k)))),
        ("Client", (doc.get("client") or {}).get("id")),
        ("Session", (doc.get("session") or {}).get("id")),
        ("Source", source_line(doc)),
        ("Technique", ", ".join(f"{t['id']} {t['name']}" for t in (doc.get("threat") or {}).get("technique", []))),
        ("Response", _join((doc.get("response") or {}).get("action"), (doc.get("response") or {}).get("state"))),
        ("Assignee", triage.get("assignee")),
        ("Disposition", triage.get("disposition")),
        ("Suppressed", triage.get("suppressed_by") and f"by suppression {triage['suppressed_by']}"),
    ]
    out = [_fact(name, printable(str(value)), width) for name, value in facts if value]
    for link in triage.get("links") or []:
        said = f"{link.get('url')} (by {link.get('actor')})"
        out.append(f"{'Link:':<13}{short_time(link.get('time'))} {printable(said)}")
    for note in triage.get("notes") or []:
        said = f"{note.get('actor')}: {note.get('text')}"
        out.append(f"{'Note:':<13}{short_time(note.get('time'))} {printable(said)}")
    evidence = evidence_rows(doc.get("evidence") or [])
    out += ["", "Evidence (timeline):", table(EVIDENCE_HEADERS, evidence, width).rstrip()]
    out += ["", "Actions:", table(ACTION_HEADERS, action_rows(actions), width).rstrip() if actions else "(none)"]
    out += ["", "Audit trail:", table(AUDIT_HEADERS, audit_rows(trail), width).rstrip() if trail else "(none)"]
    return "\n".join(out) + "\n"


def _fact(name: str, value: str, width: int | None) -> str:
    """``Name:        value``, wrapped under the value to ``width`` (words are never split)."""
    line = f"{name + ':':<13}{value}"
    if width is None or len(line) <= width:
        return line
    return textwrap.fill(value, width, initial_indent=f"{name + ':':<13}", subsequent_indent=" " * 13,
                         break_long_words=False, break_on_hyphens=False)


def source_line(doc: Mapping[str, Any]) -> str:
    """``185.220.101.6  DE  AS60729 Stiftung Erneuerbare Freiheit  hosting/VPN/Tor network, Tor exit``:
    the address, its place, its AS number and name, and what kind of network it is."""
    source = doc.get("source") or {}
    geo = source.get("geo") or {}
    as_ = source.get("as") or {}
    place = ", ".join(p for p in (geo.get("city_name"), geo.get("country_iso_code")) if p)
    kinds = network_kinds(doc)
    org = (as_.get("organization") or {}).get("name")
    number = as_.get("number")
    parts = [source.get("ip"), place, as_label(number, org) if number is not None else org and f"AS {org}",
             ", ".join(kinds)]
    return "  ".join(str(p) for p in parts if p)


def _join(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p)
