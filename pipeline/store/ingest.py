"""Feeding detection output into the store (batch `detect`, `alerts import`, the service)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import Any, TextIO

from pipeline.store.base import AlertStore
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


def import_alerts(store: AlertStore, alerts: Iterable[Mapping[str, Any]], actor: str, source: str,
                  now: Callable[[], datetime]) -> int:
    """Store ``alerts`` and audit how many were stored, also when reading or storing stops
    part way: the audit trail never misses an alert an import put in the store.

    Alerts read before a bad line are stored before the ``AlertFileError`` propagates. The
    entry says ``stored``, or ``partial`` with the error; if the broken store cannot take
    even that entry, the original error is what propagates.
    """
    stored = 0
    batch: list[Mapping[str, Any]] = []
    try:
        try:
            for doc in alerts:
                batch.append(doc)
                if len(batch) == BATCH:
                    stored += _put(store, batch)
        except AlertFileError:
            stored += _put(store, batch)  # the lines before the bad one, as the error message says
            raise
        stored += _put(store, batch)
    except Exception as exc:
        with contextlib.suppress(Exception):
            store.audit(_import_entry(now(), actor, source, stored, exc))
        raise
    store.audit(_import_entry(now(), actor, source, stored, None))
    return stored


def _put(store: AlertStore, batch: list[Mapping[str, Any]]) -> int:
    """Store ``batch`` and empty it; how many were stored."""
    if batch:
        store.put_alerts(batch)
    count = len(batch)
    batch.clear()
    return count


def _import_entry(time: datetime, actor: str, source: str, stored: int, error: Exception | None) -> AuditEntry:
    details: dict[str, str | int | float | bool | None] = {"alerts": stored}
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
