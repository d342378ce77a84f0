"""Response actions, the audit trail and analyst suppressions: the records the store keeps.

Shared by the response executor (which creates and updates actions) and the analyst CLI
(which reads them and writes suppressions). No I/O here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from collections.abc import Mapping
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from schemas.alerts import ResponseAction

TargetKind = Literal["token", "family", "session", "subject"]
ActionMode = Literal["auto", "approve", "notify", "manual"]  # manual = an analyst ran `tokenwatch revoke`
ActionState = Literal[
    "pending",
    "awaiting_approval",
    "in_progress",
    "succeeded",
    "failed",
    "gave_up",
    "dry_run",
    "notified",
    "skipped",
    "denied",
    "cancelled",
]
Disposition = Literal["true_positive", "false_positive", "benign"]
DetailValue = str | int | float | bool | None


def _new_id() -> str:
    return uuid.uuid4().hex


class RevocationTarget(BaseModel):
    """What to revoke, by id: never the token string itself (that lives in a revocation handle)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: TargetKind
    id: str
    issuer: str | None = None
    source: str | None = None
    user_id: str | None = None
    client_id: str | None = None
    token_type_hint: Literal["access_token", "refresh_token"] | None = None

    def label(self) -> str:
        """Short text for tables and audit entries, e.g. ``family:fam-1``."""
        return f"{self.kind}:{self.id}"


def action_id(alert_id: str, target: RevocationTarget) -> str:
    """Deterministic id (the idempotency key): one action per alert and target."""
    key = "\x1f".join((alert_id, target.kind, target.id, target.issuer or ""))
    return "act-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class Action(BaseModel):
    """One planned or executed response step; also the durable retry-queue entry."""

    model_config = ConfigDict(extra="forbid")

    id: str
    alert_id: str
    rule_id: str
    action: ResponseAction
    target: RevocationTarget
    mode: ActionMode
    state: ActionState
    responder: str | None = None
    actor: str
    reason: str
    attempts: int = Field(default=0, ge=0)
    last_error: str | None = None
    next_attempt_at: AwareDatetime | None = None
    created: AwareDatetime
    updated: AwareDatetime
    dry_run: bool = False


class AuditEntry(BaseModel):
    """Who did what to which alert/action, why, and with what result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=_new_id)
    time: AwareDatetime
    actor: str
    verb: str  # "revoke.attempt", "revoke.result", "alert.ack", "alert.close", "alert.suppress", "breaker.trip", ...
    alert_id: str | None = None
    action_id: str | None = None
    target: str | None = None
    why: str
    result: str
    details: dict[str, DetailValue] = {}


class Suppression(BaseModel):
    """Analyst rule: alerts matching every given criterion are suppressed until ``expires``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(default_factory=_new_id)
    rule_id: str | None = None
    user_id: str | None = None
    client_id: str | None = None
    ip: str | None = None  # an address or a CIDR range
    asn: int | None = None
    reason: str
    actor: str
    created: AwareDatetime
    expires: AwareDatetime

    @model_validator(mode="after")
    def _check(self) -> Suppression:
        if not any(v is not None for v in (self.rule_id, self.user_id, self.client_id, self.ip, self.asn)):
            raise ValueError("a suppression needs at least one criterion (rule, user, client, ip or asn)")
        if self.ip is not None:
            ipaddress.ip_network(self.ip, strict=False)  # raises ValueError on a bad address
        if self.expires <= self.created:
            raise ValueError("expires must be after created")
        return self

    def active(self, now: datetime) -> bool:
        return self.created <= now < self.expires

    def matches(self, alert_doc: Mapping[str, Any], now: datetime | None = None) -> bool:
        """True if the alert document meets every criterion (and, given ``now``, it has not expired)."""
        if now is not None and not self.active(now):
            return False
        rule = _get(alert_doc, "rule", "id")
        if self.rule_id is not None and not (isinstance(rule, str) and fnmatchcase(rule, self.rule_id)):
            return False  # rule_id may be a glob (replay.*), checked against the registry by the CLI
        if self.user_id is not None and _get(alert_doc, "user", "id") != self.user_id:
            return False
        if self.client_id is not None and _get(alert_doc, "client", "id") != self.client_id:
            return False
        if self.asn is not None and _get(alert_doc, "source", "as", "number") != self.asn:
            return False
        if self.ip is not None:
            ip = _get(alert_doc, "source", "ip")
            if not isinstance(ip, str) or not _ip_in(ip, self.ip):
                return False
        return True


def _get(doc: Mapping[str, Any], *path: str) -> Any:
    cur: Any = doc
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _ip_in(ip: str, spec: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return False
