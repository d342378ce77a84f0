"""Feeding detection output into the store (batch `detect`, `alerts import`, the service)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, TextIO

from pipeline.store.base import AlertStore, alert_key
from schemas.actions import AuditEntry
from schemas.alerts import Alert

BATCH = 500


def store_alerts(store: AlertStore, alerts: Iterable[Alert | Mapping[str, Any]]) -> int:
    """Upsert ``alerts`` (``Alert`` models or their JSON dicts) in batches; returns how many."""
    docs = (a.to_json_dict() if isinstance(a, Alert) else a for a in alerts)
    count = 0
    while batch := list(islice(docs, BATCH)):
        store.put_alerts(batch)
        count += len(batch)
    return count


@dataclass
class ImportCount:
    """How many alerts an import stored: new ones, and ones the store already held (updated in
    place by id, analyst decisions kept), so importing the same file twice says so."""

    new: int = 0
    present: int = 0

    @property
    def stored(self) -> int:
        return self.new + self.present


def import_alerts(store: AlertStore, alerts: Iterable[Mapping[str, Any]], actor: str, source: str,
                  now: Callable[[], datetime]) -> ImportCount:
    """Store ``alerts`` and audit how many were stored, also when reading or storing stops
    part way: the audit trail never misses an alert an import put in the store.

    Alerts read before a bad line are stored before the ``AlertFileError`` propagates. The
    entry says ``stored``, or ``partial`` with the error; if the broken store cannot take
    even that entry, the original error is what propagates.
    """
    count = ImportCount()
    batch: list[Mapping[str, Any]] = []
    try:
        try:
            for doc in alerts:
                batch.append(doc)
                if len(batch) == BATCH:
                    _put(store, batch, count)
        except AlertFileError:
            _put(store, batch, count)  # the lines before the bad one, as the error message says
            raise
        _put(store, batch, count)
    except Exception as exc:
        with contextlib.suppress(Exception):
            store.audit(_import_entry(now(), actor, source, count, exc))
        raise
    store.audit(_import_entry(now(), actor, source, count, None))
    return count


def _put(store: AlertStore, batch: list[Mapping[str, Any]], count: ImportCount) -> None:
    """Store ``batch``, count it into ``count`` and empty it."""
    if batch:
        ids = {alert_key(doc) for doc in batch}
        present = store.known_alert_ids(ids)
        store.put_alerts(batch)
        count.present += len(present)
        count.new += len(ids - present)
    batch.clear()


def _import_entry(time: datetime, actor: str, source: str, count: ImportCount,
                  error: Exception | None) -> AuditEntry:
    details: dict[str, str | int | float | bool | None] = {"alerts": count.stored, "new": count.new,
                                                            "already_present": count.present}
    if error is not None:
        details["error"] = f"{type(error).__name__}: {error}"[:500]
    return AuditEntry(time=time, actor=actor, verb="alerts.import", target=source,
                      why="batch output loaded for triage", result="partial" if error else "stored", details=details)


class AlertFileError(ValueError):
    """A line of an alerts file is not an alert document; the message names the line."""


def read_alert_lines(stream: TextIO, name: str = "-") -> Iterator[dict[str, Any]]:
    """Alert JSON lines as `tokenwatch detect` writes them, validated against the Alert schema."""
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield Alert.model_validate_json(line).to_json_dict()
        except ValueError as exc:
            first = str(exc).splitlines()
            reason = first[0] if first else type(exc).__name__
            if hasattr(exc, "errors"):
                err = exc.errors()[0]
                reason = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            raise AlertFileError(f"{name}:{number}: not an alert document ({reason})") from None
