"""What to do about an alert: pure planning, no I/O (the executor performs the plan).

Per rule (``rule_modes``, fnmatch patterns) or else per severity (``severity_modes``) an
alert is handled ``auto`` (revoke now), ``approve`` (wait for an analyst's ``tokenwatch
revoke``) or ``notify`` (record only). Protected principals are never revoked
automatically: ``auto`` falls back to ``approve``. Protection checks every name the alert has
for the token's user and client: the trigger's, and lineage state's (filled in by the
alerter, ``details.lineage_user_id``/``lineage_client_id`` where they differ), so a use that
leaves ``sub`` out, or claims another, does not unprotect the admin. Where a protection is
configured but the user (or client) it needs is unknown or ambiguous, ``auto`` waits for
approval too: unknown is not known safe. The rule's ``response.action`` says what
to revoke: the token, the token's family (refresh-token reuse), the session, or every
session of the subject; ``routes`` picks the responder for the alert's event source.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from pipeline.response.config import Mode, ResponseConfig
from schemas.actions import Action, ActionMode, ActionState, RevocationTarget, TargetKind, action_id
from schemas.alerts import SEVERITY_ORDER

INITIAL_STATE: dict[str, ActionState] = {
    "auto": "pending", "manual": "pending", "approve": "awaiting_approval", "notify": "notified",
}
_KIND_OF_ACTION: dict[str, TargetKind] = {
    "revoke_token": "token", "revoke_family": "family", "revoke_session": "session", "revoke_subject": "subject",
}


# the alert's token.type -> the RFC 7009 token_type_hint of its revocation
_HINTS: dict[str, Literal["access_token", "refresh_token"]] = {"refresh": "refresh_token", "access": "access_token"}


def mode_for(alert: Mapping[str, Any], config: ResponseConfig) -> tuple[Mode, str]:
    """The mode for this alert and why (for the audit trail)."""
    rule, severity = _get(alert, "rule", "id") or "", _get(alert, "alert", "severity") or "low"
    mode: Mode | None = None
    why = ""
    for pattern, configured in config.rule_modes.items():
        if fnmatchcase(rule, pattern):
            mode, why = configured, f"rule_modes[{pattern}] = {configured}"
            break
    if mode is None:
        mode = config.severity_modes.get(severity, "approve")
        why = f"severity {severity} -> {mode}"
    if mode == "auto" and SEVERITY_ORDER.get(severity, 0) < SEVERITY_ORDER[config.auto_min_severity]:
        mode, why = "approve", f"{why}, but severity {severity} < auto_min_severity {config.auto_min_severity}"
    if mode == "auto":
        principal = protected(alert, config)
        if principal:
            mode, why = "approve", f"{why}, but {principal} is protected"
        else:
            unknown = unknown_owner(alert, config)
            if unknown:
                mode, why = "approve", f"{why}, but {unknown} (it may be protected)"
            elif _get(alert, "details", "claimed_session_id"):
                mode, why = "approve", f"{why}, but its trigger claims another session than its token's"
    return mode, why


def protected(alert: Mapping[str, Any], config: ResponseConfig) -> str | None:
    """The protected principal this alert is about, if any (never auto-revoked): any of the
    users and clients the trigger or lineage names."""
    users, clients = _users(alert), _clients(alert)
    for user in users:
        if user in config.protected_users:
            return f"user {user}"
    for client in clients:
        if client in config.protected_clients:
            return f"client {client}"
    for pattern in config.protected_patterns:
        for label, value in [("user", v) for v in users] + [("client", v) for v in clients]:
            if fnmatchcase(value, pattern):
                return f"{label} {value} (pattern {pattern})"
    return None


def unknown_owner(alert: Mapping[str, Any], config: ResponseConfig) -> str | None:
    """Why the protections cannot be checked (an owner or client they would need is unknown
    or ambiguous), or None when they can."""
    guards_users = bool(config.protected_users or config.protected_patterns)
    guards_clients = bool(config.protected_clients or config.protected_patterns)
    if (guards_users or guards_clients) and _get(alert, "details", "lineage_ambiguous") is True:
        return "its token's lineage names several owners"
    if guards_users and not _get(alert, "user", "id"):
        return "its token's user is unknown"
    if guards_clients and not _get(alert, "client", "id"):
        return "its token's client is unknown"
    return None


def _users(alert: Mapping[str, Any]) -> list[str]:
    names = (_get(alert, "user", "id"), _get(alert, "user", "name"), _get(alert, "details", "lineage_user_id"))
    return [name for name in names if isinstance(name, str) and name]


def _clients(alert: Mapping[str, Any]) -> list[str]:
    names = (_get(alert, "client", "id"), _get(alert, "details", "lineage_client_id"))
    return [name for name in names if isinstance(name, str) and name]


def target_for(alert: Mapping[str, Any]) -> RevocationTarget | None:
    """What the rule's response action revokes, by id; None when the alert lacks the id.
    The user and client are lineage's where it differs from the trigger: the ids the IdP
    issued the token under (its admin APIs and RFC 7009's client check need those), and a
    use claiming other names cannot spread one user's revocations over several budgets."""
    kind = _KIND_OF_ACTION.get(_get(alert, "response", "action") or "none")
    if kind is None:
        return None
    token, family = _get(alert, "token", "id"), _get(alert, "token", "family_id")
    session = _get(alert, "session", "id")
    user = _get(alert, "details", "lineage_user_id") or _get(alert, "user", "id")
    client = _get(alert, "details", "lineage_client_id") or _get(alert, "client", "id")
    ids: dict[TargetKind, str | None] = {"token": token, "family": family or None, "session": session, "subject": user}
    # fall back to the nearest wider scope we can name (a family without id -> its token is not wider: keep token)
    fallbacks: dict[TargetKind, tuple[TargetKind, ...]] = {
        "token": ("token",), "family": ("family", "token"), "session": ("session", "subject"), "subject": ("subject",),
    }
    for candidate in fallbacks[kind]:
        if ids[candidate]:
            token_type = _get(alert, "token", "type")
            hint = _HINTS.get(token_type or "")
            return RevocationTarget(
                kind=candidate, id=str(ids[candidate]), source=source_of(alert), user_id=user, client_id=client,
                token_type_hint=hint if candidate == "token" else ("refresh_token" if candidate == "family" else None),
            )
    return None


def source_of(alert: Mapping[str, Any]) -> str | None:
    """The event source of the trigger (the last evidence item)."""
    evidence = alert.get("evidence") or []
    return evidence[-1].get("source") if evidence and isinstance(evidence[-1], Mapping) else None


def responder_for(target: RevocationTarget, config: ResponseConfig) -> str | None:
    source = target.source or ""
    for key in (f"{source}:{target.kind}", source, f"*:{target.kind}", "*"):
        if key in config.routes:
            return config.routes[key]
    return None


def plan(alert: Mapping[str, Any], config: ResponseConfig, now: datetime,
         mode: ActionMode | None = None, actor: str | None = None) -> Action | None:
    """The action for ``alert`` (None if its rule asks for no revocation). ``mode`` overrides
    the policy (``manual`` when an analyst runs ``tokenwatch revoke``)."""
    target = target_for(alert)
    if target is None:
        return None
    chosen: ActionMode
    if mode is None:
        chosen, why = mode_for(alert, config)
    else:
        chosen, why = mode, f"{mode} by {actor}"
    alert_id = str(_get(alert, "alert", "id"))
    return Action(
        id=action_id(alert_id, target), alert_id=alert_id, rule_id=str(_get(alert, "rule", "id")),
        action=_get(alert, "response", "action"), target=target, mode=chosen, state=INITIAL_STATE[chosen],
        responder=responder_for(target, config), actor=actor or config.actor, reason=why,
        created=now, updated=now, next_attempt_at=now if chosen in ("auto", "manual") else None,
        dry_run=config.dry_run,
    )


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur
