"""Binding mismatches, deciding and wording apart (issue 15, "Decide, then describe"):
``BindingCheck.judge`` returns frozen facts, ``mismatch_finding`` and the summary functions
word hand-built facts, exactly."""

from __future__ import annotations

from datetime import datetime, timezone

from detectors.binding import (
    BindingCheck,
    OutsideProvider,
    PodAddress,
    PodMismatch,
    ProofMismatch,
    mismatch_finding,
    outside_provider_summary,
    pod_summary,
    proof_summary,
)
from detectors.replay import BINDING_MISMATCH
from detectors.replay_config import ReplayConfig
from detectors.state import StateStore
from schemas.alerts import EvidenceItem
from schemas.events import Binding, CanonicalEvent, Network, TokenRef
from tests.factories import SINGAPORE_VPS, T0, Place, event

KEY_A, KEY_B = Binding(method="dpop", value="jkt-AAAA"), Binding(method="dpop", value="jkt-BBBB")
CERT = Binding(method="mtls", value="x5t-CCCC")
ON_AWS = Binding(method="network", value="aws")
AKID = "ASIAQEXAMPLE7KEY"
AWS_FRANKFURT = Place("3.120.15.20", "DE", "Frankfurt", 50.11, 8.68, 16509, "AMAZON-02", hosting=True)
POD_UID = "9f1c2d3e-pod"
POD_IP, OTHER_IP, NODE_IP = "10.20.3.41", "10.99.0.5", "10.0.0.7"
START = T0.timestamp()


def _ref(ev: CanonicalEvent) -> TokenRef:
    assert ev.token is not None
    return ev.token


def _judge(ev: CanonicalEvent, bound: str, proof: Binding | None, state: StateStore | None = None,
           settings: ReplayConfig | None = None) -> object:
    check = BindingCheck(settings or ReplayConfig(), BINDING_MISMATCH, "replay")
    return check.judge(ev, _ref(ev), None, bound, proof, state or StateStore())


def _proof_use(proof: Binding | None) -> CanonicalEvent:
    return event("used", 10, token="at-1", family="fam-1", bound=KEY_A, proof=proof)


def _cloud_use(place: Place, token_type: str = "temporary_credential") -> CanonicalEvent:
    return event("used", 600, token=AKID, token_type=token_type, bound=ON_AWS, place=place, source="cloudtrail")


def _pod_use(t: float, ip: str) -> CanonicalEvent:
    ev = event("used", t, token="sa-tok-1", token_type="service_account", place=None, source="k8s_audit",
               bound=Binding(method="pod", value=POD_UID))
    return ev.model_copy(update={"network": Network(ip=ip)})


# -- deciding ----------------------------------------------------------------------------
def test_judge_returns_the_facts_of_a_wrong_or_missing_proof() -> None:
    wrong = _proof_use(KEY_B)
    assert _judge(wrong, "dpop:jkt-AAAA", KEY_B) == ProofMismatch(wrong, _ref(wrong), None, "dpop:jkt-AAAA", KEY_B)
    missing = _proof_use(None)
    assert _judge(missing, "dpop:jkt-AAAA", None) == ProofMismatch(missing, _ref(missing), None, "dpop:jkt-AAAA", None)


def test_judge_finds_nothing_in_the_benign_twins_of_a_proof() -> None:
    """The right key; no proof where resource servers do not log it."""
    assert _judge(_proof_use(KEY_A), "dpop:jkt-AAAA", KEY_A) is None
    quiet = ReplayConfig(alert_on_missing_proof=False)
    assert _judge(_proof_use(None), "dpop:jkt-AAAA", None, settings=quiet) is None


def test_judge_returns_the_facts_of_a_use_outside_the_bound_cloud() -> None:
    stolen = _cloud_use(SINGAPORE_VPS)
    assert _judge(stolen, "network:aws", None) == OutsideProvider(stolen, _ref(stolen), None, "aws", None)
    inside = _cloud_use(AWS_FRANKFURT).model_copy(update={"network": AWS_FRANKFURT.network().model_copy(
        update={"provider": "aws"})})
    assert _judge(inside, "network:aws", None) is None


def test_judge_learns_the_pod_address_then_returns_the_facts_of_another() -> None:
    state = StateStore()
    first = _pod_use(0, POD_IP)
    assert _judge(first, f"pod:{POD_UID}", None, state) is None  # trust on first use
    assert _judge(_pod_use(30, POD_IP), f"pod:{POD_UID}", None, state) is None
    other = _pod_use(60, OTHER_IP)
    learned = PodAddress(POD_IP, START, first.event_id, "sa-tok-1", "k8s_audit", START + 30)
    assert _judge(other, f"pod:{POD_UID}", None, state) == PodMismatch(other, _ref(other), None, POD_UID, learned, None)


# -- wording -----------------------------------------------------------------------------
def test_proof_mismatches_are_worded_exactly() -> None:
    wrong = _proof_use(KEY_B)
    facts = ProofMismatch(wrong, _ref(wrong), None, "dpop:jkt-AAAA", KEY_B)
    assert proof_summary(facts) == (
        "Access token bound to DPoP key jkt-AAAA was accepted with DPoP key jkt-BBBB, "
        "from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token at-1)."
    )
    assert proof_summary(ProofMismatch(wrong, _ref(wrong), None, "dpop:jkt-AAAA", None)) == (
        "Access token bound to DPoP key jkt-AAAA was accepted without proving that DPoP key, "
        "from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token at-1)."
    )
    assert proof_summary(ProofMismatch(wrong, _ref(wrong), None, "dpop:jkt-AAAA", CERT)) == (
        "Access token bound to DPoP key jkt-AAAA was accepted with a mTLS certificate (x5t-CCCC) instead, "
        "from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token at-1)."
    )
    finding = mismatch_finding(BINDING_MISMATCH, facts)
    assert finding.summary == proof_summary(facts)
    assert (finding.rule, finding.event, finding.key, finding.family_id) == (BINDING_MISMATCH, wrong, "at-1", "fam-1")
    assert finding.evidence == (EvidenceItem.of(wrong),)
    assert finding.details == {"bound": "dpop:jkt-AAAA", "proof": "dpop:jkt-BBBB"}
    assert mismatch_finding(BINDING_MISMATCH, ProofMismatch(wrong, _ref(wrong), None, "dpop:jkt-AAAA", None)
                            ).details == {"bound": "dpop:jkt-AAAA", "proof": None}


def test_uses_outside_the_bound_cloud_are_worded_exactly() -> None:
    stolen = _cloud_use(SINGAPORE_VPS)
    facts = OutsideProvider(stolen, _ref(stolen), None, "aws", None)
    assert outside_provider_summary(facts) == (
        "Temporary credentials issued to an AWS service (bound to aws) were used from "
        "139.59.1.1 (Singapore, SG, DigitalOcean, LLC), outside aws — the credential exfiltration pattern "
        f"(credentials {AKID})."
    )
    token = _cloud_use(SINGAPORE_VPS, token_type="access")
    assert outside_provider_summary(OutsideProvider(token, _ref(token), None, "oci", "gcp")) == (
        "Access token issued to a oci service (bound to oci) was used from "
        "139.59.1.1 (Singapore, SG, DigitalOcean, LLC), a gcp address outside oci — the credential exfiltration "
        f"pattern (token {AKID})."
    )
    finding = mismatch_finding(BINDING_MISMATCH, facts)
    assert (finding.summary, finding.key, finding.family_id) == (outside_provider_summary(facts), AKID, None)
    assert finding.evidence == (EvidenceItem.of(stolen),)
    assert finding.details == {
        "bound": "network:aws", "used_from_provider": None,
        "related_technique": "T1552.005 Unsecured Credentials: Cloud Instance Metadata API",
    }


def test_pod_mismatches_are_worded_exactly() -> None:
    other = _pod_use(60, OTHER_IP)
    learned = PodAddress(POD_IP, START, "ev-first", "sa-tok-0", "k8s_audit", START + 30)
    facts = PodMismatch(other, _ref(other), None, POD_UID, learned, NODE_IP)
    assert pod_summary(facts) == (
        f"Pod-bound service-account token used from 10.99.0.5, not its pod's address 10.20.3.41 "
        f"or its node address 10.0.0.7 (token sa-tok-1, pod {POD_UID})."
    )
    assert pod_summary(PodMismatch(other, _ref(other), None, POD_UID, learned, None)) == (
        f"Pod-bound service-account token used from 10.99.0.5, not its pod's address 10.20.3.41 "
        f"(token sa-tok-1, pod {POD_UID})."
    )
    finding = mismatch_finding(BINDING_MISMATCH, facts)
    assert (finding.summary, finding.key) == (pod_summary(facts), "sa-tok-1")
    # The use the address was learned from, rebuilt from the pod's row, cited before the use.
    assert finding.evidence == (
        EvidenceItem(event_id="ev-first", kind="used", time=datetime.fromtimestamp(START, tz=timezone.utc),
                     source="k8s_audit", token_id="sa-tok-0", ip=POD_IP, outcome="success"),
        EvidenceItem.of(other),
    )
    assert finding.details == {"bound": f"pod:{POD_UID}", "pod_address": POD_IP, "node_address": NODE_IP,
                               "pod_address_learned_from": "ev-first"}
