"""The embedded store: one SQLite file, no server.

WAL mode lets the analyst CLI read while a service writes (one writer process plus
readers); a lock serialises the connection between threads of one process (the
APScheduler retry job runs in its own thread). Documents are kept as JSON beside
the few columns that are filtered or ordered on.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.store import base
from pipeline.store.base import (
    DUE_STATES,
    alert_key,
    apply_assign,
    apply_status,
    apply_transition,
    iso,
    latest_state,
    merge_alert,
    parse_time,
    suppress_doc,
    suppressed_entry,
)
from pipeline.store.filters import AlertFilter
from schemas.actions import Action, AuditEntry, Suppression

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY, ts TEXT NOT NULL, rule TEXT, severity TEXT, status TEXT NOT NULL,
    user TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts (ts);
CREATE TABLE IF NOT EXISTS actions (
    id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, state TEXT NOT NULL, next_attempt_at TEXT,
    created TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actions_alert ON actions (alert_id);
CREATE INDEX IF NOT EXISTS actions_due ON actions (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, time TEXT NOT NULL,
    alert_id TEXT, action_id TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS audit_alert ON audit (alert_id);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action_id);
CREATE TABLE IF NOT EXISTS suppressions (
    id TEXT PRIMARY KEY, created TEXT NOT NULL, expires TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteStore:
    """``AlertStore`` on a SQLite file (``":memory:"`` for tests)."""

    def __init__(
        self, path: str | Path = "tokenwatch.db", *, busy_timeout_s: float = 10.0,
        clock: Callable[[], datetime] | None = None, create: bool = True,
    ) -> None:
        """``create=False`` (the analyst's read commands) refuses a file that does not
        exist instead of creating an empty store; no directory is ever created: a
        missing one is a mistyped ``store.path``."""
        self.path = str(path)
        self._clock = clock or (lambda: base.utcnow())
        self._lock = threading.RLock()
        if self.path != ":memory:":
            where = Path(self.path)
            if not where.parent.is_dir():
                raise base.StoreNotFound(f"store.path {self.path}: directory {where.parent} does not exist")
            if not create and not where.exists():
                raise base.StoreNotFound(
                    f"store.path {self.path}: no alert store there; pass --config naming the store the "
                    "alerts went to, or fill one first (tokenwatch detect, tokenwatch alerts import)"
                )
        self._db = sqlite3.connect(
            self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
        )
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
            self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the file lock up front (no upgrade deadlock)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    # -- alerts ------------------------------------------------------------------------
    def put_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        now = self._clock()
        docs = list(alerts)
        if not docs:
            return
        with self._tx() as db:
            suppressions = self._active(db, now)
            for new in docs:
                alert_id = alert_key(new)
                row = db.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone()
                old = json.loads(row[0]) if row else None
                doc, suppressed = merge_alert(new, old, suppressions, now, self._response_state(db, alert_id))
                self._write_alert(db, doc)
                if suppressed is not None:
                    self._write_audit(db, suppressed_entry(doc, suppressed, now))

    def _write_alert(self, db: sqlite3.Connection, doc: Mapping[str, Any]) -> None:
        when = parse_time(doc.get("@timestamp")) or parse_time(doc["alert"].get("last_seen")) or self._clock()
        db.execute(
            "INSERT INTO alerts (id, ts, rule, severity, status, user, doc) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET ts=excluded.ts, rule=excluded.rule, severity=excluded.severity, "
            "status=excluded.status, user=excluded.user, doc=excluded.doc",
            (
                doc["alert"]["id"], iso(when), (doc.get("rule") or {}).get("id"),
                doc["alert"].get("severity"), doc["alert"].get("status", "open"),
                (doc.get("user") or {}).get("id"), json.dumps(doc, separators=(",", ":")),
            ),
        )

    @staticmethod
    def _response_state(db: sqlite3.Connection, alert_id: str) -> str | None:
        rows = db.execute("SELECT doc FROM actions WHERE alert_id = ?", (alert_id,)).fetchall()
        return latest_state(Action.model_validate_json(r[0]) for r in rows)

    def _follow_actions(self, db: sqlite3.Connection, alert_id: str) -> None:
        """Copy the alert's response state from its actions into its stored document."""
        row = db.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone()
        state = self._response_state(db, alert_id)
        if row is None or state is None:
            return
        doc = json.loads(row[0])
        if (doc.get("response") or {}).get("state") != state:
            doc["response"] = {**(doc.get("response") or {}), "state": state}
            self._write_alert(db, doc)

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT doc FROM alerts WHERE id = ?", (alert_id,))
        return json.loads(rows[0][0]) if rows else None

    def list_alerts(
        self, rule: str | None = None, severity: str | None = None, status: str | None = None,
        user: str | None = None, since: datetime | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        return self.find_alerts(AlertFilter.of(rule, severity, status, user, since), limit)

    def find_alerts(self, where: AlertFilter, limit: int = 100) -> list[dict[str, Any]]:
        """Candidates by the indexed columns, newest first, kept when ``where.matches``."""
        clauses, params = _candidate_clauses(where)
        sql = "SELECT doc FROM alerts" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        sql += " ORDER BY ts DESC, id DESC"
        found: list[dict[str, Any]] = []
        if limit <= 0:
            return found
        with self._lock:
            for (text,) in self._db.execute(sql, params):
                doc = json.loads(text)
                if where.matches(doc):
                    found.append(doc)
                    if len(found) >= limit:
                        break
        return found

    def alert_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        rows = self._query("SELECT id FROM alerts WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
                           (len(prefix), prefix, limit))
        return [r[0] for r in rows]

    def known_alert_ids(self, ids: Collection[str]) -> set[str]:
        wanted, known = list(ids), set()
        for start in range(0, len(wanted), 500):  # below SQLite's bound-parameter limit
            chunk = wanted[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            known |= {r[0] for r in self._query(f"SELECT id FROM alerts WHERE id IN ({marks})", chunk)}
        return known

    def set_status(
        self, alert_id: str, status: str, actor: str, disposition: str | None = None, note: str | None = None,
        link: str | None = None, reopen: bool = False,
    ) -> dict[str, Any]:
        now = self._clock()
        with self._tx() as db:  # read, check and write under the file lock: a concurrent close is seen
            row = db.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise KeyError(alert_id)
            doc, entry = apply_status(json.loads(row[0]), status, actor, disposition, note, now, link, reopen)
            self._write_alert(db, doc)
            self._write_audit(db, entry)
        return doc

    def assign(self, alert_id: str, assignee: str | None, actor: str, note: str | None = None) -> dict[str, Any]:
        now = self._clock()
        with self._tx() as db:
            row = db.execute("SELECT doc FROM alerts WHERE id = ?", (alert_id,)).fetchone()
            if row is None:
                raise KeyError(alert_id)
            doc, entry = apply_assign(json.loads(row[0]), assignee, actor, note, now)
            self._write_alert(db, doc)
            self._write_audit(db, entry)
        return doc

    # -- suppressions ------------------------------------------------------------------
    def add_suppression(self, s: Suppression) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO suppressions (id, created, expires, doc) VALUES (?, ?, ?, ?)",
                (s.id, iso(s.created), iso(s.expires), s.model_dump_json()),
            )

    def active_suppressions(self, now: datetime) -> list[Suppression]:
        with self._lock:
            return self._active(self._db, now)

    def remove_suppression(self, suppression_id: str) -> Suppression | None:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM suppressions WHERE id = ?", (suppression_id,)).fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM suppressions WHERE id = ?", (suppression_id,))
        return Suppression.model_validate_json(row[0])

    def close_suppressed(self, s: Suppression, limit: int = 10_000) -> list[str]:
        now = self._clock()
        closed: list[str] = []
        with self._tx() as db:
            rows = db.execute("SELECT doc FROM alerts WHERE status = 'open' ORDER BY ts, id").fetchall()
            for row in rows:
                doc = json.loads(row[0])
                if len(closed) >= limit or not s.matches(doc, now):
                    continue
                doc, entry = suppress_doc(doc, s, now)
                self._write_alert(db, doc)
                self._write_audit(db, entry)
                closed.append(alert_key(doc))
        return closed

    @staticmethod
    def _active(db: sqlite3.Connection, now: datetime) -> list[Suppression]:
        rows = db.execute(
            "SELECT doc FROM suppressions WHERE created <= ? AND expires > ? ORDER BY created, id",
            (iso(now), iso(now)),
        ).fetchall()
        return [Suppression.model_validate_json(r[0]) for r in rows]

    # -- actions -----------------------------------------------------------------------
    def put_action(self, action: Action) -> None:
        with self._tx() as db:
            self._write_action(db, action)

    def _write_action(self, db: sqlite3.Connection, action: Action) -> None:
        due = iso(action.next_attempt_at) if action.next_attempt_at else None
        db.execute(
            "INSERT INTO actions (id, alert_id, state, next_attempt_at, created, doc) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET alert_id=excluded.alert_id, state=excluded.state, "
            "next_attempt_at=excluded.next_attempt_at, doc=excluded.doc",
            (action.id, action.alert_id, action.state, due, iso(action.created), action.model_dump_json()),
        )
        self._follow_actions(db, action.alert_id)

    def transition_action(
        self, action_id: str, verb: str, actor: str, note: str | None = None, responder: str | None = None
    ) -> Action:
        now = self._clock()
        with self._tx() as db:  # read, check and write under the file lock: no second approval slips in
            row = db.execute("SELECT doc FROM actions WHERE id = ?", (action_id,)).fetchone()
            if row is None:
                raise KeyError(action_id)
            changed, entry = apply_transition(Action.model_validate_json(row[0]), verb, actor, note, now, responder)
            self._write_action(db, changed)
            self._write_audit(db, entry)
        return changed

    def swap_action(self, action: Action, expected: Collection[str]) -> bool:
        with self._tx() as db:  # read, check and write under the file lock, like transition_action
            row = db.execute("SELECT state FROM actions WHERE id = ?", (action.id,)).fetchone()
            if row is None or row[0] not in expected:
                return False
            self._write_action(db, action)
        return True

    def get_action(self, action_id: str) -> Action | None:
        rows = self._query("SELECT doc FROM actions WHERE id = ?", (action_id,))
        return Action.model_validate_json(rows[0][0]) if rows else None

    def list_actions(self, alert_id: str | None = None, state: str | None = None, limit: int = 100) -> list[Action]:
        where, params = [], []
        if alert_id is not None:
            where.append("alert_id = ?")
            params.append(alert_id)
        if state is not None:
            where.append("state = ?")
            params.append(state)
        sql = "SELECT doc FROM actions" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        return [Action.model_validate_json(r[0]) for r in self._query(sql, [*params, limit])]

    def due_actions(self, now: datetime) -> list[Action]:
        marks = ", ".join("?" for _ in DUE_STATES)
        rows = self._query(
            f"SELECT doc FROM actions WHERE state IN ({marks}) AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
            "ORDER BY COALESCE(next_attempt_at, created), created, id",
            [*DUE_STATES, iso(now)],
        )
        return [Action.model_validate_json(r[0]) for r in rows]

    # -- audit -------------------------------------------------------------------------
    def audit(self, entry: AuditEntry) -> None:
        with self._tx() as db:
            self._write_audit(db, entry)

    @staticmethod
    def _write_audit(db: sqlite3.Connection, entry: AuditEntry) -> None:
        db.execute(
            "INSERT OR IGNORE INTO audit (id, time, alert_id, action_id, doc) VALUES (?, ?, ?, ?, ?)",
            (entry.id, iso(entry.time), entry.alert_id, entry.action_id, entry.model_dump_json()),
        )

    def audit_trail(self, alert_id: str | None = None, action_id: str | None = None) -> list[AuditEntry]:
        where, params = [], []
        if alert_id is not None:
            where.append("alert_id = ?")
            params.append(alert_id)
        if action_id is not None:
            where.append("action_id = ?")
            params.append(action_id)
        sql = "SELECT doc FROM audit" + (" WHERE " + " OR ".join(where) if where else "")
        sql += " ORDER BY time, seq"
        return [AuditEntry.model_validate_json(r[0]) for r in self._query(sql, params)]

    # -- flags -------------------------------------------------------------------------
    def get_flag(self, name: str) -> str | None:
        rows = self._query("SELECT value FROM flags WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def set_flag(self, name: str, value: str | None) -> None:
        with self._tx() as db:
            if value is None:
                db.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                db.execute(
                    "INSERT INTO flags (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                    (name, value),
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _candidate_clauses(where: AlertFilter) -> tuple[list[str], list[Any]]:
    """SQL narrowing ``where`` to its indexed columns; the predicate decides the rest."""
    hints = where.index_hints()
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (("severity", hints.severities), ("status", hints.statuses)):
        if values is not None:
            clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
            params += values
    if hints.rule_prefixes is not None:
        clauses.append("(" + " OR ".join("rule = ? OR substr(rule, 1, ?) = ?" for _ in hints.rule_prefixes) + ")")
        for prefix in hints.rule_prefixes:
            params += [prefix, len(prefix) + 1, prefix + "."]
    if hints.since is not None:
        clauses.append("ts >= ?")
        params.append(iso(hints.since))
    if hints.until is not None:
        clauses.append("ts <= ?")
        params.append(iso(hints.until))
    return clauses, params
