"""Cloud-bound credentials judged from their use alone, and service callers kept out of ``ip``.

An EC2 instance's credentials carry ``network:aws`` on the use record (the CloudTrail
adapter reads ``ec2RoleDelivery``), so replay needs no issuance to see them used
outside AWS; a calling AWS service is a service in evidence and summaries, not an address.
"""

from __future__ import annotations

from detectors import DETECTORS, describe
from detectors.state import Observation
from schemas.alerts import EvidenceItem
from schemas.events import Binding, CanonicalEvent, Network
from tests.factories import SINGAPORE_VPS, Place, event, rule_hits, run

ONLY_REPLAY = {name: {"enabled": False} for name in DETECTORS if name != "replay"}
ON_AWS = Binding(method="network", value="aws")
AKID = "ASIAQEXAMPLE7KEY"
AWS_FRANKFURT = Place("3.120.15.20", "DE", "Frankfurt", 50.11, 8.68, 16509, "AMAZON-02", hosting=True)


def instance_use(t: float, place: Place | None, **network: object) -> CanonicalEvent:
    """A CloudTrail use of EC2 instance credentials: the binding comes with the use."""
    ev = event("used", t, token=AKID, token_type="temporary_credential", bound=ON_AWS, expires_in=6 * 3_600.0 - t,
               subject="arn:aws:sts::111122223333:assumed-role/web/i-0a1b2c3d4e5f60718", client="i-0a1b2c3d4e5f60718",
               place=place, source="cloudtrail")
    base = place.network() if place is not None else Network()
    return ev.model_copy(update={"network": base.model_copy(update=network)})


def test_a_lone_use_outside_aws_is_a_binding_mismatch() -> None:
    stolen = instance_use(600, SINGAPORE_VPS)
    alerts = run([stolen], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", AKID)]
    assert alerts[0].alert.summary == (
        "Temporary credentials issued to an AWS service (bound to aws) were used from "
        "139.59.1.1 (Singapore, SG, DigitalOcean, LLC), outside aws — the credential exfiltration pattern "
        f"(credentials {AKID})."
    )
    assert [e.event_id for e in alerts[0].evidence] == [stolen.event_id]


def test_uses_inside_aws_by_address_endpoint_or_service_are_benign() -> None:
    uses = [
        instance_use(10, AWS_FRANKFURT, provider="aws"),  # enrichment: an AWS address
        instance_use(20, None, ip="10.0.3.7", provider="aws"),  # the adapter: own VPC endpoint
        instance_use(30, None, service="athena.amazonaws.com"),  # an AWS service on the key's behalf
    ]
    assert run(uses, ONLY_REPLAY) == []


def test_a_use_with_no_recorded_address_cannot_be_judged() -> None:
    assert run([instance_use(10, None)], ONLY_REPLAY) == []


def test_a_service_caller_is_a_service_in_evidence_and_in_words() -> None:
    issue = event("issued", 0, token=AKID, token_type="temporary_credential", bound=ON_AWS, place=None,
                  source="cloudtrail").model_copy(update={"network": Network(service="ec2.amazonaws.com")})
    item = EvidenceItem.of(issue)
    assert (item.ip, item.service) == (None, "ec2.amazonaws.com")
    observed = Observation(issue)
    assert (observed.ip, observed.service) == (None, "ec2.amazonaws.com")
    assert (observed.evidence(AKID).ip, observed.evidence(AKID).service) == (None, "ec2.amazonaws.com")
    assert describe.place(issue) == "AWS service ec2.amazonaws.com"
    assert describe.place(observed) == "AWS service ec2.amazonaws.com"
    other = issue.model_copy(update={"network": Network(service="build-runner")})
    assert describe.place(other) == "service build-runner"


def test_an_address_stays_an_address() -> None:
    use = instance_use(10, SINGAPORE_VPS)
    assert (EvidenceItem.of(use).ip, EvidenceItem.of(use).service) == ("139.59.1.1", None)
    assert describe.place(use) == "139.59.1.1 (Singapore, SG, DigitalOcean, LLC)"


def test_evidence_of_an_instance_profile_issue_names_the_service() -> None:
    issue = event("issued", 0, token=AKID, token_type="temporary_credential", bound=ON_AWS, place=None,
                  source="cloudtrail").model_copy(update={"network": Network(service="ec2.amazonaws.com")})
    alerts = run([issue, instance_use(600, SINGAPORE_VPS)], ONLY_REPLAY)
    first = alerts[0].evidence[0]
    assert (first.event_id, first.ip, first.service) == (issue.event_id, None, "ec2.amazonaws.com")
    assert "ip" not in alerts[0].to_json_dict()["evidence"][0]
