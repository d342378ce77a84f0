"""Plain-text views of stored alerts, actions and audit entries for the analyst CLI.

Tables are left-aligned columns separated by two spaces, so they read in a terminal and
split with ``awk``; ``--json`` gives the documents themselves. Every value shown passes
through :func:`pipeline.terminal.printable`: input lines and analysts write these fields, and
a raw escape sequence or newline would forge rows or rewrite the screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pipeline.store.base import parse_time
from pipeline.terminal import printable
from schemas.actions import Action, AuditEntry, Suppression

SUMMARY_WIDTH = 80


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; ``-`` for empty cells; no trailing spaces."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers), *cells]:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


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


def alert_rows(alerts: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    return [
        [
            a["alert"]["id"], short_time(a.get("@timestamp")), a["alert"].get("severity"),
            a["alert"].get("status"), (a.get("rule") or {}).get("id"), (a.get("user") or {}).get("id"),
            a["alert"].get("count", 1), clip(a["alert"].get("summary", "")),
        ]
        for a in alerts
    ]


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


def evidence_rows(evidence: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The evidence as a timeline: oldest first (ties keep the detector's order)."""
    ordered = sorted(evidence, key=lambda e: parse_time(e.get("time")) or datetime.min)
    rows = []
    for e in ordered:
        place = ", ".join(p for p in (e.get("city"), e.get("country")) if p)
        asn = f"AS{e['asn']}" if e.get("asn") is not None else None
        if asn and e.get("as_org"):
            asn += f" {e['as_org']}"
        rows.append([
            short_time(e.get("time")), e.get("kind"), e.get("source"), e.get("token_id"), e.get("ip") or e.get("service"),
            place, asn, e.get("outcome"), _evidence_detail(e),
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
    doc: Mapping[str, Any], actions: Sequence[Action], trail: Sequence[AuditEntry]
) -> str:
    """``alerts show``: the alert's facts, its evidence timeline, its actions and audit trail."""
    core, rule = doc["alert"], doc.get("rule") or {}
    triage = doc.get("triage") or {}
    token, user, source = doc.get("token") or {}, doc.get("user") or {}, doc.get("source") or {}
    geo = source.get("geo") or {}
    asn = (source.get("as") or {}).get("number")
    facts = [
        ("Alert", f"{core['id']}  {core.get('severity')} (risk {core.get('risk_score')})  {core.get('status')}"),
        ("Rule", f"{rule.get('id')} ({rule.get('name')})"),
        ("Summary", core.get("summary")),
        ("Seen", f"{short_time(core.get('first_seen'))} .. {short_time(core.get('last_seen'))}"
                 f"  count {core.get('count', 1)}"),
        ("Token", _join(token.get("id"), token.get("type") and f"type {token['type']}",
                        token.get("family_id") and f"family {token['family_id']}")),
        ("User", _join(user.get("id"), user.get("name") and f"({user['name']})")),
        ("Client", (doc.get("client") or {}).get("id")),
        ("Session", (doc.get("session") or {}).get("id")),
        ("Source", _join(source.get("ip"), geo.get("city_name"), geo.get("country_iso_code"),
                         asn is not None and f"AS{asn}")),
        ("Technique", ", ".join(f"{t['id']} {t['name']}" for t in (doc.get("threat") or {}).get("technique", []))),
        ("Response", _join((doc.get("response") or {}).get("action"), (doc.get("response") or {}).get("state"))),
        ("Disposition", triage.get("disposition")),
        ("Suppressed", triage.get("suppressed_by") and f"by suppression {triage['suppressed_by']}"),
    ]
    out = [f"{name + ':':<13}{printable(str(value))}" for name, value in facts if value]
    for note in triage.get("notes") or []:
        said = f"{note.get('actor')}: {note.get('text')}"
        out.append(f"{'Note:':<13}{short_time(note.get('time'))} {printable(said)}")
    out += ["", "Evidence (timeline):", table(EVIDENCE_HEADERS, evidence_rows(doc.get("evidence") or [])).rstrip()]
    out += ["", "Actions:", table(ACTION_HEADERS, action_rows(actions)).rstrip() if actions else "(none)"]
    out += ["", "Audit trail:", table(AUDIT_HEADERS, audit_rows(trail)).rstrip() if trail else "(none)"]
    return "\n".join(out) + "\n"


def _join(*parts: Any) -> str:
    return " ".join(str(p) for p in parts if p)
