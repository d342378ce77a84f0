"""Replay: one token, two holders.

A bearer token has exactly one legitimate holder. Four rules look for a second
one: a rotated refresh token redeemed again (RFC 9700 §4.14.2), one token used
from two networks at once, a proof-of-possession key that does not match the
token's binding (RFC 9449 DPoP, RFC 8705 mTLS), and one request id accepted
twice. Every comparison is by absolute event-time distance, so an event that
arrives late is judged exactly like one that arrived on time.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import Field

from detectors import describe
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.state import network_key, Observation, StateStore, TokenState
from schemas.alerts import EvidenceItem
from schemas.events import Binding, CanonicalEvent, EventKind, TokenRef

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
        "or inside it from another client or network: two parties hold it (RFC 9700 §4.14.2)."
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
        "The same token was accepted from two networks (different ASN, not one allowlisted "
        "egress) or two device keys within a short window; one holder cannot be in both."
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
        "A request was accepted with a key (DPoP/mTLS), pod or network other than the one the "
        "token is bound to, or a DPoP/mTLS-bound token was accepted without any proof."
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

_PROOF_METHODS = ("dpop", "mtls")  # a bound token of these methods must prove the key on every request
_METHOD_LABEL = {"dpop": "DPoP key", "mtls": "mTLS certificate", "pod": "pod", "network": "network"}
_TYPE_LABEL = {
    "access": "Access token",
    "refresh": "Refresh token",
    "id": "ID token",
    "temporary_credential": "Temporary credential",
    "service_account": "Service-account token",
}


class ReplayConfig(DetectorConfig):
    refresh_grace_s: float = Field(
        default=30.0, ge=0,
        description="A rotated refresh token redeemed again within this many seconds, from the same "
        "client and network, is a client retry (lost response), not a replay",
    )
    concurrent_window_s: float = Field(
        default=60.0, ge=0,
        description="Two successful uses of one token from different contexts closer than this are concurrent",
    )
    duplicate_request_window_s: float = Field(
        default=300.0, ge=0,
        description="How long an accepted request id is remembered per token to catch a replayed request",
    )
    alert_on_missing_proof: bool = Field(
        default=True,
        description="Alert when a DPoP/mTLS-bound token is accepted with no proof; turn off for resource-server "
        "logs that do not record the proven key (a wrong key is still an alert)",
    )
    max_tracked_requests: int = Field(
        default=1_000_000, ge=1,
        description="Memory cap on remembered (token, request id) pairs; the oldest are forgotten first",
    )


class ReplayDetector(Detector):
    name: ClassVar[str] = "replay"
    rules: ClassVar[tuple[RuleMeta, ...]] = (REFRESH_REUSE, CONCURRENT_USE, BINDING_MISMATCH, DUPLICATE_REQUEST)
    Config: ClassVar[type[DetectorConfig]] = ReplayConfig

    def __init__(self, config: DetectorConfig | None = None) -> None:
        if config is not None and not isinstance(config, ReplayConfig):
            config = ReplayConfig.model_validate(config.model_dump())
        super().__init__(config)
        cfg: ReplayConfig = self.config  # type: ignore[assignment]
        self.cfg = cfg
        # Plain floats: read on every event.
        self._grace = cfg.refresh_grace_s
        self._concurrent = cfg.concurrent_window_s
        self._dup_window = cfg.duplicate_request_window_s
        self._cap = cfg.max_tracked_requests

    # -- dispatch --------------------------------------------------------------
    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind = event.kind
        if kind is EventKind.USED:
            if event.token is None or event.outcome.result != "success":
                return []  # a rejected request proves nothing was accepted twice
            return self._used(event, event.token, state)
        if kind is EventKind.REFRESHED and event.token is not None:
            return self._refreshed(event, event.token, state)
        return []

    def expire(self, watermark: float, state: StateStore) -> None:
        """Forget request ids once event time is past their duplicate window."""
        ns = state.detector_state.get(self.name)
        if not ns:
            return
        requests: dict[int, tuple[float, str, str]] = ns["requests"]
        horizon = watermark - self._dup_window
        while requests:
            key = next(iter(requests))  # insertion order is arrival order: oldest first
            if requests[key][0] >= horizon:
                break
            del requests[key]

    # -- refresh reuse -----------------------------------------------------------
    def _refreshed(self, event: CanonicalEvent, ref: TokenRef, state: StateStore) -> list[Finding]:
        failed = event.outcome.result == "failure"
        # A failed redemption may name only the presented token (nothing new was minted).
        redeemed = ref.parent_id or (ref.id if failed else None)
        known = state.tokens.get(redeemed) if redeemed else None
        rotation = known.rotation if known is not None else None
        if rotation is None or not rotation.success or rotation.event_id == event.event_id:
            return []
        assert redeemed is not None and known is not None
        current = Observation(event)
        gap = abs(current.time - rotation.time)
        why = ""
        if gap <= self._grace:
            other = _other_client_context(rotation, current)
            if other is None:
                return []  # a retry of the same client after a lost response
            why = f" (inside the {describe.duration(self._grace)} grace period, but {other})"
        first, second = (rotation, current) if rotation.time <= current.time else (current, rotation)
        family = known.family_id or ref.family_id
        outcome = "; the IdP rejected it, so someone still holds the old token" if failed else ""
        summary = (
            f"Refresh token {redeemed}{f' of family {family}' if family else ''} was redeemed again "
            f"{describe.duration(gap)} after it was rotated{why}, "
            f"from {describe.place(second)} vs {describe.place(first)}{outcome}"
        )
        return [Finding(
            rule=REFRESH_REUSE,
            event=event,
            key=redeemed,
            summary=summary,
            evidence=(first.evidence(redeemed), second.evidence(redeemed)),
            family_id=family,
            token_id=redeemed,
            details={"refresh_token_id": redeemed, "minted_token_id": ref.id if ref.id != redeemed else None,
                     "gap_s": round(gap, 3), "inside_grace": gap <= self._grace,
                     "reuse_outcome": event.outcome.result},
        )]

    # -- uses ------------------------------------------------------------------
    def _used(self, event: CanonicalEvent, ref: TokenRef, state: StateStore) -> list[Finding]:
        known = state.tokens.get(ref.id)
        request = event.request
        proof = request.proof if request is not None else None
        bound = known.binding if known is not None else None
        if bound is None and ref.binding is not None:
            bound = f"{ref.binding.method}:{ref.binding.value}"
        when = event.epoch
        findings: list[Finding] = []
        if bound is not None:
            mismatch = self._binding(event, ref, known, bound, proof)
            if mismatch is not None:
                findings.append(mismatch)
        if known is not None and known.uses:
            concurrent = self._concurrent_use(event, ref, known, when, check_keys=bound is None)
            if concurrent is not None:
                findings.append(concurrent)
        if request is not None and request.id is not None:
            duplicate = self._duplicate(event, ref, request.id, when, known, state)
            if duplicate is not None:
                findings.append(duplicate)
        return findings

    def _binding(
        self, event: CanonicalEvent, ref: TokenRef, known: TokenState | None, bound: str, proof: Binding | None
    ) -> Finding | None:
        method, _, value = bound.partition(":")
        if method in _PROOF_METHODS:
            if proof is None and not self.cfg.alert_on_missing_proof:
                return None
            if proof is not None and proof.method == method and proof.value == value:
                return None
        elif proof is None or proof.method != method or proof.value == value:
            return None  # pod/network evidence comes with the request or not at all
        label = _METHOD_LABEL.get(method, method)
        if proof is None:
            how = f"without proving that {label}"
        elif proof.method != method:
            how = f"with a {_METHOD_LABEL.get(proof.method, proof.method)} ({proof.value}) instead"
        else:
            how = f"with {label} {proof.value}"
        summary = (
            f"{_label(ref, known)} {ref.id} is bound to {label} {value} but was accepted {how}, "
            f"from {describe.place(event)}"
        )
        return Finding(
            rule=BINDING_MISMATCH, event=event, key=ref.id, summary=summary,
            evidence=describe.evidence_with_issue(event, known),
            family_id=(known.family_id if known is not None else None) or ref.family_id,
            details={"bound": bound, "proof": f"{proof.method}:{proof.value}" if proof else None},
        )

    def _concurrent_use(
        self, event: CanonicalEvent, ref: TokenRef, known: TokenState, when: float, check_keys: bool
    ) -> Finding | None:
        """Compare with recent successful uses on both sides of ``when`` (late events too).

        Device keys are compared only for unbound tokens: for a bound token a foreign key
        is a binding mismatch, which says more.
        """
        window = self._concurrent
        net = event.network
        egress = net.egress
        as_net = network_key(net.as_org, net.asn)
        proof = event.request.proof if event.request is not None else None
        key = f"{proof.method}:{proof.value}" if proof is not None and check_keys else None
        best: Observation | None = None
        best_gap = 0.0
        reason = ""
        for use in known.uses:
            gap = abs(use.time - when)
            if gap > window or not use.success or use.event_id == event.event_id:
                continue
            if best is not None and gap >= best_gap:
                continue
            if not (egress is not None and egress == use.egress) and as_net and use.net and as_net != use.net:
                best, best_gap, reason = use, gap, "network"
            elif key is not None and use.binding is not None and use.binding != key:
                best, best_gap, reason = use, gap, "key"
        if best is None:
            return None
        current = Observation(event)
        first, second = (best, current) if best.time <= current.time else (current, best)
        keys = f" with {second.binding} vs {first.binding}" if reason == "key" else ""
        summary = (
            f"{_label(ref, known)} {ref.id} was accepted from {describe.place(second)}{keys} "
            f"{describe.duration(best_gap)} after a use from {describe.place(first)}; "
            "one holder cannot be in both places"
        )
        return Finding(
            rule=CONCURRENT_USE, event=event, key=ref.id, summary=summary,
            evidence=(first.evidence(ref.id), second.evidence(ref.id)),
            family_id=known.family_id or ref.family_id,
            details={"gap_s": round(best_gap, 3), "difference": reason},
        )

    # -- duplicate request ----------------------------------------------------------
    def _duplicate(
        self, event: CanonicalEvent, ref: TokenRef, request_id: str, when: float,
        known: TokenState | None, state: StateStore,
    ) -> Finding | None:
        ns = state.detector_state.get(self.name)
        if ns is None:
            ns = state.namespace(self.name)
            ns["requests"] = {}
        # Keyed by a hash of (token, request id): a dict entry of ints and floats
        # instead of two strings per request; kept in arrival order for expiry.
        requests: dict[int, tuple[float, str, str]] = ns["requests"]
        key = hash((ref.id, request_id))
        seen = requests.get(key)
        if seen is not None and seen[1] != event.event_id and abs(when - seen[0]) <= self._dup_window:
            return self._duplicate_finding(event, ref, request_id, when, seen, known)
        if seen is None or abs(when - seen[0]) > self._dup_window:
            requests.pop(key, None)
            requests[key] = (when, event.event_id, event.source)
            while len(requests) > self._cap:
                del requests[next(iter(requests))]
        return None

    def _duplicate_finding(
        self, event: CanonicalEvent, ref: TokenRef, request_id: str, when: float,
        seen: tuple[float, str, str], known: TokenState | None,
    ) -> Finding:
        first_time, first_id, first_source = seen
        earlier = next((u for u in known.uses if u.event_id == first_id), None) if known is not None else None
        last = describe.place(event)
        if earlier is not None:
            first_item = earlier.evidence(ref.id)
            before = describe.place(earlier)
            where = f", both times from {last}" if before == last else f", from {before} and {last}"
        else:
            first_item = EvidenceItem(
                event_id=first_id, kind=EventKind.USED.value,
                time=datetime.fromtimestamp(first_time, tz=timezone.utc), source=first_source,
                token_id=ref.id, request_id=request_id, outcome="success",
            )
            where = f", the second time from {last}"
        summary = (
            f"Request {request_id} with {_label(ref, known).lower()} {ref.id} was accepted twice, "
            f"{describe.duration(when - first_time)} apart{where}"
        )
        evidence = sorted((first_item, EvidenceItem.of(event)), key=lambda item: item.time)
        return Finding(
            rule=DUPLICATE_REQUEST, event=event, key=ref.id, summary=summary, evidence=tuple(evidence),
            family_id=(known.family_id if known is not None else None) or ref.family_id,
            details={"request_id": request_id, "first_event_id": first_id, "gap_s": round(abs(when - first_time), 3)},
        )


def _other_client_context(a: Observation, b: Observation) -> str | None:
    """Why two redemptions cannot be one client retrying, or None if they can."""
    if a.client_id and b.client_id and a.client_id != b.client_id:
        return f"from client {b.client_id} vs {a.client_id}"
    if a.ip and b.ip and a.ip != b.ip and not _same_network(a, b):
        return "from another network"
    return None


def _same_network(a: Observation, b: Observation) -> bool:
    """Same allowlisted egress or same ASN; an unknown network cannot prove a difference."""
    if a.egress is not None and a.egress == b.egress:
        return True
    return a.net is None or b.net is None or a.net == b.net


def _label(ref: TokenRef, known: TokenState | None) -> str:
    kind = ref.type.value
    if kind == "unknown" and known is not None:
        kind = known.type
    return _TYPE_LABEL.get(kind, "Token")

