"""Replay: one token, two holders.

A bearer token has exactly one legitimate holder. Four rules look for a second
one: a rotated refresh token redeemed again (RFC 9700 §4.14.2, or the IdP says
so itself), one token used from two networks at once, a token used away from
what it is bound to — a proof-of-possession key (RFC 9449 DPoP, RFC 8705
mTLS), the cloud it was issued in, the pod it was issued to (checked by
``detectors.binding``) — and one request id accepted twice. Every comparison
is by absolute event-time distance, so an event that arrives late is judged
exactly like one that arrived on time.

Each rule is decided, then described: the deciding method returns a frozen match of
facts (or None), and a pure function words it as the alert. Refresh reuse:
``_refreshed`` → ``RefreshReuse`` → ``refresh_reuse_finding``, and ``_reported_reuse`` →
``ReportedReuse`` → ``reported_reuse_finding``. Concurrent use:
``ReplayDetector.judge_concurrent_use`` files the use in the token's timeline and returns a
``ConcurrentUse``, worded by ``concurrent_use_finding``. Duplicate request: ``_duplicate`` →
``DuplicateRequest`` → ``duplicate_request_finding``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Final

from detectors import describe
from detectors.base import Detector, Finding, RuleMeta
from detectors.binding import BindingCheck, token_label
from detectors.concurrency import (
    TIMELINE,
    Match,
    Timeline,
    around,
    insert,
    judge,
    network_place,
    place_of,
    seed,
    trim,
)
from detectors.concurrency_words import concurrency_summary
from detectors.replay_config import ReplayConfig
from detectors.state import Observation, StateStore, TokenState, stable_hash
from detectors.tables import Table, register_codec
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind, TokenRef

_ALT_AUTH = ("T1550.001", "Use Alternate Authentication Material: Application Access Token")
_STEAL = ("T1528", "Steal Application Access Token")

REFRESH_REUSE = RuleMeta(
    id="replay.refresh_reuse",
    name="Refresh token reused after rotation",
    category="replay",
    severity="high",
    risk_score=80,
    techniques=(_ALT_AUTH, _STEAL),
    response="revoke_family",
    description=(
        "A refresh token that was already rotated was redeemed again after the grace period, "
        "or inside it from another client or network, or the IdP itself reported its reuse "
        "(Okta refresh-token reuse detection): two parties hold it (RFC 9700 §4.14.2)."
    ),
)
CONCURRENT_USE = RuleMeta(
    id="replay.concurrent_use",
    name="Token used from two contexts at once",
    category="replay",
    severity="high",
    risk_score=70,
    techniques=(_ALT_AUTH,),
    response="revoke_token",
    description=(
        "The same token was accepted from network A, then B, then A again within a short window, or "
        "moved within it to a hosting, anonymising or reputation-listed network, another country, "
        "faster than anyone travels or through a third network; a device change counts only with a "
        "network change. A one-way move within one country is roaming, not an alert."
    ),
)
BINDING_MISMATCH = RuleMeta(
    id="replay.binding_mismatch",
    name="Sender-constrained token used without its key",
    category="replay",
    severity="high",
    risk_score=85,
    techniques=(_ALT_AUTH, _STEAL),
    response="revoke_token",
    description=(
        "A request was accepted with a key (DPoP/mTLS) or pod other than the one the token is bound "
        "to, or a DPoP/mTLS-bound token without any proof; cloud credentials issued to a provider's "
        "service were used from outside that provider (credential exfiltration); a pod-bound "
        "Kubernetes token was used from an address other than its pod's (or its node's)."
    ),
)
DUPLICATE_REQUEST = RuleMeta(
    id="replay.duplicate_request",
    name="Request replayed",
    category="replay",
    severity="medium",
    risk_score=60,
    techniques=(_ALT_AUTH,),
    response="revoke_token",
    description="The same request id (nonce) was accepted twice for one token in two distinct events.",
)

_SOURCE_LABEL = {"okta": "Okta", "keycloak": "Keycloak", "entra": "Microsoft Entra ID"}


class SeenRequest:
    """The first accepted use of one (token, request id): kept for the duplicate window.

    A plain class, not a frozen dataclass: compiled, that one is built by its Python-generated
    ``__init__`` (about ten times the cost), and most accepted uses carrying a request id build one."""

    __slots__: ClassVar[tuple[str, ...]] = ("first_seen", "event_id", "source")

    def __init__(self, first_seen: float, event_id: str, source: str) -> None:
        self.first_seen: Final = first_seen
        self.event_id: Final = event_id
        self.source: Final = source


def _encode_request(request: SeenRequest) -> list[Any]:
    return [request.first_seen, request.event_id, request.source]


def _decode_request(data: Any) -> SeenRequest:
    first_seen, event_id, source = data
    if type(first_seen) not in (int, float) or type(event_id) is not str or type(source) is not str:
        raise TypeError("bad seen request")
    return SeenRequest(float(first_seen), event_id, source)


SEEN_REQUEST = register_codec("replay.request", _encode_request, _decode_request)


@dataclass(frozen=True, slots=True)
class ConcurrentUse:
    """Two holders of one token, as ``ReplayDetector.judge_concurrent_use`` found them:
    everything the ``concurrent_use`` alert says."""

    event: CanonicalEvent  # the accepted use that showed it
    token_state: TokenState  # what state knew of the token before it
    match: Match  # why, and the uses that show it
    handovers: int  # one-way moves of this token counted as roaming before
    window_s: float  # the concurrency window the uses fell in


@dataclass(frozen=True, slots=True)
class RefreshReuse:
    """A rotated refresh token redeemed again, as ``ReplayDetector._refreshed`` found it:
    everything the ``refresh_reuse`` alert says."""

    event: CanonicalEvent  # the redemption that showed it
    redeemed: str  # the refresh token redeemed twice
    rotation: Observation  # its redemption that rotated it
    current: Observation  # ``event``'s
    family_id: str | None
    gap_s: float  # between the two redemptions, absolute
    grace_s: float  # the grace period a retry may fall in
    not_a_retry: str | None  # inside the grace period, what differs ("client" or "network"); None past it


@dataclass(frozen=True, slots=True)
class ReportedReuse:
    """The IdP reported a refresh token's reuse (``ReplayDetector._reported_reuse``)."""

    event: CanonicalEvent  # the report
    token_state: TokenState | None  # what state knew of the reported token
    family_id: str | None  # the token's family, else the report's session


@dataclass(frozen=True, slots=True)
class DuplicateRequest:
    """One request id accepted twice for one token, as ``ReplayDetector._duplicate`` found it."""

    event: CanonicalEvent  # the second acceptance
    request_id: str
    first: SeenRequest  # the first acceptance, as the duplicate window keeps it
    earlier: Observation | None  # the first acceptance among the token's uses, when state still has it
    token_state: TokenState | None


class ReplayDetector(Detector[ReplayConfig]):
    name: ClassVar[str] = "replay"
    rules: ClassVar[tuple[RuleMeta, ...]] = (REFRESH_REUSE, CONCURRENT_USE, BINDING_MISMATCH, DUPLICATE_REQUEST)

    def __init__(self, config: ReplayConfig | None = None) -> None:
        super().__init__(config)
        cfg = self.config
        # Plain floats: read on every event.
        self._grace = cfg.refresh_grace_s
        self._concurrent = cfg.concurrent_window_s
        self._dup_window = cfg.duplicate_request_window_s
        self._max_speed = cfg.concurrent_max_speed_kmh
        self._max_timelines = cfg.max_tracked_timelines
        self._cap = cfg.max_tracked_requests
        self._binding = BindingCheck(cfg, BINDING_MISMATCH, self.name)

    # -- dispatch --------------------------------------------------------------
    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind = event.kind
        if kind is EventKind.USED:
            ref = event.token
            if ref is None or event.outcome.result != "success":
                return []  # a rejected request proves nothing was accepted twice
            return self._used(event, ref, state)
        if kind is EventKind.REFRESHED and event.token is not None:
            reuse = self._refreshed(event, event.token, state)
            return [refresh_reuse_finding(reuse)] if reuse is not None else []
        if kind is EventKind.REUSE_REPORTED:
            reported = self._reported_reuse(event, event.token, state)
            return [reported_reuse_finding(reported)] if reported is not None else []
        return []

    def expire(self, watermark: float, state: StateStore) -> None:
        """Forget request ids once event time is past their duplicate window, timelines
        once quiet for two concurrency windows, and pod addresses once their pod has
        been quiet for the pod TTL."""
        self._requests(state).forget_before(watermark - self._dup_window, _first_seen)
        self._timelines(state).forget_before(watermark - 2 * self._concurrent, _newest)
        self._binding.expire(watermark, state)

    def _requests(self, state: StateStore) -> Table[int, SeenRequest]:
        return state.table(self.name, "requests", SEEN_REQUEST)

    # -- refresh reuse -----------------------------------------------------------
    def _refreshed(self, event: CanonicalEvent, ref: TokenRef, state: StateStore) -> RefreshReuse | None:
        """Whether this redemption redeems a refresh token already rotated by another one: the
        facts of two holders, or None (no rotation known, or one client retrying inside the grace)."""
        # A failed redemption may name only the presented token (nothing new was minted).
        redeemed = ref.parent_id or (ref.id if event.outcome.result == "failure" else None)
        token_state = state.tokens.get(redeemed) if redeemed else None
        rotation = token_state.rotation if token_state is not None else None
        if rotation is None or not rotation.success or rotation.event_id == event.event_id:
            return None
        assert redeemed is not None and token_state is not None
        current = Observation(event)
        gap = abs(current.time - rotation.time)
        other: str | None = None
        if gap <= self._grace:
            other = _other_client_context(rotation, current)
            if other is None:
                return None  # a retry of the same client after a lost response
        family = token_state.family_id or ref.family_id
        return RefreshReuse(event, redeemed, rotation, current, family, gap, self._grace, other)

    def _reported_reuse(self, event: CanonicalEvent, ref: TokenRef | None, state: StateStore) -> ReportedReuse | None:
        """The IdP detected the reuse itself (Okta refresh-token reuse detection): take its word.

        Without a token in the report the alert is about the session's token family."""
        token_state = state.tokens.get(ref.id) if ref is not None else None
        family = (ref.family_id if ref is not None else None) or (token_state.family_id if token_state is not None else None)
        family = family or event.session_id
        if ref is None and family is None:
            return None
        return ReportedReuse(event, token_state, family)

    # -- uses ------------------------------------------------------------------
    def _used(self, event: CanonicalEvent, ref: TokenRef, state: StateStore) -> list[Finding]:
        token_state = state.tokens.get(ref.id)
        request = event.request
        proof = request.proof if request is not None else None
        bound = token_state.binding if token_state is not None else None
        if bound is None and ref.binding is not None:
            bound = f"{ref.binding.method}:{ref.binding.value}"
        when = event.epoch
        findings: list[Finding] = []
        mismatch = self._binding.check(event, ref, token_state, bound, proof, state) if bound is not None else None
        if mismatch is not None:
            findings.append(mismatch)
        elif token_state is not None and token_state.accepted:
            # A binding mismatch already says "not the holder"; concurrent use would repeat it.
            concurrent = self.judge_concurrent_use(event, token_state, state, check_keys=bound is None)
            if concurrent is not None:
                findings.append(concurrent_use_finding(concurrent))
        request_id = request.id if request is not None else None
        if request_id is not None:
            duplicate = self._duplicate(event, ref, request_id, when, token_state, state)
            if duplicate is not None:
                findings.append(duplicate_request_finding(duplicate))
        return findings

    def judge_concurrent_use(
        self, event: CanonicalEvent, token_state: TokenState, state: StateStore, check_keys: bool = True
    ) -> ConcurrentUse | None:
        """File this accepted use in the token's timeline and judge it (``detectors.concurrency``):
        the facts of two holders, or None for one holder (roaming is counted on the timeline).

        A token gets a timeline only once it changed network: until then its accepted
        uses (``token_state.accepted``, late ones included) are all from one place. Rejected
        requests, which anyone holding the token can make at will, are never filed."""
        ref = event.token
        assert ref is not None
        place = network_place(event.network)
        if place is None:
            return None  # no network known, or a provider's service acting for the user
        reach = 2 * self._concurrent
        timelines = self._timelines(state)
        timeline = _timeline_to_file(timelines.get(ref.id), token_state, event.event_id, event.epoch, place, reach)
        if timeline is None:
            return None
        current = Observation(event)  # built only now: most uses stop above
        runs, handover = insert(timeline.runs, current, place)
        if current.time < max(timeline.newest, runs[-1].last.time):  # late: judged among every use known
            runs_around = around(timeline.runs, token_state.accepted, current, reach)
            match = judge(runs_around, current, self._concurrent, self._max_speed, check_keys)
        else:
            match = judge(runs, current, self._concurrent, self._max_speed, check_keys)
        newest = max(timeline.newest, current.time)
        handovers = timeline.handovers + (1 if handover and match is None else 0)
        # Re-inserted last: kept in update order for expiry.
        timelines.put_last(ref.id, Timeline(trim(runs, newest - reach), handovers, newest))
        timelines.evict_oldest(self._max_timelines)
        if match is None:
            return None
        return ConcurrentUse(event, token_state, match, handovers, self._concurrent)

    def _timelines(self, state: StateStore) -> Table[str, Timeline]:
        return state.table(self.name, "timelines", TIMELINE)

    # -- duplicate request ----------------------------------------------------------
    def _duplicate(
        self, event: CanonicalEvent, ref: TokenRef, request_id: str, when: float,
        token_state: TokenState | None, state: StateStore,
    ) -> DuplicateRequest | None:
        """Whether this accepted use repeats a request id the token used within the duplicate
        window (the facts, or None), filing the id when it is new or its window has passed."""
        # Keyed by a stable hash of (token, request id): a dict entry of ints and floats
        # instead of two strings per request; kept in arrival order for expiry.
        requests = self._requests(state)
        key = stable_hash(ref.id, request_id)
        seen = requests.get(key)
        if seen is not None and seen.event_id != event.event_id and abs(when - seen.first_seen) <= self._dup_window:
            accepted = token_state.accepted if token_state is not None else ()
            return DuplicateRequest(event, request_id, seen, _use_of(accepted, seen.event_id), token_state)
        if seen is None or abs(when - seen.first_seen) > self._dup_window:
            requests.put_last(key, SeenRequest(when, event.event_id, event.source))
            requests.evict_oldest(self._cap)
        return None


def _timeline_to_file(
    timeline: Timeline | None, token_state: TokenState, event_id: str, when: float, place: str, reach: float
) -> Timeline | None:
    """The timeline the use ``event_id`` at ``when`` goes into: the token's, or one seeded from its
    recent uses when one of them, within ``reach``, came from another place; None when there is
    nothing to judge (one place so far, or the use filed already)."""
    if timeline is None:
        for use in token_state.accepted:
            if use.event_id != event_id and abs(use.time - when) <= reach and place_of(use) not in (None, place):
                break
        else:
            return None
        uses = [u for u in token_state.accepted if u.event_id != event_id]
        return Timeline(seed(uses, when - reach), 0, when)
    if any(event_id in (run.first.event_id, run.last.event_id) for run in timeline.runs):
        return None  # the same event again
    return timeline


def concurrent_use_finding(found: ConcurrentUse) -> Finding:
    """``found`` as a ``concurrent_use`` alert: the uses that show two holders as evidence."""
    event, token_state, match = found.event, found.token_state, found.match
    ref = event.token
    assert ref is not None
    return Finding(
        rule=CONCURRENT_USE, event=event, key=ref.id,
        summary=concurrency_summary(token_label(ref, token_state), ref.id, match, found.window_s),
        evidence=tuple(use.evidence(ref.id) for use in match.uses),
        family_id=token_state.family_id or ref.family_id,
        details={"gap_s": round(match.gap_s, 3), "difference": match.reason,
                 "device_drift": ",".join(match.drift) or None, "handovers_before": found.handovers,
                 "speed_kmh": None if match.speed_kmh is None else round(min(match.speed_kmh, 1e9), 1)},
    )


def refresh_reuse_finding(found: RefreshReuse) -> Finding:
    """``found`` as a ``refresh_reuse`` alert: both redemptions, oldest first, as evidence."""
    event, redeemed, rotation, current, family = found.event, found.redeemed, found.rotation, found.current, found.family_id
    ref = event.token
    assert ref is not None
    gap = found.gap_s
    why = ""
    if found.not_a_retry is not None:
        why = f" (inside the {describe.duration(found.grace_s)} grace period, but {_not_a_retry(found)})"
    first, second = (rotation, current) if rotation.time <= current.time else (current, rotation)
    failed = event.outcome.result == "failure"
    outcome = "; the IdP rejected it, so someone still holds the old token" if failed else ""
    summary = (
        f"Refresh token redeemed again {describe.duration(gap)} after it was rotated{why}, "
        f"from {describe.place(second)} vs {describe.place(first)}{outcome} "
        f"(token {redeemed}{f', family {family}' if family else ''})."
    )
    return Finding(
        rule=REFRESH_REUSE,
        event=event,
        key=redeemed,
        summary=summary,
        evidence=(first.evidence(redeemed), second.evidence(redeemed)),
        family_id=family,
        token_id=redeemed,
        details={"refresh_token_id": redeemed, "minted_token_id": ref.id if ref.id != redeemed else None,
                 "gap_s": round(gap, 3), "inside_grace": gap <= found.grace_s,
                 "reuse_outcome": event.outcome.result},
    )


def _not_a_retry(found: RefreshReuse) -> str:
    """Why two redemptions inside the grace period are not one client retrying."""
    if found.not_a_retry == "client":
        return f"from client {found.current.client_id} vs {found.rotation.client_id}"
    return "from another network"


def reported_reuse_finding(found: ReportedReuse) -> Finding:
    """``found`` as a ``refresh_reuse`` alert keyed by the token, or by its family when the
    report names no token."""
    event, family = found.event, found.family_id
    ref = event.token
    reporter = _SOURCE_LABEL.get(event.source, event.source)
    ids = ", ".join(part for part in (f"token {ref.id}" if ref is not None else None,
                                      f"family {family}" if family else None) if part)
    summary = f"Refresh token reuse reported by {reporter}, from {describe.place(event)}{f' ({ids})' if ids else ''}."
    key = ref.id if ref is not None else f"family:{family}"
    return Finding(
        rule=REFRESH_REUSE, event=event, key=key, summary=summary,
        evidence=describe.evidence_with_issue(event, found.token_state), family_id=family,
        details={"refresh_token_id": ref.id if ref is not None else None, "reported_by": event.source},
    )


def duplicate_request_finding(found: DuplicateRequest) -> Finding:
    """``found`` as a ``duplicate_request`` alert: both acceptances, oldest first, as evidence
    (the first rebuilt from the duplicate window when state no longer has it)."""
    event, request_id, seen, earlier, token_state = (
        found.event, found.request_id, found.first, found.earlier, found.token_state)
    ref = event.token
    assert ref is not None
    when, first_time = event.epoch, seen.first_seen
    last = describe.place(event)
    if earlier is not None:
        first_item = earlier.evidence(ref.id)
        before = describe.place(earlier)
        where = f", both times from {last}" if before == last else f", from {before} and {last}"
    else:
        first_item = EvidenceItem(
            event_id=seen.event_id, kind=EventKind.USED.value,
            time=datetime.fromtimestamp(first_time, tz=timezone.utc), source=seen.source,
            token_id=ref.id, request_id=request_id, outcome="success",
        )
        where = f", the second time from {last}"
    summary = (
        f"Request accepted twice, {describe.duration(when - first_time)} apart{where} "
        f"(request {request_id}, {token_label(ref, token_state).lower()} {ref.id})."
    )
    evidence = sorted((first_item, EvidenceItem.of(event)), key=lambda item: item.time)
    return Finding(
        rule=DUPLICATE_REQUEST, event=event, key=ref.id, summary=summary, evidence=tuple(evidence),
        family_id=(token_state.family_id if token_state is not None else None) or ref.family_id,
        details={"request_id": request_id, "first_event_id": seen.event_id,
                 "gap_s": round(abs(when - first_time), 3)},
    )


def _use_of(accepted: Sequence[Observation], event_id: str) -> Observation | None:
    """The accepted use ``event_id`` among a token's recent ones, or None."""
    return next((use for use in accepted if use.event_id == event_id), None)


def _other_client_context(a: Observation, b: Observation) -> str | None:
    """Why two redemptions cannot be one client retrying ("client" or "network"), or None
    if they can."""
    if a.client_id and b.client_id and a.client_id != b.client_id:
        return "client"
    if a.ip and b.ip and a.ip != b.ip and not _same_network(a, b):
        return "network"
    return None


def _same_network(a: Observation, b: Observation) -> bool:
    """Same allowlisted egress or same ASN; an unknown network cannot prove a difference."""
    if a.egress is not None and a.egress == b.egress:
        return True
    return a.net is None or b.net is None or a.net == b.net


def _first_seen(request: SeenRequest) -> float:
    return request.first_seen


def _newest(timeline: Timeline) -> float:
    return timeline.newest
