"""The alert store interface, shared by the SQLite and Elasticsearch backends.

The store keeps what detection and response produce (alert documents, actions) next to
what analysts decide (status, disposition, notes, suppressions) and the audit trail.
Alert documents are upserted by ``alert.id``: a replay of the same events updates the
detection fields but never resets an analyst's decision.

Analyst fields on a stored alert document: ``alert.status`` (open|acknowledged|closed)
and ``triage`` = ``{"disposition": str | None, "notes": [{"time", "actor", "text"}],
"updated": iso time | None, "updated_by": str | None, "suppressed_by": id | None,
"assignee": str | None, "links": [{"time", "actor", "url"}]}`` (links: case or ticket URLs).
Acknowledging a closed alert is refused (``StatusConflict``) unless the analyst says to reopen it.
An alert nobody has triaged yet that matches an active suppression when it is stored
(new, or updated by a later finding) is kept with status ``closed`` and
``triage.suppressed_by`` set (audited as ``alert.suppressed``).

An alert's ``response.state`` follows its actions: every ``put_action`` copies the state of
the alert's most recently updated action into the stored alert document, so a list of
alerts shows what became of their response without a second lookup.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from schemas.actions import Action, AuditEntry, Suppression

if TYPE_CHECKING:
    from pipeline.store.filters import AlertFilter

ALERT_STATUSES = ("open", "acknowledged", "closed")
STATUS_VERBS = {"open": "alert.reopen", "acknowledged": "alert.ack", "closed": "alert.close"}
DUE_STATES = ("pending", "failed")
SYSTEM_ACTOR = "tokenwatch"
# analyst verb -> (states it may start from, state it leaves the action in)
ACTION_VERBS: dict[str, tuple[tuple[str, ...], str]] = {
    "approve": (("awaiting_approval",), "pending"),
    "deny": (("awaiting_approval",), "denied"),
    "cancel": (("awaiting_approval", "pending", "failed"), "cancelled"),
}


class StatusConflict(ValueError):
    """The alert's status does not allow the change asked for (acknowledging a closed alert)."""


class ActionConflict(ValueError):
    """The action is not in a state the analyst's verb may start from (or changed meanwhile)."""

    def __init__(self, action: Action, verb: str, allowed: Collection[str]) -> None:
        super().__init__(
            f"action {action.id} is {action.state}: {verb} applies only to an action that is "
            + " or ".join(allowed))
        self.action = action


@runtime_checkable
class AlertStore(Protocol):
    """Alerts, analyst decisions, response actions (the durable retry queue), audit and flags."""

    def put_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Upsert alert JSON documents by ``alert.id``; keeps status/triage of known alerts."""

    def get_alert(self, alert_id: str) -> dict[str, Any] | None: ...

    def list_alerts(
        self,
        rule: str | None = None,
        severity: str | None = None,
        status: str | None = None,
        user: str | None = None,
        since: datetime | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first (by ``@timestamp``); ``since`` compares with ``@timestamp``; the same
        as ``find_alerts(AlertFilter.of(...))``."""

    def find_alerts(self, where: AlertFilter, limit: int = 100) -> list[dict[str, Any]]:
        """The newest ``limit`` alerts ``where.matches`` (triage merged in), newest first."""

    def alert_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids starting with ``prefix`` (a table shows shortened ids), at most ``limit``, sorted."""

    def known_alert_ids(self, ids: Collection[str]) -> set[str]:
        """Which of ``ids`` the store holds (an import reports new and already present alerts)."""

    def set_status(
        self, alert_id: str, status: str, actor: str, disposition: str | None = None, note: str | None = None,
        link: str | None = None, reopen: bool = False,
    ) -> dict[str, Any]:
        """Set the analyst status; audits ``alert.ack``/``alert.close``/``alert.reopen``.

        Raises ``KeyError`` for an unknown id, ``ValueError`` for an unknown status or disposition,
        ``StatusConflict`` for acknowledging a closed alert without ``reopen``. ``link`` (a case or
        ticket URL) is kept in ``triage.links`` and in the audit entry.
        """

    def assign(self, alert_id: str, assignee: str | None, actor: str, note: str | None = None) -> dict[str, Any]:
        """Set (``None``: clear) ``triage.assignee``; audited as ``alert.assign``. ``KeyError`` if unknown."""

    def add_suppression(self, s: Suppression) -> None: ...

    def active_suppressions(self, now: datetime) -> list[Suppression]: ...

    def remove_suppression(self, suppression_id: str) -> Suppression | None:
        """Delete a suppression (active or not); the removed one, or None for an unknown id."""

    def close_suppressed(self, s: Suppression, limit: int = 10_000) -> list[str]:
        """Close the ``open`` alerts ``s`` matches now (``triage.suppressed_by`` set, each audited
        as ``alert.suppressed`` by ``s.actor``); returns their ids. Acknowledged alerts are left
        alone: someone is working on them."""

    def put_action(self, action: Action) -> None:
        """Upsert by ``action.id``; the alert's ``response.state`` becomes the action's state."""

    def transition_action(
        self, action_id: str, verb: str, actor: str, note: str | None = None, responder: str | None = None
    ) -> Action:
        """An analyst's ``approve``/``deny``/``cancel`` (see ``ACTION_VERBS``), checked and written
        atomically and audited as ``action.<verb>``. ``KeyError`` for an unknown id,
        ``ActionConflict`` when the action's state does not allow the verb. ``responder`` (approve
        only) replaces the one chosen at planning: the route under the approver's configuration."""

    def swap_action(self, action: Action, expected: Collection[str]) -> bool:
        """Compare-and-set for the executor: write ``action`` only if the stored one exists and its
        state is in ``expected``, atomically (an analyst's ``cancel`` between the executor's read
        and write wins). Returns whether it was written."""

    def get_action(self, action_id: str) -> Action | None: ...

    def list_actions(self, alert_id: str | None = None, state: str | None = None, limit: int = 100) -> list[Action]:
        """Newest first (by ``created``)."""

    def due_actions(self, now: datetime) -> list[Action]:
        """Actions in state pending/failed whose ``next_attempt_at`` is <= now (None counts as due),
        oldest ``next_attempt_at`` first: the durable retry queue."""

    def audit(self, entry: AuditEntry) -> None: ...

    def audit_trail(self, alert_id: str | None = None, action_id: str | None = None) -> list[AuditEntry]:
        """Oldest first; with both ids given, entries about either."""

    def get_flag(self, name: str) -> str | None: ...

    def set_flag(self, name: str, value: str | None) -> None:
        """``None`` deletes the flag."""

    def close(self) -> None: ...


# -- helpers shared by the backends ----------------------------------------------------

def utcnow() -> datetime:
    """Wall clock of the stores and the analyst CLI (tests replace it through this module)."""
    return datetime.now(timezone.utc)


def utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("naive datetime: times in the store are timezone-aware")
    return when.astimezone(timezone.utc)


def iso(when: datetime) -> str:
    """Fixed-width UTC text, so string order is time order (SQLite compares text)."""
    return utc(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return utc(value) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def alert_key(doc: Mapping[str, Any]) -> str:
    """The ``alert.id`` of an alert document; ``ValueError`` if it has none."""
    core = doc.get("alert")
    alert_id = core.get("id") if isinstance(core, Mapping) else None
    if not isinstance(alert_id, str) or not alert_id:
        raise ValueError("alert document without alert.id")
    return alert_id


def empty_triage() -> dict[str, Any]:
    return {"disposition": None, "notes": [], "updated": None, "updated_by": None, "suppressed_by": None,
            "assignee": None, "links": []}


def merge_alert(
    new: Mapping[str, Any], old: Mapping[str, Any] | None, suppressions: Iterable[Suppression], now: datetime,
    response_state: str | None = None,
) -> tuple[dict[str, Any], Suppression | None]:
    """The document to store for ``new``: analyst fields from ``old`` if known, else checked
    against ``suppressions``; ``response_state`` (from the alert's actions) wins over both
    documents' ``response.state``. Returns the document and the suppression that closed it, if any."""
    doc = copy.deepcopy(dict(new))
    doc["alert"] = dict(doc["alert"])
    if old is not None:
        old_state = (old.get("response") or {}).get("state")
        if response_state is None and old_state and old_state != "pending":
            response_state = old_state  # the executor's, not the replay's
    if response_state is not None:
        doc["response"] = {**(doc.get("response") or {}), "state": response_state}
    if old is not None:
        doc["alert"]["status"] = old.get("alert", {}).get("status", "open")
        doc["triage"] = {**empty_triage(), **copy.deepcopy(old.get("triage") or {})}
    else:
        doc["alert"]["status"] = "open"
        doc["triage"] = empty_triage()
    if doc["triage"]["updated"] is not None:
        return doc, None  # an analyst (or an earlier suppression) already decided
    for s in suppressions:
        if s.matches(doc, now):
            doc["alert"]["status"] = "closed"
            doc["triage"].update(suppressed_by=s.id, updated=iso(now), updated_by=s.actor)
            return doc, s
    return doc, None


def apply_status(
    doc: Mapping[str, Any], status: str, actor: str, disposition: str | None, note: str | None, now: datetime,
    link: str | None = None, reopen: bool = False,
) -> tuple[dict[str, Any], AuditEntry]:
    """``doc`` with the analyst's decision applied, and the audit entry recording it."""
    if status not in ALERT_STATUSES:
        raise ValueError(f"unknown status {status!r} (one of {', '.join(ALERT_STATUSES)})")
    if disposition is not None and disposition not in ("true_positive", "false_positive", "benign"):
        raise ValueError(f"unknown disposition {disposition!r}")
    out = copy.deepcopy(dict(doc))
    previous = out["alert"].get("status", "open")
    if status == "acknowledged" and previous == "closed" and not reopen:
        raise StatusConflict(f"alert {alert_key(out)} is closed: acknowledging it would reopen it "
                             "(pass --reopen to do so, or `alerts reopen` it first)")
    out["alert"] = {**out["alert"], "status": status}
    triage = {**empty_triage(), **(out.get("triage") or {})}
    if disposition is not None:
        triage["disposition"] = disposition
    if note:
        triage["notes"] = [*triage["notes"], {"time": iso(now), "actor": actor, "text": note}]
    if link:
        triage["links"] = [*triage["links"], {"time": iso(now), "actor": actor, "url": link}]
    triage.update(updated=iso(now), updated_by=actor)
    out["triage"] = triage
    details: dict[str, str | int | float | bool | None] = {"previous": previous, "disposition": disposition}
    if link:
        details["link"] = link
    entry = AuditEntry(
        time=now, actor=actor, verb=STATUS_VERBS[status], alert_id=alert_key(out),
        why=note or "", result=status, details=details,
    )
    return out, entry


def apply_assign(
    doc: Mapping[str, Any], assignee: str | None, actor: str, note: str | None, now: datetime
) -> tuple[dict[str, Any], AuditEntry]:
    """``doc`` with ``triage.assignee`` set (``None``: cleared), and its audit entry."""
    out = copy.deepcopy(dict(doc))
    triage = {**empty_triage(), **(out.get("triage") or {})}
    previous = triage["assignee"]
    triage.update(assignee=assignee, updated=iso(now), updated_by=actor)
    if note:
        triage["notes"] = [*triage["notes"], {"time": iso(now), "actor": actor, "text": note}]
    out["triage"] = triage
    entry = AuditEntry(
        time=now, actor=actor, verb="alert.assign", alert_id=alert_key(out), target=assignee,
        why=note or "", result="assigned" if assignee else "unassigned", details={"previous": previous},
    )
    return out, entry


def suppress_doc(doc: Mapping[str, Any], s: Suppression, now: datetime) -> tuple[dict[str, Any], AuditEntry]:
    """``doc`` closed by suppression ``s`` (an analyst's ``--close-matching``), and its audit entry."""
    out = copy.deepcopy(dict(doc))
    out["alert"] = {**out["alert"], "status": "closed"}
    out["triage"] = {**empty_triage(), **(out.get("triage") or {}),
                     "suppressed_by": s.id, "updated": iso(now), "updated_by": s.actor}
    return out, suppressed_entry(out, s, now)


def latest_state(actions: Iterable[Action]) -> str | None:
    """The alert's response state: that of its most recently updated action (None without one)."""
    latest = max(actions, key=lambda a: (a.updated, a.created, a.id), default=None)
    return latest.state if latest is not None else None


def apply_transition(
    action: Action, verb: str, actor: str, note: str | None, now: datetime, responder: str | None = None
) -> tuple[Action, AuditEntry]:
    """``action`` after an analyst's verb, and the audit entry; ``ActionConflict`` if its state forbids it."""
    if verb not in ACTION_VERBS:
        raise ValueError(f"unknown action verb {verb!r} (one of {', '.join(ACTION_VERBS)})")
    allowed, state = ACTION_VERBS[verb]
    if action.state not in allowed:
        raise ActionConflict(action, verb, allowed)
    why = f"{verb} by {actor}" + (f": {note}" if note else "")
    update: dict[str, Any] = {"state": state, "updated": now, "reason": f"{action.reason}; {why}"}
    if state == "pending":  # approved: due now, run by the executor on the approver's behalf
        update.update(next_attempt_at=now, attempts=0, last_error=None, actor=actor)
        if responder is not None:
            update["responder"] = responder
    else:
        update.update(next_attempt_at=None)
    changed = Action.model_validate({**action.model_dump(), **update})  # validated: never store a bad state
    entry = AuditEntry(
        time=now, actor=actor, verb=f"action.{verb}", alert_id=action.alert_id, action_id=action.id,
        target=action.target.label(), why=note or f"analyst {verb}", result=state,
        details={"previous": action.state, "mode": action.mode, "responder": action.responder},
    )
    return changed, entry


def suppressed_entry(doc: Mapping[str, Any], s: Suppression, now: datetime) -> AuditEntry:
    return AuditEntry(
        time=now, actor=s.actor, verb="alert.suppressed", alert_id=alert_key(doc),
        why=s.reason, result="closed", details={"suppression": s.id},
    )


class StoreNotFound(Exception):
    """The configured store does not exist (and the caller only reads): one line of advice."""


def open_store(settings: Any, *, create: bool = True) -> AlertStore:
    """The store ``settings.store`` names (``settings`` is a ``pipeline.config.Settings``).
    Readers pass ``create=False`` so a missing SQLite file is an error, not an empty store."""
    config = settings.store
    if config.backend == "elasticsearch":
        from pipeline.store.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(settings.elasticsearch, refresh=config.refresh)
    from pipeline.store.sqlite import SqliteStore

    return SqliteStore(config.path, busy_timeout_s=config.busy_timeout_s, create=create)
