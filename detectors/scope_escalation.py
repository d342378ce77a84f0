"""Scope escalation: a token doing, or a grant yielding, more than was granted.

- ``scope_not_granted`` — a resource server accepted a use whose presented or
  required scopes exceed the scopes granted at issue (when the issue was not
  seen: the route required scopes the presented token does not carry).
- ``grant_widening`` — a refresh (RFC 6749 §6: may only narrow) or a token
  exchange (RFC 8693) returned more scope, or a wider audience, than the
  grant it came from.
- ``new_privileged_scope`` — a subject or client obtained a privileged scope
  it has never held, once a learning period after it was first seen is over.

Privileged scopes held per subject and per client live in the detector's
``subjects`` and ``clients`` tables as :class:`HeldScopes` rows (interned
frozensets), so they are written to the changelog with the rest of the state.
Rows are kept in last-seen order (a sighting that moves ``last_seen`` on moves
the row last), so the retention sweep stops at the first row still fresh and
costs what it forgets, not what is held.

Deciding and wording are apart: ``judge_use_scopes``, ``judge_late_issue`` and
``judge_widening`` read state and return frozen facts (``Overreach``, ``Widening``), and
``ScopeEscalationDetector.judge_new_privilege`` records a sighting and returns them
(``NewPrivilege``); ``overreach_finding``, ``widening_finding`` and ``new_privilege_finding``
word them as alerts.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from detectors import describe
from detectors.base import Detector, Finding, RuleMeta
from detectors.recorded import use_event
from detectors.scope_escalation_config import ScopeEscalationConfig
from detectors.state import Observation, StateStore, TokenState, intern
from detectors.tables import PLAIN, Table, register_codec
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind

_EMPTY: frozenset[str] = frozenset()
_SWEEP_EVERY_S = 3600.0
_NEXT_SWEEP = "next_sweep"  # row of the "bookkeeping" table: event time of the next retention sweep


@dataclass(slots=True)
class HeldScopes:
    """What one subject or client has been seen with: the privileged scopes it holds and
    when it was first and last seen (the learning period and retention run from these)."""

    first_seen: float
    last_seen: float
    held: frozenset[str]


def _encode_held(row: HeldScopes) -> list[Any]:
    return [row.first_seen, row.last_seen, sorted(row.held)]


def _decode_held(values: Any) -> HeldScopes:
    first_seen, last_seen, held = values
    if type(first_seen) not in (int, float) or type(last_seen) not in (int, float):
        raise TypeError("held scopes: times must be numbers")
    if type(held) is not list or not all(type(scope) is str for scope in held):
        raise TypeError("held scopes: scopes must be a list of strings")
    return HeldScopes(float(first_seen), float(last_seen), intern(frozenset(held)) or _EMPTY)


def _last_seen(row: HeldScopes) -> float:
    """Rows are kept in last-seen order: a restore sorts them by it (a row changed in place
    without being seen later was written later than its place)."""
    return row.last_seen


HELD_SCOPES = register_codec("scope_escalation.held_scopes", _encode_held, _decode_held, order=_last_seen)

SCOPE_NOT_GRANTED = RuleMeta(
    id="scope_escalation.scope_not_granted",
    name="Token used with scopes it was not granted",
    category="scope_escalation",
    severity="high",
    risk_score=80,
    techniques=(("T1548", "Abuse Elevation Control Mechanism"),),
    response="revoke_token",
    description="A resource server accepted a request whose presented or required scopes are not among "
    "the scopes granted to the token (a forged or tampered token, or a server not enforcing scope).",
)
GRANT_WIDENING = RuleMeta(
    id="scope_escalation.grant_widening",
    name="Refresh or token exchange widened the grant",
    category="scope_escalation",
    severity="high",
    risk_score=85,
    techniques=(("T1548", "Abuse Elevation Control Mechanism"),),
    response="revoke_family",
    description="A refresh or token exchange returned scopes or audiences beyond the grant it came from; "
    "a refresh may only keep or narrow the original scope (RFC 6749 §6).",
)
NEW_PRIVILEGED_SCOPE = RuleMeta(
    id="scope_escalation.new_privileged_scope",
    name="First privileged scope for a subject or client",
    category="scope_escalation",
    severity="medium",
    risk_score=55,
    techniques=(("T1098", "Account Manipulation"),),
    response="none",
    description="A subject or client obtained a privileged scope it had never held before, after its "
    "learning period.",
)


class ScopeEscalationDetector(Detector[ScopeEscalationConfig]):
    name: ClassVar[str] = "scope_escalation"
    rules: ClassVar[tuple[RuleMeta, ...]] = (SCOPE_NOT_GRANTED, GRANT_WIDENING, NEW_PRIVILEGED_SCOPE)

    def __init__(self, config: ScopeEscalationConfig | None = None) -> None:
        super().__init__(config)
        patterns = self.config.privileged_scopes
        self._privileged_re = re.compile("|".join(fnmatch.translate(p) for p in patterns)) if patterns else None
        self._privileged_cache: dict[tuple[str, ...], frozenset[str]] = {}

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind = event.kind
        if kind is EventKind.USED:
            if event.token is None or event.outcome.result != "success":
                return []
            self._learn_from_use(event, state)
            overreach = judge_use_scopes(event, state)
            return [overreach_finding(overreach)] if overreach is not None else []
        if kind is EventKind.ISSUED or kind is EventKind.REFRESHED:
            if event.token is None or event.outcome.result != "success":
                return []
            widened = judge_widening(event, state, self.config.exchange_grant_types)
            findings = [widening_finding(widened)] if widened is not None else []
            findings += [overreach_finding(late) for late in judge_late_issue(event, state)]
            privileged = self.judge_new_privilege(event, state)
            if privileged is not None:
                findings.append(new_privilege_finding(privileged))
            return findings
        return []

    def expire(self, watermark: float, state: StateStore) -> None:
        """Hourly, forget subjects and clients unseen for the retention period. Rows are in
        last-seen order, so the sweep stops at the first fresh one; a row seen out of order
        (moved last with an earlier time than the row before it) goes once that row goes."""
        bookkeeping = state.table(self.name, "bookkeeping", PLAIN)
        next_sweep = bookkeeping.get(_NEXT_SWEEP)
        if next_sweep is not None and watermark < next_sweep:
            return
        bookkeeping.put(_NEXT_SWEEP, watermark + _SWEEP_EVERY_S)
        horizon = watermark - self.config.retention_s
        for table in self._tables(state):
            table.forget_before(horizon, _last_seen)

    # -- new_privileged_scope -------------------------------------------------
    def _privileged(self, scopes: tuple[str, ...]) -> frozenset[str]:
        """The privileged subset of ``scopes`` (cached: scope sets repeat endlessly)."""
        if not scopes or self._privileged_re is None:
            return _EMPTY
        cache = self._privileged_cache
        found = cache.get(scopes)
        if found is None:
            match = self._privileged_re.match
            found = intern(frozenset(s for s in scopes if match(s))) or _EMPTY
            if len(cache) > 50_000:
                cache.clear()
            cache[scopes] = found
        return found

    def _tables(self, state: StateStore) -> tuple[Table[str, HeldScopes], Table[str, HeldScopes]]:
        """The held-scope rows per subject and per client."""
        return state.table(self.name, "subjects", HELD_SCOPES), state.table(self.name, "clients", HELD_SCOPES)

    def _learn_from_use(self, event: CanonicalEvent, state: StateStore) -> None:
        """Uses count as sightings, and the privileged scopes a token presents are held."""
        privileged = self._privileged(event.scopes)
        t = event.epoch
        subjects, clients = self._tables(state)
        subject = event.subject.id if event.subject else None
        if subject is not None:
            _sighted(subjects, subject, privileged, t)
        if event.client_id is not None:
            _sighted(clients, event.client_id, privileged, t)

    def judge_new_privilege(self, event: CanonicalEvent, state: StateStore) -> NewPrivilege | None:
        """The facts when the issue or refresh ``event`` grants its subject or client privileged
        scopes it never held, after its learning period. Records the sighting and the scopes
        held either way (the subject's row, then the client's); builds facts only for a finding."""
        privileged = self._privileged(event.scopes)
        t = event.epoch
        learning = self.config.learning_period_s
        subjects, clients = self._tables(state)
        subject = event.subject.id if event.subject else None
        for_subject = _newly_held(subjects, subject, privileged, t, learning) if subject is not None else None
        client = event.client_id
        for_client = _newly_held(clients, client, privileged, t, learning) if client is not None else None
        if for_subject is None and for_client is None:
            return None
        return NewPrivilege(event, for_subject, for_client)


def _sighted(table: Table[str, HeldScopes], key: str, privileged: frozenset[str], t: float) -> None:
    """A use by ``key`` at ``t`` presenting ``privileged``: those scopes are held from now on."""
    row = table.get(key)
    if row is None:
        table.put(key, HeldScopes(t, t, privileged))
        return
    if privileged and not privileged <= row.held:
        row.held = intern(row.held | privileged)
        table.touch(key)
    _seen_at(table, key, row, t)


def _seen_at(table: Table[str, HeldScopes], key: str, row: HeldScopes, t: float) -> None:
    """A sighting at ``t``: a later last-seen moves the row last (last-seen order)."""
    if t > row.last_seen:
        row.last_seen = t
        table.put_last(key, row)


# -- new_privileged_scope ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FirstHeld:
    """Privileged scopes new to one subject or client, and how long it had been seen."""

    scopes: tuple[str, ...]  # sorted
    seen_s: float  # since it was first seen


@dataclass(frozen=True, slots=True)
class NewPrivilege:
    """An issue or refresh granting privileged scopes for the first time: everything a
    ``new_privileged_scope`` alert says. At least one of ``subject`` and ``client`` is set."""

    event: CanonicalEvent  # the issue or refresh
    subject: FirstHeld | None  # what was new to its subject, None when nothing
    client: FirstHeld | None  # what was new to its client, None when nothing


def _newly_held(
    table: Table[str, HeldScopes], key: str, privileged: frozenset[str], t: float, learning: float
) -> FirstHeld | None:
    """An issue at ``t`` granting ``privileged`` to ``key``: a sighting, and the scopes held from
    now on; the ones it never held when it is past its learning period (seen that long)."""
    row = table.get(key)
    if row is None:
        table.put(key, HeldScopes(t, t, privileged))
        return None
    if t < row.first_seen:
        row.first_seen = t
        table.touch(key)
    _seen_at(table, key, row, t)
    if not privileged or privileged <= row.held:
        return None
    found: FirstHeld | None = None
    if t - row.first_seen >= learning:
        found = FirstHeld(tuple(sorted(privileged - row.held)), t - row.first_seen)
    row.held = intern(row.held | privileged)
    table.touch(key)
    return found


def new_privilege_finding(match: NewPrivilege) -> Finding:
    """``match`` as a ``new_privileged_scope`` alert."""
    event, subject, client = match.event, match.subject, match.client
    ref = event.token
    assert ref is not None
    return Finding(
        rule=NEW_PRIVILEGED_SCOPE,
        event=event,
        key=ref.id,
        summary=new_privilege_summary(match),
        evidence=(EvidenceItem.of(event),),
        family_id=ref.family_id,
        details={
            "new_scopes": " ".join(_new_scopes(match)),
            "new_for_subject": " ".join(subject.scopes) if subject is not None else None,
            "new_for_client": " ".join(client.scopes) if client is not None else None,
        },
    )


def new_privilege_summary(match: NewPrivilege) -> str:
    """The new scopes, who they are new to and how long each had been seen, the other party
    for context, the time and the token."""
    event, subject, client = match.event, match.subject, match.client
    ref = event.token
    assert ref is not None
    who: list[str] = []
    if subject is not None:
        who.append(f"subject {describe.subject(event)} (seen for {describe.duration(subject.seen_s)})")
    if client is not None:
        who.append(f"client {event.client_id} (seen for {describe.duration(client.seen_s)})")
    how = "issued by a refresh" if event.kind is EventKind.REFRESHED else "issued"
    if subject is None:
        holder = f", for subject {describe.subject(event)}"
    else:
        holder = "" if client is not None else f", via client {event.client_id or '?'}"
    return (
        f"Privileged {describe.named('scope', _new_scopes(match))} {how} for the first time to "
        f"{' and '.join(who)}{holder} at {describe.when(event.epoch)} (token {ref.id})."
    )


def _new_scopes(match: NewPrivilege) -> list[str]:
    """Every scope new to the subject or the client, sorted."""
    return sorted({*(match.subject.scopes if match.subject else ()), *(match.client.scopes if match.client else ())})


# -- scope_not_granted --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Overreach:
    """An accepted use whose scopes exceed its grant: everything a ``scope_not_granted`` alert says."""

    use: CanonicalEvent  # the accepted use (rebuilt from state when the issue was logged later)
    token_state: TokenState | None  # what state knew of the token before the judging event
    extra: tuple[str, ...]  # presented or required beyond the grant, in the use's order
    granted: frozenset[str] | None  # None: its issue was not seen (judged against its own scopes)
    recorded: Observation | None = None  # the use as state recorded it, when re-judged late
    issue: CanonicalEvent | None = None  # the issue, when it was logged after the use


def judge_use_scopes(event: CanonicalEvent, state: StateStore) -> Overreach | None:
    """An accepted use against the scopes granted at issue; its issue unseen, the scopes the route
    required against those the token carries. Reads state, changes nothing."""
    ref = event.token
    assert ref is not None
    token_state = state.tokens.get(ref.id)
    granted = None  # the issue's scopes, when it was seen
    if token_state is not None and token_state.issue is not None and token_state.scopes:
        granted = token_state.scopes
    if granted is not None:
        extra = [s for s in event.scopes if s not in granted]
        extra += [s for s in event.required_scopes if s not in granted and s not in extra]
    elif event.scopes and event.required_scopes:
        extra = [s for s in event.required_scopes if s not in event.scopes]
    else:
        return None
    return Overreach(event, token_state, tuple(extra), granted) if extra else None


def judge_late_issue(event: CanonicalEvent, state: StateStore) -> tuple[Overreach, ...]:
    """Uses judged before this issue arrived (another source's log came later), re-judged against
    the grant now known; each is cited as a ``used`` event rebuilt under its own id, as in-order
    processing would have cited it. Reads state, changes nothing."""
    ref = event.token
    assert ref is not None
    token_state = state.tokens.get(ref.id)
    granted = frozenset(event.scopes)
    if token_state is None or not granted:
        return ()
    found: list[Overreach] = []
    for use in token_state.accepted:
        if not use.success or use.time < event.epoch or use.event_id == event.event_id:
            continue
        extra = tuple(s for s in use.scopes if s not in granted)
        if extra:
            found.append(Overreach(use_event(use, token_state), token_state, extra, granted, use, event))
    return tuple(found)


def overreach_finding(overreach: Overreach) -> Finding:
    """``overreach`` as a ``scope_not_granted`` alert."""
    if overreach.recorded is not None and overreach.issue is not None:
        return _late_overreach_finding(overreach, overreach.recorded, overreach.issue)
    event, token_state, granted, extra = overreach.use, overreach.token_state, overreach.granted, overreach.extra
    ref = event.token
    assert ref is not None
    if granted is not None:
        basis = f"granted at issue ({describe.scope_list(granted)})"
    else:
        basis = f"carried by the token ({describe.scope_list(event.scopes)}; its issue was not seen)"
    request = event.request
    route = ""
    if request is not None and request.resource:
        route = f" for {request.method} {request.resource}" if request.method else f" for {request.resource}"
    summary = (
        f"Token accepted{route} with {describe.named('scope', extra)} beyond those {basis}, "
        f"at {describe.when(event.epoch)} (token {ref.id}, subject {describe.subject(event)}, "
        f"client {event.client_id or '?'})."
    )
    return Finding(
        rule=SCOPE_NOT_GRANTED,
        event=event,
        key=ref.id,
        summary=summary,
        evidence=describe.evidence_with_issue(event, token_state),
        family_id=ref.family_id or (token_state.family_id if token_state else None),
        details={
            "extra_scopes": " ".join(extra),
            "granted_scopes": " ".join(sorted(granted)) if granted is not None else None,
            "presented_scopes": " ".join(event.scopes),
            "required_scopes": " ".join(event.required_scopes),
            "issue_seen": granted is not None,
        },
    )


def _late_overreach_finding(overreach: Overreach, use: Observation, issue: CanonicalEvent) -> Finding:
    """A use re-judged when its issue was logged after it: cited with the issue first."""
    used, token_state, extra = overreach.use, overreach.token_state, overreach.extra
    ref = issue.token
    assert ref is not None and token_state is not None and overreach.granted is not None
    granted = overreach.granted
    summary = (
        f"Token accepted with {describe.named('scope', extra)} beyond those granted at issue "
        f"({describe.scope_list(granted)}), at {describe.when(use.time)}; the issue was logged after the use "
        f"(token {ref.id}, subject {describe.subject(used, token_state)}, client {used.client_id or '?'})."
    )
    return Finding(
        rule=SCOPE_NOT_GRANTED, event=used, key=ref.id, summary=summary,
        evidence=(EvidenceItem.of(issue), use.evidence(ref.id)),
        family_id=ref.family_id or token_state.family_id,
        details={"extra_scopes": " ".join(extra), "granted_scopes": " ".join(sorted(granted)),
                 "presented_scopes": " ".join(use.scopes), "required_scopes": "", "issue_seen": True,
                 "retroactive": True},
    )


# -- grant_widening ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Widening:
    """A refresh or token exchange that minted more than its grant: everything its alert says."""

    event: CanonicalEvent  # the refresh or exchange
    parent: TokenState | None  # what state knew of the token it came from
    family_id: str | None
    exchange: bool  # a token exchange (RFC 8693), else a refresh
    extra_scopes: tuple[str, ...]  # minted beyond the grant, in the event's order
    allowed_scopes: frozenset[str]
    extra_audience: tuple[str, ...]
    allowed_audience: frozenset[str]


def judge_widening(event: CanonicalEvent, state: StateStore, exchange_grant_types: tuple[str, ...]) -> Widening | None:
    """A successful refresh or exchange (``event``) compared with the grant it came from: the family's
    original grant plus its parent token's. An exchange may change audience but not widen it. Reads
    state, changes nothing."""
    ref = event.token
    assert ref is not None
    if not ref.parent_id:
        return None
    exchange = event.kind is EventKind.ISSUED
    if exchange and event.grant_type not in exchange_grant_types:
        return None
    parent = state.tokens.get(ref.parent_id)
    family_id = ref.family_id or (parent.family_id if parent else None)
    allowed_scopes, allowed_aud = _grant(state, family_id, parent)
    extra = tuple(s for s in event.scopes if s not in allowed_scopes) if allowed_scopes else ()
    wider_aud = _wider_audience(ref.audience, allowed_aud, parent, exchange)
    if not extra and not wider_aud:
        return None
    return Widening(event, parent, family_id, exchange, extra, allowed_scopes, wider_aud, allowed_aud)


def _wider_audience(
    audience: tuple[str, ...], allowed: frozenset[str], parent: TokenState | None, exchange: bool
) -> tuple[str, ...]:
    """Audiences beyond the grant; an exchange only when it also adds audiences (a swap is its point)."""
    if not audience or not allowed:
        return ()
    outside = tuple(a for a in audience if a not in allowed)
    parent_aud = parent.audience if parent else ()
    if outside and (not exchange or len(set(audience)) > len(set(parent_aud or allowed))):
        return outside
    return ()


def widening_finding(widening: Widening) -> Finding:
    """``widening`` as a ``grant_widening`` alert."""
    event, family_id = widening.event, widening.family_id
    ref = event.token
    assert ref is not None and ref.parent_id is not None
    grew = []
    if widening.extra_scopes:
        grew.append(f"{describe.named('scope', widening.extra_scopes)} beyond the grant "
                    f"({describe.scope_list(widening.allowed_scopes)})")
    if widening.extra_audience:
        grew.append(f"{describe.named('audience', widening.extra_audience)} beyond "
                    f"{describe.scope_list(widening.allowed_audience)}")
    what, rule_text = (
        ("Token exchange", "an exchanged token may not exceed its subject token") if widening.exchange
        else ("Refresh", "RFC 6749 §6 lets a refresh only keep or narrow scope")
    )
    summary = (
        f"{what} widened the grant: minted a token with {' and '.join(grew)} at {describe.when(event.epoch)}; "
        f"{rule_text} (token {ref.parent_id} → {ref.id}, subject {describe.subject(event)}, "
        f"client {event.client_id or '?'}, family {family_id or '?'})."
    )
    return Finding(
        rule=GRANT_WIDENING,
        event=event,
        key=ref.id,
        summary=summary,
        evidence=describe.evidence_with_issue(event, widening.parent),
        family_id=family_id,
        details={
            "via": "token_exchange" if widening.exchange else "refresh",
            "parent_token_id": ref.parent_id,
            "extra_scopes": " ".join(widening.extra_scopes) or None,
            "granted_scopes": " ".join(sorted(widening.allowed_scopes)) or None,
            "extra_audience": " ".join(widening.extra_audience) or None,
            "granted_audience": " ".join(sorted(widening.allowed_audience)) or None,
        },
    )


def _grant(
    state: StateStore, family_id: str | None, parent: TokenState | None
) -> tuple[frozenset[str], frozenset[str]]:
    """Scopes and audiences a refresh/exchange may return: the family's original
    grant (every token issued into the family) plus the parent token's own."""
    scopes: set[str] = set()
    audience: set[str] = set()
    family = state.families.get(family_id) if family_id else None
    if family is not None:
        scopes.update(family.scopes or ())
        audience.update(family.audience)
        for token_state in state.linked_tokens(family):
            if token_state.issue is not None and token_state.issue.kind == "issued":
                scopes.update(token_state.scopes or ())
                audience.update(token_state.audience)
    if parent is not None:
        scopes.update(parent.scopes or ())
        audience.update(parent.audience)
    return frozenset(scopes), frozenset(audience)

