"""Binding checks of the replay detector: is a use of a bound token made by its holder?

A token can be bound to a proof-of-possession key (RFC 9449 DPoP, RFC 8705 mTLS),
to the cloud it was issued in (network binding), or to the pod it was issued to
(Kubernetes). ``BindingCheck.check`` compares one accepted use with that binding;
``ReplayDetector`` calls it for every successful use of a bound token and reports
what it returns under ``replay.binding_mismatch``, whose metadata stays with the
replay rules. Not a detector of its own: it is not registered in ``DETECTORS``.

Deciding and wording are apart: ``BindingCheck.judge`` returns frozen facts (``ProofMismatch``,
``OutsideProvider``, ``PodMismatch``); ``mismatch_finding`` words them as a finding.

Pod addresses are learned per pod (trust on first use) and kept as
:class:`PodAddress` rows in the replay detector's ``pods`` table, in last-use
order, so they are written to the changelog with the rest of the state;
``BindingCheck.expire`` forgets them when their pod has been quiet long enough.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Protocol, TypeAlias

from detectors import describe
from detectors.base import Finding, RuleMeta
from detectors.state import StateStore, TokenState
from detectors.tables import Table, register_codec
from schemas.alerts import EvidenceItem
from schemas.events import Binding, CanonicalEvent, EventKind, Network, TokenRef

_PROOF_METHODS = ("dpop", "mtls")  # a bound token of these methods must prove the key on every request
_METHOD_LABEL = {"dpop": "DPoP key", "mtls": "mTLS certificate", "pod": "pod", "network": "network"}
# Credentials issued to a cloud service and used away from it: the technique is
# named in the alert details (a stolen DPoP key is not a metadata-API theft).
_METADATA_API = "T1552.005 Unsecured Credentials: Cloud Instance Metadata API"
_PROVIDER_SERVICE = {"aws": "an AWS service", "gcp": "a Google Cloud service", "azure": "an Azure service"}
_TYPE_LABEL = {
    "access": "Access token",
    "refresh": "Refresh token",
    "id": "ID token",
    "temporary_credential": "Temporary credential",
    "service_account": "Service-account token",
}


@dataclass(frozen=True, slots=True)
class PodAddress:
    """A pod's address as learned from its first successful use (trust on first use), with
    that use to cite as evidence once the token's own state has forgotten it."""

    address: str
    first_use_time: float
    first_event_id: str
    first_token_id: str
    first_source: str
    last_use_time: float  # rows are kept in this order: expiry forgets the quiet pods first


def _encode_pod(pod: PodAddress) -> list[Any]:
    return [pod.address, pod.first_use_time, pod.first_event_id, pod.first_token_id, pod.first_source,
            pod.last_use_time]


def _decode_pod(values: Any) -> PodAddress:
    if type(values) is not list:
        raise TypeError("pod address must be a list")
    address, first_time, event_id, token_id, source, last_time = values
    if not all(type(text) is str for text in (address, event_id, token_id, source)):
        raise TypeError("pod address: address and first-use ids must be strings")
    if type(first_time) not in (int, float) or type(last_time) not in (int, float):
        raise TypeError("pod address: times must be numbers")
    return PodAddress(address, float(first_time), event_id, token_id, source, float(last_time))


POD_ADDRESS = register_codec("binding.pod_address", _encode_pod, _decode_pod)


@dataclass(frozen=True, slots=True)
class ProofMismatch:
    """A use of a key-bound token proving another key or none (or one whose request proved
    another pod or network than the token's): everything its alert says."""

    event: CanonicalEvent  # the accepted use
    ref: TokenRef
    token_state: TokenState | None  # what state knew of the token
    bound: str  # "method:value"
    proof: Binding | None  # what the request proved, None when nothing


@dataclass(frozen=True, slots=True)
class OutsideProvider:
    """A credential bound to a cloud provider used from outside it: everything its alert says."""

    event: CanonicalEvent
    ref: TokenRef
    token_state: TokenState | None
    provider: str  # as the binding names it
    used_in: str | None  # the provider the use came from, None for a non-cloud address


@dataclass(frozen=True, slots=True)
class PodMismatch:
    """A pod-bound token used from neither its pod's learned address nor its node's."""

    event: CanonicalEvent
    ref: TokenRef
    token_state: TokenState | None
    uid: str  # the pod's
    pod: PodAddress  # the address learned for it, and the use it was learned from
    node: str | None  # the address that requested the token, when its issue was seen


Mismatch: TypeAlias = ProofMismatch | OutsideProvider | PodMismatch


class BindingSettings(Protocol):
    """The options a binding check reads; ``ReplayConfig`` declares them with their defaults."""

    @property
    def alert_on_missing_proof(self) -> bool: ...
    @property
    def cloud_providers(self) -> tuple[str, ...]: ...
    @property
    def pod_address_ttl_s(self) -> float: ...
    @property
    def max_tracked_pods(self) -> int: ...


class BindingCheck:
    """Judges uses of bound tokens; findings are raised under ``rule``, pod
    addresses are kept in the ``pods`` table of the detector named ``namespace``."""

    def __init__(self, settings: BindingSettings, rule: RuleMeta, namespace: str) -> None:
        self.rule = rule
        self.namespace = namespace
        # Plain values: read on every bound use.
        self._missing_proof = settings.alert_on_missing_proof
        self._providers = frozenset(name.lower() for name in settings.cloud_providers)
        self._pod_ttl = settings.pod_address_ttl_s
        self._pod_cap = settings.max_tracked_pods

    def check(
        self, event: CanonicalEvent, ref: TokenRef, token_state: TokenState | None, bound: str, proof: Binding | None,
        state: StateStore,
    ) -> Finding | None:
        """``judge``, worded as a finding under ``rule`` (``mismatch_finding``)."""
        mismatch = self.judge(event, ref, token_state, bound, proof, state)
        return mismatch_finding(self.rule, mismatch) if mismatch is not None else None

    def judge(
        self, event: CanonicalEvent, ref: TokenRef, token_state: TokenState | None, bound: str, proof: Binding | None,
        state: StateStore,
    ) -> Mismatch | None:
        """The facts when the successful use ``event`` of ``ref`` (bound to ``bound``,
        "method:value") was not made by the holder: a wrong or missing proof, a use
        from outside the bound cloud, or from an address other than its pod's. Learns
        pod addresses as it goes (``_pod_address``); builds facts only for a mismatch."""
        method, _, value = bound.partition(":")
        if method in _PROOF_METHODS:
            if proof is None and not self._missing_proof:
                return None
            if proof is not None and proof.method == method and proof.value == value:
                return None
        elif proof is None or proof.method != method or proof.value == value:
            # No contradicting pod/network proof at the request: judge by the caller's address.
            if method == "pod":
                return self._pod_address(event, ref, token_state, value, state)
            if method == "network" and (proof is None or proof.method != method) and value.lower() in self._providers:
                return _outside_provider(event, ref, token_state, value)
            return None
        return ProofMismatch(event, ref, token_state, bound, proof)

    def expire(self, watermark: float, state: StateStore) -> None:
        """Forget pod addresses once their pod has been quiet for the pod TTL."""
        self._pods(state).forget_before(watermark - self._pod_ttl, _last_use)

    def _pods(self, state: StateStore) -> Table[str, PodAddress]:
        return state.table(self.namespace, "pods", POD_ADDRESS)

    def _pod_address(
        self, event: CanonicalEvent, ref: TokenRef, token_state: TokenState | None, uid: str, state: StateStore
    ) -> PodMismatch | None:
        """A pod-bound token must be used from its pod's address, learned from the first successful
        use (trust on first use, per pod uid: the kubelet's rotated tokens share it), or from the
        address that requested the token — the node's, which is also what hostNetwork pods and
        SNAT-ed pod traffic show."""
        ip = event.network.ip
        if not ip:
            return None
        node = token_state.issue.ip if token_state is not None and token_state.issue is not None else None
        pods = self._pods(state)
        seen = pods.get(uid)
        when = event.epoch
        if seen is None:
            if ip != node:  # the node's address teaches nothing about the pod's
                pods.put(uid, PodAddress(ip, when, event.event_id, ref.id, event.source, when))
                pods.evict_oldest(self._pod_cap)
            return None
        if ip == seen.address:
            if when > seen.last_use_time:  # keep the table in last-use order for expiry
                pods.put_last(uid, replace(seen, last_use_time=when))
            return None
        if ip == node:
            return None
        return PodMismatch(event, ref, token_state, uid, seen, node)


def _outside_provider(
    event: CanonicalEvent, ref: TokenRef, token_state: TokenState | None, provider: str
) -> OutsideProvider | None:
    """Credentials issued to a cloud service (an EC2 instance profile) used from outside that
    cloud: GuardDuty's InstanceCredentialExfiltration.OutsideAWS. A non-cloud address counts
    as outside; an address that was not recorded at all cannot be judged.

    The binding is known from the issuance when it was seen, else from the use record
    itself (CloudTrail marks credentials the instance metadata service delivered), so a
    lone use from outside is judged too."""
    net = event.network
    if net.ip is None and net.service is None:
        return None
    used_in = _provider_of(net)
    if used_in == provider.lower():
        return None
    return OutsideProvider(event, ref, token_state, provider, used_in)


# -- wording: the facts above as a finding; decides nothing ----------------------------
def mismatch_finding(rule: RuleMeta, mismatch: Mismatch) -> Finding:
    """``mismatch`` as a finding of ``rule``: its summary sentence, evidence and details."""
    event, ref, token_state = mismatch.event, mismatch.ref, mismatch.token_state
    details: dict[str, str | None]
    if isinstance(mismatch, ProofMismatch):
        summary, evidence = proof_summary(mismatch), describe.evidence_with_issue(event, token_state)
        proof = mismatch.proof
        details = {"bound": mismatch.bound, "proof": f"{proof.method}:{proof.value}" if proof else None}
    elif isinstance(mismatch, OutsideProvider):
        summary, evidence = outside_provider_summary(mismatch), describe.evidence_with_issue(event, token_state)
        details = {"bound": f"network:{mismatch.provider}", "used_from_provider": mismatch.used_in,
                   "related_technique": _METADATA_API}
    else:
        summary, evidence = pod_summary(mismatch), _pod_evidence(mismatch)
        pod = mismatch.pod
        details = {"bound": f"pod:{mismatch.uid}", "pod_address": pod.address, "node_address": mismatch.node,
                   "pod_address_learned_from": pod.first_event_id}
    return Finding(
        rule=rule, event=event, key=ref.id, summary=summary, evidence=evidence,
        family_id=(token_state.family_id if token_state is not None else None) or ref.family_id,
        details=details,
    )


def proof_summary(mismatch: ProofMismatch) -> str:
    """The bound method and value, what the request proved instead (or that it proved nothing)."""
    ref, proof = mismatch.ref, mismatch.proof
    method, _, value = mismatch.bound.partition(":")
    label = _METHOD_LABEL.get(method, method)
    if proof is None:
        how = f"without proving that {label}"
    elif proof.method != method:
        how = f"with a {_METHOD_LABEL.get(proof.method, proof.method)} ({proof.value}) instead"
    else:
        how = f"with {label} {proof.value}"
    return (
        f"{token_label(ref, mismatch.token_state)} bound to {label} {value} was accepted {how}, "
        f"from {describe.place(mismatch.event)} (token {ref.id})."
    )


def outside_provider_summary(mismatch: OutsideProvider) -> str:
    """Who the credential was issued to, and where it was used instead."""
    ref, token_state, provider, used_in = mismatch.ref, mismatch.token_state, mismatch.provider, mismatch.used_in
    holder = _PROVIDER_SERVICE.get(provider.lower(), f"a {provider} service")
    if ref.type.value == "temporary_credential" or (token_state is not None and token_state.type == "temporary_credential"):
        what, verb, noun = "Temporary credentials", "were", "credentials"
    else:
        what, verb, noun = token_label(ref, token_state), "was", "token"
    where = f"a {used_in} address outside {provider}" if used_in else f"outside {provider}"
    return (
        f"{what} issued to {holder} (bound to {provider}) {verb} used from {describe.place(mismatch.event)}, "
        f"{where} — the credential exfiltration pattern ({noun} {ref.id})."
    )


def pod_summary(mismatch: PodMismatch) -> str:
    """The address used, against the pod's learned address and the node's."""
    ref, node = mismatch.ref, mismatch.node
    return (
        f"Pod-bound {token_label(ref, mismatch.token_state).lower()} used from {describe.place(mismatch.event)}, "
        f"not its pod's address {mismatch.pod.address}{f' or its node address {node}' if node else ''} "
        f"(token {ref.id}, pod {mismatch.uid})."
    )


def _pod_evidence(mismatch: PodMismatch) -> tuple[EvidenceItem, ...]:
    """The use, the token's issue when seen, and the use the pod's address was learned from
    (from the token's state while it remembers that use, else from the pod's row), in time order."""
    event, ref, token_state, pod = mismatch.event, mismatch.ref, mismatch.token_state, mismatch.pod
    first_id = pod.first_event_id
    earlier = next((u for u in token_state.accepted if u.event_id == first_id), None) if token_state is not None else None
    first_use = earlier.evidence(ref.id) if earlier is not None else EvidenceItem(
        event_id=first_id, kind=EventKind.USED.value,
        time=datetime.fromtimestamp(pod.first_use_time, tz=timezone.utc),
        source=pod.first_source, token_id=pod.first_token_id, ip=pod.address, outcome="success",
    )
    return tuple(sorted((*describe.evidence_with_issue(event, token_state), first_use), key=lambda item: item.time))


def _provider_of(net: Network) -> str | None:
    """The cloud provider a request came from: the enriched address's provider, "aws" for
    AWS services acting on the credential's behalf, None for anything else."""
    if net.provider:
        return net.provider.lower()
    service = net.service
    if service:
        service = service.lower()
        # CloudTrail's sourceIPAddress for calls made by AWS services: "ec2.amazonaws.com", "AWS Internal".
        return "aws" if service.endswith(".amazonaws.com") or service == "aws internal" else None
    return None


def token_label(ref: TokenRef, token_state: TokenState | None) -> str:
    """How a summary names the token: by its type, or the type learned at issuance."""
    kind = ref.type.value
    if kind == "unknown" and token_state is not None:
        kind = token_state.type
    return _TYPE_LABEL.get(kind, "Token")


def _last_use(pod: PodAddress) -> float:
    return pod.last_use_time
