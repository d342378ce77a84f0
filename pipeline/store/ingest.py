"""Feeding detection output into the store (batch `detect`, `alerts import`, the service)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from itertools import islice
from typing import Any, TextIO

from pipeline.store.base import AlertStore
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
                err = exc.errors()[0]  # type: ignore[attr-defined]
                reason = f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            raise AlertFileError(f"{name}:{number}: not an alert document ({reason})") from None
