"""Token lineage state shared by all detectors, kept compact and bounded.

The store answers the questions every rule family asks — what was granted at
issue, where, bound to what; was this refresh token already rotated; when was
the token, its family, its session or its subject revoked — in event time
(epoch seconds as floats). Records are ``__slots__`` objects with interned
strings so that a tracked token costs well under 1 KiB, and an expiry wheel
forgets tokens once they are long expired, so memory stays bounded on an
endless stream.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind, TokenType

_INTERN: dict[Any, Any] = {}


def intern(value: Any) -> Any:
    """Share equal immutable values (scope sets, countries, AS names) across records."""
    if value is None:
        return None
    if isinstance(value, str):
        return sys.intern(value)
    shared = _INTERN.get(value)
    if shared is None:
        if len(_INTERN) > 200_000:
            _INTERN.clear()
        _INTERN[value] = shared = value
    return shared


class Observation:
    """Where and how one event happened: enough to compare contexts and to cite
    it as evidence without keeping the event itself."""

    __slots__ = (
        "time", "event_id", "kind", "source", "ip", "net", "egress", "country", "city",
        "lat", "lon", "accuracy_km", "hosting", "binding", "client_id", "success",
        "request_id", "scopes", "asn", "as_org",
    )

    def __init__(self, event: CanonicalEvent) -> None:
        net, geo = event.network, event.network.geo
        self.time: float = event.time.timestamp()
        self.event_id: str = event.event_id
        self.kind: str = intern(event.kind.value)
        self.source: str = intern(event.source)
        self.ip: str | None = net.ip or intern(net.service)
        self.asn: int | None = net.asn
        self.as_org: str | None = intern(net.as_org)
        self.net: str | None = intern(f"AS{net.asn}" if net.asn else net.as_org)
        self.egress: str | None = intern(net.egress)
        self.hosting: bool | None = net.hosting
        self.country: str | None = intern(geo.country) if geo else None
        self.city: str | None = intern(geo.city) if geo else None
        self.lat: float | None = geo.lat if geo else None
        self.lon: float | None = geo.lon if geo else None
        self.accuracy_km: float | None = geo.accuracy_km if geo else None
        proof = event.request.proof if event.request else None
        self.binding: str | None = intern(f"{proof.method}:{proof.value}") if proof else None
        self.client_id: str | None = intern(event.client_id)
        self.success: bool = event.outcome.result == "success"
        self.request_id: str | None = event.request.id if event.request else None
        self.scopes: tuple[str, ...] = intern(event.scopes)

    def evidence(self, token_id: str | None = None) -> EvidenceItem:
        from datetime import datetime, timezone

        return EvidenceItem(
            event_id=self.event_id,
            kind=self.kind,
            time=datetime.fromtimestamp(self.time, tz=timezone.utc),
            source=self.source,
            token_id=token_id,
            ip=self.ip,
            country=self.country,
            city=self.city,
            asn=self.asn,
            as_org=self.as_org,
            scopes=list(self.scopes),
            client_id=self.client_id,
            outcome="success" if self.success else "failure",
            request_id=self.request_id,
            binding=self.binding,
        )


class TokenState:
    """Everything known about one token id."""

    __slots__ = (
        "token_id", "type", "family_id", "parent_id", "session_id", "subject_id", "client_id",
        "issued_at", "expires_at", "scopes", "audience", "binding", "issue", "uses",
        "rotation", "revoked", "last_seen",
    )

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        self.type: str = TokenType.UNKNOWN.value
        self.family_id: str | None = None
        self.parent_id: str | None = None
        self.session_id: str | None = None
        self.subject_id: str | None = None
        self.client_id: str | None = None
        self.issued_at: float | None = None
        self.expires_at: float | None = None
        self.scopes: frozenset[str] | None = None  # granted at issue/refresh; None = unknown
        self.audience: tuple[str, ...] = ()
        self.binding: str | None = None  # "method:value" the token is bound to
        self.issue: Observation | None = None
        self.uses: list[Observation] = []  # most recent successful/failed uses, time-sorted
        self.rotation: Observation | None = None  # first redemption that rotated this token
        self.revoked: Observation | None = None
        self.last_seen: float = 0.0


class ScopeState:
    """Revocation/termination facts for a family, session or subject."""

    __slots__ = ("revoked", "ended", "disabled", "scopes", "audience", "last_seen", "tokens")

    def __init__(self) -> None:
        self.revoked: Observation | None = None
        self.ended: Observation | None = None  # session logout
        self.disabled: Observation | None = None  # principal disabled
        self.scopes: frozenset[str] | None = None  # family: scopes of the original grant
        self.audience: tuple[str, ...] = ()
        self.last_seen: float = 0.0
        self.tokens: set[str] | None = None  # token ids linked here (for retro checks)


@dataclass
class StateLimits:
    recent_uses: int = 4
    idle_ttl_s: float = 86_400.0
    expired_retention_s: float = 3_600.0
    revocation_retention_s: float = 30 * 86_400.0
    max_linked_tokens: int = 64


class StateStore:
    """Lineage state keyed by token, family, session and subject id."""

    def __init__(self, limits: StateLimits | None = None) -> None:
        self.limits = limits or StateLimits()
        self.tokens: dict[str, TokenState] = {}
        self.families: dict[str, ScopeState] = {}
        self.sessions: dict[str, ScopeState] = {}
        self.subjects: dict[str, ScopeState] = {}
        self.detector_state: dict[str, Any] = {}
        self.metrics: dict[str, list[float]] = defaultdict(list)
        self._wheel: dict[int, list[str]] = defaultdict(list)
        self._scope_wheel: dict[int, list[tuple[str, str]]] = defaultdict(list)

    # -- reading -------------------------------------------------------------
    def token(self, token_id: str | None) -> TokenState | None:
        return self.tokens.get(token_id) if token_id else None

    def family_of(self, event: CanonicalEvent) -> str | None:
        tok = event.token
        if tok is None:
            return None
        if tok.family_id:
            return tok.family_id
        known = self.tokens.get(tok.id)
        return known.family_id if known else None

    def namespace(self, detector: str) -> dict[str, Any]:
        """A detector's private corner of the state (so it snapshots with the rest)."""
        return self.detector_state.setdefault(detector, {})

    def observe(self, metric: str, value: float) -> None:
        values = self.metrics[metric]
        if len(values) < 10_000:
            values.append(value)

    def linked_tokens(self, scope: ScopeState | None) -> Iterator[TokenState]:
        if scope is None or not scope.tokens:
            return
        for token_id in scope.tokens:
            known = self.tokens.get(token_id)
            if known is not None:
                yield known

    # -- writing -------------------------------------------------------------
    def apply(self, event: CanonicalEvent) -> None:
        """Record what ``event`` teaches about lineage; call after detectors ran."""
        kind = event.kind
        if kind in (EventKind.ISSUED, EventKind.REFRESHED, EventKind.USED):
            self._apply_token_event(event)
        elif kind is EventKind.REVOKED:
            self._apply_revocation(event)
        elif kind is EventKind.SESSION_ENDED and event.session_id:
            scope = self._scope(self.sessions, "session", event.session_id, event)
            scope.ended = _earliest(scope.ended, Observation(event))
        elif kind is EventKind.PRINCIPAL_DISABLED and event.subject:
            scope = self._scope(self.subjects, "subject", event.subject.id, event)
            scope.disabled = _earliest(scope.disabled, Observation(event))
        elif kind is EventKind.SESSION_STARTED and event.session_id:
            self._scope(self.sessions, "session", event.session_id, event)

    def _apply_token_event(self, event: CanonicalEvent) -> None:
        ref = event.token
        if ref is None:
            return
        state = self._token(ref.id, event)
        _merge_identity(state, event)
        obs = Observation(event)
        if event.kind is EventKind.USED:
            _insert_use(state.uses, obs, self.limits.recent_uses)
            if state.scopes is None and event.scopes:
                state.scopes = intern(frozenset(event.scopes))
        else:
            if state.issue is None or obs.time < state.issue.time:
                state.issue = obs
            state.scopes = intern(frozenset(event.scopes)) if event.scopes else state.scopes
            if ref.parent_id:
                parent = self._token(ref.parent_id, event)
                parent.family_id = parent.family_id or state.family_id
                if event.kind is EventKind.REFRESHED and ref.type is TokenType.REFRESH and obs.success:
                    parent.rotation = _earliest(parent.rotation, obs)
        family_id = state.family_id
        if family_id:
            family = self._scope(self.families, "family", family_id, event)
            if family.scopes is None and event.kind is EventKind.ISSUED and event.scopes:
                family.scopes = state.scopes
                family.audience = state.audience
            self._link(family, ref.id)
        for table, name, key in (
            (self.sessions, "session", state.session_id),
            (self.subjects, "subject", state.subject_id),
        ):
            if key:
                self._link(self._scope(table, name, key, event), ref.id)

    def _apply_revocation(self, event: CanonicalEvent) -> None:
        revocation = event.revocation
        target = revocation.target if revocation else "token"
        obs = Observation(event)
        if target == "token" and event.token:
            state = self._token(event.token.id, event)
            _merge_identity(state, event)
            state.revoked = _earliest(state.revoked, obs)
            return
        key, table = {
            "family": (self.family_of(event), self.families),
            "session": (event.session_id, self.sessions),
            "subject": (event.subject.id if event.subject else None, self.subjects),
        }.get(target, (None, self.families))
        if key:
            scope = self._scope(table, target, key, event)
            scope.revoked = _earliest(scope.revoked, obs)

    def _token(self, token_id: str, event: CanonicalEvent) -> TokenState:
        state = self.tokens.get(token_id)
        if state is None:
            state = self.tokens[token_id] = TokenState(token_id)
        state.last_seen = max(state.last_seen, event.time.timestamp())
        self._schedule(token_id, self._token_deadline(state))
        return state

    def _scope(self, table: dict[str, ScopeState], name: str, key: str, event: CanonicalEvent) -> ScopeState:
        scope = table.get(key)
        if scope is None:
            scope = table[key] = ScopeState()
            self._scope_wheel[_bucket(event.time.timestamp() + self.limits.revocation_retention_s)].append((name, key))
        scope.last_seen = max(scope.last_seen, event.time.timestamp())
        return scope

    def _link(self, scope: ScopeState, token_id: str) -> None:
        if scope.tokens is None:
            scope.tokens = set()
        if len(scope.tokens) < self.limits.max_linked_tokens:
            scope.tokens.add(token_id)

    # -- expiry --------------------------------------------------------------
    def _token_deadline(self, state: TokenState) -> float:
        idle = state.last_seen + self.limits.idle_ttl_s
        if state.expires_at is not None:
            return max(min(idle, state.expires_at + self.limits.expired_retention_s), state.last_seen)
        return idle

    def _schedule(self, token_id: str, deadline: float) -> None:
        bucket = self._wheel[_bucket(deadline)]
        if not bucket or bucket[-1] != token_id:
            bucket.append(token_id)

    def expire(self, watermark: float) -> int:
        """Drop state whose deadline event time has passed; returns tokens dropped."""
        dropped = 0
        for bucket in [b for b in self._wheel if b * _BUCKET_S < watermark]:
            for token_id in self._wheel.pop(bucket):
                state = self.tokens.get(token_id)
                if state is None:
                    continue
                deadline = self._token_deadline(state)
                if deadline < watermark:
                    del self.tokens[token_id]
                    dropped += 1
                else:
                    self._schedule(token_id, deadline)
        for bucket in [b for b in self._scope_wheel if b * _BUCKET_S < watermark]:
            for name, key in self._scope_wheel.pop(bucket):
                table = {"family": self.families, "session": self.sessions, "subject": self.subjects}[name]
                scope = table.get(key)
                if scope is None:
                    continue
                deadline = scope.last_seen + self.limits.revocation_retention_s
                if deadline < watermark:
                    del table[key]
                else:
                    self._scope_wheel[_bucket(deadline)].append((name, key))
        return dropped


_BUCKET_S = 60


def _bucket(deadline: float) -> int:
    return int(deadline // _BUCKET_S) + 1


def _earliest(current: Observation | None, new: Observation) -> Observation:
    return new if current is None or new.time < current.time else current


def _insert_use(uses: list[Observation], obs: Observation, limit: int) -> None:
    """Keep the ``limit`` most recent uses in event-time order."""
    index = len(uses)
    while index > 0 and uses[index - 1].time > obs.time:
        index -= 1
    uses.insert(index, obs)
    if len(uses) > limit:
        del uses[0]


def _merge_identity(state: TokenState, event: CanonicalEvent) -> None:
    """Fill what this event says about the token where the state does not know yet."""
    ref = event.token
    assert ref is not None
    if ref.type is not TokenType.UNKNOWN and (
        state.type == TokenType.UNKNOWN.value or event.kind is not EventKind.USED
    ):
        state.type = intern(ref.type.value)
    state.family_id = intern(ref.family_id) or state.family_id
    state.parent_id = ref.parent_id or state.parent_id
    state.session_id = intern(event.session_id) or state.session_id
    if event.subject:
        state.subject_id = intern(event.subject.id)
    state.client_id = intern(event.client_id) or state.client_id
    if ref.issued_at:
        state.issued_at = ref.issued_at.timestamp()
    if ref.expires_at:
        state.expires_at = ref.expires_at.timestamp()
    if ref.audience:
        state.audience = intern(ref.audience)
    if ref.binding and (state.binding is None or event.kind is not EventKind.USED):
        state.binding = intern(f"{ref.binding.method}:{ref.binding.value}")
