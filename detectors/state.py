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

import hashlib
import heapq
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, TypeVar

from detectors.device import MAX_ID_CHARS, agent_family
from detectors.tables import Table, ValueCodec
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind, Network, TokenRef, TokenType

_INTERN: dict[Any, Any] = {}

# ``Enum.value`` is a Python property, called even from compiled code; read per event, it
# shows. The members are ``str`` subclasses that hash and compare as their values, so a dict
# gives the value itself (the very object ``.value`` returns) for the cost of a lookup.
_VALUES: dict[str, str] = {**{kind: kind.value for kind in EventKind}, **{kind: kind.value for kind in TokenType}}
UNKNOWN_TYPE: Final = TokenType.UNKNOWN.value
REFRESH_TYPE: Final = TokenType.REFRESH.value


def value_of(member: EventKind | TokenType) -> str:
    """``member.value``, without the property call."""
    return _VALUES[member]


def stable_hash(*parts: str) -> int:
    """A 64-bit hash that is the same in every process (Python's hash() of a str is
    randomised per process), so keys survive a changelog restore on another instance."""
    text = parts[0] if len(parts) == 1 else "\x1f".join(parts)  # the engine hashes one id per event
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def forget_before(window: dict[Any, Any], horizon: float, when: Callable[[Any], float]) -> None:
    """Drop the oldest entries of an arrival-ordered time window until one is recent.

    Arrival order follows event time closely, so this stops at the first entry
    ``when`` places at or after ``horizon``; a few out-of-order stragglers live a
    little longer, which only delays forgetting them. One pass over what goes: asking
    ``next(iter(window))`` after each delete walks the freed slots again (quadratic)."""
    gone = []
    for key, value in window.items():
        if when(value) >= horizon:
            break
        gone.append(key)
    for key in gone:
        del window[key]


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


class NetworkFacts:
    """What an ``Observation`` (and a rule reading an event's network) reads of one network,
    once per ``Network`` object (``network_facts``): the enricher hands every event of a
    network it has seen the same object, and a pydantic attribute costs far more to read than
    a native one. Strings come from the enricher's shared objects; only values built here
    (service, agent, device) are interned."""

    __slots__: ClassVar[tuple[str, ...]] = (
        "network", "ip", "service", "asn", "as_org", "net", "egress", "hosting", "net_class", "agent", "device",
        "has_geo", "country", "city", "lat", "lon", "accuracy_km",
    )

    def __init__(self, net: Network) -> None:
        geo = net.geo
        self.network: Final = net  # held: its id() is this record's key in ``_NETWORK_FACTS``
        self.ip: Final = net.ip
        self.service: Final = intern(net.service)
        self.asn: Final = net.asn
        self.as_org: Final = net.as_org
        self.net: Final = network_key(net.as_org, net.asn)
        self.egress: Final = net.egress
        self.hosting: Final = net.hosting
        self.net_class: Final[str | None] = net.net_class
        self.agent: Final = intern(agent_family(net.user_agent))
        self.device: Final = intern(net.device_id[:MAX_ID_CHARS]) if net.device_id else None
        self.has_geo: Final = geo is not None
        self.country: Final = geo.country if geo is not None else None
        self.city: Final = geo.city if geo is not None else None
        self.lat: Final = geo.lat if geo is not None else None
        self.lon: Final = geo.lon if geo is not None else None
        self.accuracy_km: Final = geo.accuracy_km if geo is not None else None


# By ``id`` of the network object (held by its record, so the id is not reused meanwhile);
# bounded like the enricher's own cache of enriched networks, and cleared when full.
_NETWORK_FACTS: dict[int, NetworkFacts] = {}
_MAX_NETWORK_FACTS = 16_384
# A network whose user agent or device id is longer is not kept (its facts are built per
# event): an attacker's 2 KB user agents would pin ~10 KB an entry, whatever
# ``enrich.network_cache_size`` says (the adapters' memos skip such keys alike).
_MAX_KEPT_CHARS = 256


def network_facts(net: Network) -> NetworkFacts:
    """The facts of ``net``, from the cache when this very object was seen."""
    facts = _NETWORK_FACTS.get(id(net))
    if facts is None or facts.network is not net:
        facts = NetworkFacts(net)
        agent, device = net.user_agent, net.device_id
        if (agent is None or len(agent) <= _MAX_KEPT_CHARS) and (device is None or len(device) <= _MAX_KEPT_CHARS):
            if len(_NETWORK_FACTS) >= _MAX_NETWORK_FACTS:
                _NETWORK_FACTS.clear()
            _NETWORK_FACTS[id(net)] = facts
    return facts


class Observation:
    """Where and how one event happened: enough to compare contexts and to cite
    it as evidence without keeping the event itself."""

    __slots__: ClassVar[tuple[str, ...]] = (
        "time", "event_id", "kind", "source", "ip", "net", "egress", "country", "city",
        "lat", "lon", "accuracy_km", "hosting", "binding", "client_id", "success",
        "request_id", "scopes", "asn", "as_org", "service", "net_class", "agent", "device",
    )

    def __init__(self, event: CanonicalEvent | None = None) -> None:
        """``None``: an empty record for the changelog codec to fill in (``__new__`` alone
        would skip ``__init__``, which a class compiled by mypyc cannot)."""
        if event is None:
            return
        request = event.request
        self.time: float = event.epoch
        self.event_id: str = event.event_id
        self.kind: str = _VALUES[event.kind]
        self.source: str = intern(event.source)
        net = network_facts(event.network)
        self.ip: str | None = net.ip
        self.service: str | None = net.service  # a calling cloud service, never an address
        self.asn: int | None = net.asn
        self.as_org: str | None = net.as_org
        self.net: str | None = net.net
        self.egress: str | None = net.egress
        self.hosting: bool | None = net.hosting
        # Device context and egress class: compared between uses by the concurrent-use rule.
        self.net_class: str | None = net.net_class
        self.agent: str | None = net.agent
        self.device: str | None = net.device
        self.country: str | None = net.country
        self.city: str | None = net.city
        self.lat: float | None = net.lat
        self.lon: float | None = net.lon
        self.accuracy_km: float | None = net.accuracy_km
        proof = request.proof if request is not None else None
        self.binding: str | None = intern(f"{proof.method}:{proof.value}") if proof else None
        self.client_id: str | None = event.client_id
        self.success: bool = event.outcome.result == "success"
        self.request_id: str | None = request.id if request is not None else None
        self.scopes: tuple[str, ...] = intern(event.scopes) if event.scopes else ()

    def __eq__(self, other: object) -> bool:
        """Same facts: a copy restored from a changelog equals its original."""
        if not isinstance(other, Observation):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in Observation.__slots__)

    def __hash__(self) -> int:
        return hash((self.event_id, self.time))

    def evidence(self, token_id: str | None = None) -> EvidenceItem:
        from datetime import datetime, timezone

        return EvidenceItem(
            event_id=self.event_id,
            kind=self.kind,
            time=datetime.fromtimestamp(self.time, tz=timezone.utc),
            source=self.source,
            token_id=token_id,
            ip=self.ip,
            service=self.service,
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

    __slots__: ClassVar[tuple[str, ...]] = (
        "token_id", "type", "family_id", "parent_id", "session_id", "subject_id", "client_id",
        "issued_at", "expires_at", "scopes", "audience", "binding", "issue", "accepted", "failed",
        "rotation", "revoked", "last_seen", "wheel_slot",
    )

    def __init__(self, token_id: str) -> None:
        self.token_id = token_id
        self.type: str = UNKNOWN_TYPE
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
        # Recent uses, time-sorted, accepted and failed apart: whoever holds a token can make
        # it fail at will, so failures must never push accepted uses out of the history.
        # An empty tuple until the first one (a list per token that never fails adds up).
        self.accepted: Sequence[Observation] = ()
        self.failed: Sequence[Observation] = ()  # rejected, or of unknown outcome
        self.rotation: Observation | None = None  # first redemption that rotated this token
        self.revoked: Observation | None = None
        self.last_seen: float = 0.0
        self.wheel_slot: int = -1  # expiry-wheel bucket this token is filed under


class ScopeState:
    """Revocation/termination facts for a family, session or subject."""

    __slots__: ClassVar[tuple[str, ...]] = ("revoked", "ended", "disabled", "scopes", "audience", "last_seen", "tokens", "wheel_slot")

    def __init__(self) -> None:
        self.revoked: Observation | None = None
        self.ended: Observation | None = None  # session logout
        self.disabled: Observation | None = None  # principal disabled
        self.scopes: frozenset[str] | None = None  # family: scopes of the original grant
        self.audience: tuple[str, ...] = ()
        self.last_seen: float = 0.0
        self.tokens: list[str] | None = None  # token ids linked here (a list: ~4x smaller than a set)
        self.wheel_slot: int = -1  # expiry-wheel bucket this record is filed under (one at a time)


@dataclass
class StateLimits:
    """Bounds on lineage state; ``pipeline.config.StateConfig`` documents each for users."""

    recent_uses: int = 4
    recent_failures: int = 2
    max_unseen_failing_tokens: int = 10_000
    idle_ttl_s: float = 86_400.0
    expired_retention_s: float = 3_600.0
    revocation_retention_s: float = 30 * 86_400.0
    max_linked_tokens: int = 64


class StateStore:
    """Lineage state keyed by token, family, session and subject id."""

    def __init__(self, limits: StateLimits | None = None, track_changes: bool = False) -> None:
        self.limits = limits or StateLimits()
        # Keep changed keys until ``take_dirty`` (a service writing a changelog); when off
        # they are marked all the same (cheaper than asking) and dropped at each expiry.
        self.track_changes = track_changes
        self._empty()

    def _empty(self) -> None:
        """Start with nothing held: the one list of what the store holds (``clear`` too)."""
        self.tokens: dict[str, TokenState] = {}
        # Tokens known only from failed uses (never issued, accepted, rotated or revoked here),
        # least recently failed first: bounded by count instead of the expiry wheel, so a flood
        # of made-up tokens costs a fixed amount. See ``is_unseen_failing``.
        self.unseen_failing: dict[str, None] = {}
        self.families: dict[str, ScopeState] = {}
        self.sessions: dict[str, ScopeState] = {}
        self.subjects: dict[str, ScopeState] = {}
        # Detector tables by (detector, table name): see ``table``.
        self.tables: dict[tuple[str, str], Table[Any, Any]] = {}
        self.metrics: dict[str, list[float]] = defaultdict(list)
        self._wheel: _Wheel[str] = _Wheel()
        self._scope_wheel: _Wheel[tuple[str, str]] = _Wheel()
        # Keys changed (or deleted) since the last checkpoint, for the changelog: one set per
        # table so that marking costs a set add, no tuple. See ``take_dirty``.
        self._dirty_tokens: set[str] = set()
        self._dirty_scopes: dict[str, set[str]] = {"family": set(), "session": set(), "subject": set()}
        # Changelog keys of an earlier record format found at restore: tombstoned by the
        # next checkpoint (``detectors.state_codec``), so compaction drops them.
        self.stale_records: set[bytes] = set()

    def clear(self) -> None:
        """Forget everything (a changelog base about to be restored holds all that is live)."""
        self._empty()

    # -- reading -------------------------------------------------------------
    def token(self, token_id: str | None) -> TokenState | None:
        return self.tokens.get(token_id) if token_id else None

    def family_of(self, event: CanonicalEvent) -> str | None:
        tok = event.token
        if tok is None:
            return None
        if tok.family_id:
            return tok.family_id
        token_state = self.tokens.get(tok.id)
        return token_state.family_id if token_state else None

    def table(self, detector: str, name: str, codec: ValueCodec[Any]) -> Table[Any, Any]:
        """Detector ``detector``'s table ``name`` of values ``codec`` encodes, created empty
        on first use (or found restored from a changelog). The same table asked with another
        codec is a programming error."""
        found = self.tables.get((detector, name))
        if found is None:
            found = self.tables[(detector, name)] = Table(codec, self.track_changes)
        elif found.codec is not codec:
            raise TypeError(f"table {detector}/{name} holds {found.codec.name!r} values, not {codec.name!r}")
        return found

    def take_dirty(self) -> set[tuple[str, str]]:
        """Lineage keys changed or deleted since the last call, and forget them: ("t", token
        id), ("f", family), ("s", session), ("u", subject). A key no longer present is a
        deletion (``detectors.state_codec`` writes it as a tombstone). Detector tables keep
        their own changed keys (``Table.take_changed``)."""
        if not self.track_changes:
            raise RuntimeError("StateStore(track_changes=True) is needed to take changed keys")
        dirty = {("t", key) for key in self._dirty_tokens}
        for prefix, name in (("f", "family"), ("s", "session"), ("u", "subject")):
            dirty.update((prefix, key) for key in self._dirty_scopes[name])
            self._dirty_scopes[name].clear()
        self._dirty_tokens.clear()
        return dirty

    def observe(self, metric: str, value: float) -> None:
        values = self.metrics[metric]
        if len(values) < 10_000:
            values.append(value)

    def linked_tokens(self, scope: ScopeState | None) -> Iterator[TokenState]:
        if scope is None or not scope.tokens:
            return
        for token_id in scope.tokens:
            token_state = self.tokens.get(token_id)
            if token_state is not None:
                yield token_state

    # -- writing -------------------------------------------------------------
    def apply(self, event: CanonicalEvent) -> None:
        """Record what ``event`` teaches about lineage; call after detectors ran."""
        kind = event.kind
        if kind in (EventKind.ISSUED, EventKind.REFRESHED, EventKind.USED):
            self._apply_token_event(event)
        elif event.outcome.result == "failure":
            return  # a revocation, logout or disable that failed changed nothing
        elif kind is EventKind.REVOKED:
            self._apply_revocation(event)
        elif kind is EventKind.SESSION_ENDED and event.session_id:
            scope = self._scope(self.sessions, "session", event.session_id, event.epoch)
            scope.ended = _earliest(scope.ended, Observation(event))
        elif kind is EventKind.PRINCIPAL_DISABLED and event.subject:
            scope = self._scope(self.subjects, "subject", event.subject.id, event.epoch)
            scope.disabled = _earliest(scope.disabled, Observation(event))
        elif kind is EventKind.SESSION_STARTED and event.session_id:
            self._scope(self.sessions, "session", event.session_id, event.epoch)

    def _apply_token_event(self, event: CanonicalEvent) -> None:
        # Each field read once: a pydantic attribute costs far more to read than a local.
        ref = event.token
        if ref is None:
            return
        kind, token_id = event.kind, ref.id
        if (
            kind is EventKind.USED and event.outcome.result != "success"
            and (token_id in self.unseen_failing or token_id not in self.tokens)
        ):
            self._apply_unseen_failure(token_id, event)
            return
        when = event.epoch
        state = self._token(token_id, when)
        family_before, session_before, subject_before = state.family_id, state.session_id, state.subject_id
        _merge_identity(state, event, ref, kind)
        self._schedule(state)  # the expiry may have just become known
        obs = Observation(event)
        if kind is EventKind.USED:
            _record_use(state, obs, self.limits)
            if state.scopes is None and event.scopes:
                state.scopes = intern(frozenset(event.scopes))
        else:
            if state.issue is None or obs.time < state.issue.time:
                state.issue = obs
            scopes = event.scopes
            state.scopes = intern(frozenset(scopes)) if scopes else state.scopes
            parent_id = ref.parent_id
            if parent_id:
                parent = self._token(parent_id, when)
                parent.family_id = parent.family_id or state.family_id
                if kind is EventKind.REFRESHED and ref.type is TokenType.REFRESH and obs.success:
                    parent.rotation = _earliest(parent.rotation, obs)
            if state.family_id and kind is EventKind.ISSUED and scopes:
                family = self._scope(self.families, "family", state.family_id, when)
                if family.scopes is None:
                    family.scopes = state.scopes
                    family.audience = state.audience
        # Link the token to its family/session/subject once, when first learned (written out:
        # a loop over a tuple of tuples built them per event).
        family_id, session_id, subject_id = state.family_id, state.session_id, state.subject_id
        if family_id and family_id != family_before:
            self._link(self._scope(self.families, "family", family_id, when), token_id)
        if session_id and session_id != session_before:
            self._link(self._scope(self.sessions, "session", session_id, when), token_id)
        if subject_id and subject_id != subject_before:
            self._link(self._scope(self.subjects, "subject", subject_id, when), token_id)

    def _apply_unseen_failure(self, token_id: str, event: CanonicalEvent) -> None:
        """A failed use of a token known from nothing else: keep the failure (a place for
        impossible travel) in the bounded LRU, and nothing it claims about the token — the
        claims are whatever the presenter made up. The first other event promotes it."""
        self._dirty_tokens.add(token_id)
        unseen = self.unseen_failing
        state = self.tokens.get(token_id)
        if state is None:
            state = self.tokens[token_id] = TokenState(token_id)
        else:
            del unseen[token_id]  # re-inserted last: the least recently failed go first
        unseen[token_id] = None
        state.last_seen = max(state.last_seen, event.epoch)
        _record_use(state, Observation(event), self.limits)
        while len(unseen) > self.limits.max_unseen_failing_tokens:
            self._forget_unseen(next(iter(unseen)))

    def _forget_unseen(self, token_id: str) -> None:
        del self.unseen_failing[token_id]
        del self.tokens[token_id]
        self._dirty_tokens.add(token_id)

    def _apply_revocation(self, event: CanonicalEvent) -> None:
        revocation = event.revocation
        target = revocation.target if revocation else "token"
        obs = Observation(event)
        if target == "token" and event.token:
            state = self._token(event.token.id, event.epoch)
            _merge_identity(state, event, event.token, event.kind)
            state.revoked = _earliest(state.revoked, obs)
            return
        key, table = {
            "family": (self.family_of(event), self.families),
            "session": (event.session_id, self.sessions),
            "subject": (event.subject.id if event.subject else None, self.subjects),
        }.get(target, (None, self.families))
        if key:
            scope = self._scope(table, target, key, event.epoch)
            scope.revoked = _earliest(scope.revoked, obs)

    def _token(self, token_id: str, when: float) -> TokenState:
        """The token's record (created, or promoted from the unseen-failing LRU), seen at ``when``."""
        self._dirty_tokens.add(token_id)
        state = self.tokens.get(token_id)
        if state is None:
            state = self.tokens[token_id] = TokenState(token_id)
        elif token_id in self.unseen_failing:  # known from failures only until now: promote it
            del self.unseen_failing[token_id]
            self._schedule(state)
        if when > state.last_seen:
            state.last_seen = when
            self._schedule(state)
        return state

    def _scope(self, table: dict[str, ScopeState], name: str, key: str, when: float) -> ScopeState:
        """The family, session or subject record ``key`` of ``table``, seen at ``when``."""
        self._dirty_scopes[name].add(key)
        scope = table.get(key)
        if scope is None:
            scope = table[key] = ScopeState()
            scope.wheel_slot = _bucket(when + self.limits.expired_retention_s)
            self._scope_wheel[scope.wheel_slot].append((name, key))
        scope.last_seen = max(scope.last_seen, when)
        return scope

    def _link(self, scope: ScopeState, token_id: str) -> None:
        linked = scope.tokens
        if linked is None:
            scope.tokens = [token_id]
        elif len(linked) < self.limits.max_linked_tokens and token_id not in linked:
            linked.append(token_id)

    # -- expiry --------------------------------------------------------------
    def _token_deadline(self, state: TokenState) -> float:
        idle = state.last_seen + self.limits.idle_ttl_s
        if state.expires_at is not None:
            return max(min(idle, state.expires_at + self.limits.expired_retention_s), state.last_seen)
        return idle

    def _schedule(self, state: TokenState) -> None:
        """File the token under its deadline's bucket, once per bucket change."""
        slot = _bucket(self._token_deadline(state))
        if slot != state.wheel_slot:
            state.wheel_slot = slot
            self._wheel[slot].append(state.token_id)

    def file_token(self, token: TokenState) -> None:
        """File a restored token under the wheel bucket its record names."""
        self._wheel[token.wheel_slot].append(token.token_id)

    def file_scope(self, name: str, key: str, scope: ScopeState) -> None:
        """File a restored family/session/subject record under the bucket its record names."""
        if scope.wheel_slot >= 0:
            self._scope_wheel[scope.wheel_slot].append((name, key))

    def expire(self, watermark: float) -> int:
        """Drop state whose deadline event time has passed; returns tokens dropped.

        A family/session/subject record is kept while any token linked to it is
        alive; after that for ``revocation_retention_s`` if it records a
        revocation, logout or disable, else for ``expired_retention_s``.
        """
        dropped = 0
        if not self.track_changes:  # bounded: a batch run never takes them
            self._dirty_tokens.clear()
            for keys in self._dirty_scopes.values():
                keys.clear()
        dirty_tokens = self._dirty_tokens
        for slot, token_ids in self._wheel.take_due(watermark):
            for token_id in token_ids:
                state = self.tokens.get(token_id)
                if state is None or state.wheel_slot != slot:
                    continue  # gone, or filed under a later bucket since
                dirty_tokens.add(token_id)  # deleted, or filed under a new bucket
                if self._token_deadline(state) < watermark:
                    del self.tokens[token_id]
                    dropped += 1
                else:
                    state.wheel_slot = -1
                    self._schedule(state)
        idle_horizon = watermark - self.limits.idle_ttl_s
        idle: list[str] = []
        for token_id in self.unseen_failing:  # least recently failed first: stop at the first fresh one
            if self.tokens[token_id].last_seen >= idle_horizon:
                break
            idle.append(token_id)
        for token_id in idle:  # one pass: asking next(iter(...)) after each delete is quadratic
            self._forget_unseen(token_id)
        dropped += len(idle)
        tables = {"family": self.families, "session": self.sessions, "subject": self.subjects}
        for _, entries in self._scope_wheel.take_due(watermark):
            for name, key in entries:
                table = tables[name]
                scope = table.get(key)
                if scope is None:
                    continue
                self._dirty_scopes[name].add(key)  # deleted, or extended and filed anew
                alive = [tid for tid in scope.tokens or () if tid in self.tokens]
                if alive:
                    scope.tokens = alive
                    scope.last_seen = max(scope.last_seen, watermark)
                has_fact = scope.revoked or scope.ended or scope.disabled
                keep = self.limits.revocation_retention_s if has_fact else self.limits.expired_retention_s
                deadline = scope.last_seen + keep
                if deadline < watermark:
                    del table[key]
                else:
                    scope.wheel_slot = _bucket(deadline)
                    self._scope_wheel[scope.wheel_slot].append((name, key))
        return dropped


_BUCKET_S = 60


def _bucket(deadline: float) -> int:
    return int(deadline // _BUCKET_S) + 1


T = TypeVar("T")


class _Wheel(dict[int, list[T]]):
    """Expiry buckets by number (``_bucket``), with a heap of the bucket numbers: expiry takes
    the due buckets off the heap instead of scanning every bucket held, so it costs what
    expires. A bucket is created by asking for it (``wheel[slot].append(...)``)."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        super().__init__()
        self._slots: list[int] = []  # heap of the bucket numbers present

    def __missing__(self, slot: int) -> list[T]:
        bucket: list[T] = []
        self[slot] = bucket
        heapq.heappush(self._slots, slot)
        return bucket

    def take_due(self, watermark: float) -> Iterator[tuple[int, list[T]]]:
        """Remove and yield the buckets that end before ``watermark``, earliest first."""
        slots = self._slots
        while slots and slots[0] * _BUCKET_S < watermark:
            slot = heapq.heappop(slots)
            yield slot, self.pop(slot)


_NET_KEYS: dict[tuple[str | None, int | None], str | None] = {}


def network_key(as_org: str | None, asn: int | None) -> str | None:
    """The network identity compared across events: the AS organisation name,
    case-folded (sources spell it differently: "deutsche telekom ag" from Okta,
    "Deutsche Telekom AG" from the IP data), else the AS number."""
    key = (as_org, asn)
    found = _NET_KEYS.get(key, "")
    if found == "":
        if len(_NET_KEYS) > 100_000:
            _NET_KEYS.clear()
        found = _NET_KEYS[key] = sys.intern(as_org.casefold()) if as_org else (f"AS{asn}" if asn else None)
    return found


def _earliest(current: Observation | None, new: Observation) -> Observation:
    return new if current is None or new.time < current.time else current


def is_unseen_failing(token: TokenState) -> bool:
    """Whether ``token`` is known from failed uses only: such tokens are kept in the bounded
    ``StateStore.unseen_failing`` LRU and are the only ones never filed in the expiry wheel
    (which is how a changelog restore recognises them)."""
    return token.wheel_slot < 0


def _record_use(state: TokenState, obs: Observation, limits: StateLimits) -> None:
    """File a use under the token's accepted or failed uses, each list bounded on its own."""
    if obs.success:
        if not isinstance(state.accepted, list):
            state.accepted = []
        _insert_use(state.accepted, obs, limits.recent_uses)
    else:
        if not isinstance(state.failed, list):
            state.failed = []
        _insert_use(state.failed, obs, limits.recent_failures)


def _insert_use(uses: list[Observation], obs: Observation, limit: int) -> None:
    """Keep the ``limit`` most recent uses in event-time order.

    A run of uses from one context (address, network, key, client, outcome)
    keeps only its first and its latest use: repeats add nothing for the rules
    (no travel, no second context), while the first and latest still bound
    when the run began and ended for a revocation that arrives late.
    """
    if len(uses) >= 2:
        last = uses[-1]
        if last.time <= obs.time and _same_context(last, obs) and _same_context(uses[-2], obs):
            uses[-1] = obs
            return
    index = len(uses)
    while index > 0 and uses[index - 1].time > obs.time:
        index -= 1
    uses.insert(index, obs)
    excess = len(uses) - limit
    if excess > 0:
        del uses[:excess]


def _same_context(a: Observation, b: Observation) -> bool:
    return (
        a.ip == b.ip and a.service == b.service and a.success == b.success and a.binding == b.binding
        and a.client_id == b.client_id and a.net == b.net
    )


def _merge_identity(state: TokenState, event: CanonicalEvent, ref: TokenRef, kind: EventKind) -> None:
    """Fill what this event (of ``kind``, about ``ref``: both read by the caller already) says
    about the token where the state does not know yet."""
    if kind is EventKind.USED and state.issue is not None:
        # Issuance already told us who the token belongs to; a use only fills gaps.
        if state.session_id is None and event.session_id:
            state.session_id = intern(event.session_id)
        if state.expires_at is None and ref.expires_at:
            state.expires_at = ref.expires_at.timestamp()
        if state.binding is None and ref.binding:
            state.binding = intern(f"{ref.binding.method}:{ref.binding.value}")
        return
    token_type = ref.type
    if token_type is not TokenType.UNKNOWN and (state.type == UNKNOWN_TYPE or kind is not EventKind.USED):
        state.type = intern(_VALUES[token_type])
    state.family_id = intern(ref.family_id) or state.family_id
    state.parent_id = ref.parent_id or state.parent_id
    state.session_id = intern(event.session_id) or state.session_id
    subject = event.subject
    if subject:
        state.subject_id = intern(subject.id)
    state.client_id = intern(event.client_id) or state.client_id
    issued_at, expires_at, audience, binding = ref.issued_at, ref.expires_at, ref.audience, ref.binding
    if issued_at:
        state.issued_at = issued_at.timestamp()
    if expires_at:
        state.expires_at = expires_at.timestamp()
    if audience:
        state.audience = intern(audience)
    if binding and (state.binding is None or kind is not EventKind.USED):
        state.binding = intern(f"{binding.method}:{binding.value}")
