"""Alert documents: the contract SIEMs, the CLI and notebooks rely on.

Field names follow the Elastic Common Schema where ECS has them
(``@timestamp``, ``source.geo``, ``source.as``, ``threat.technique``), so the
documents index into Elasticsearch without an ingest pipeline.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from schemas.events import CanonicalEvent

Severity = Literal["low", "medium", "high", "critical"]
# A rule's category is its id's prefix ("replay" for "replay.refresh_reuse"; "response" for the
# breaker's own alert). Which categories exist is the detector registry's to say, checked by
# tests/detectors/test_registry.py, so a new detector adds no line here; the shape is bounded
# because stored alerts are read back through this model.
Category = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
ResponseAction = Literal[
    "revoke_token", "revoke_family", "revoke_session", "revoke_subject", "none"
]
SEVERITY_ORDER: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Technique(_Doc):
    id: str
    name: str


class Threat(_Doc):
    framework: str = "MITRE ATT&CK"
    technique: list[Technique]


class AlertCore(_Doc):
    id: str
    severity: Severity
    risk_score: int = Field(ge=0, le=100)
    status: Literal["open", "acknowledged", "closed"] = "open"
    summary: str
    first_seen: AwareDatetime
    last_seen: AwareDatetime
    count: int = Field(default=1, ge=1)


class RuleRef(_Doc):
    id: str
    name: str
    category: Category


class TokenDoc(_Doc):
    id: str | None = None
    family_id: str | None = None
    type: str | None = None


class UserDoc(_Doc):
    id: str | None = None
    name: str | None = None


class ClientDoc(_Doc):
    id: str | None = None


class SessionDoc(_Doc):
    id: str | None = None


class GeoLocation(_Doc):
    lat: float
    lon: float


class SourceGeo(_Doc):
    country_iso_code: str | None = None
    city_name: str | None = None
    location: GeoLocation | None = None


class SourceAsOrg(_Doc):
    name: str | None = None


class SourceAs(_Doc):
    number: int | None = None
    organization: SourceAsOrg = SourceAsOrg()


class SourceDoc(_Doc):
    ip: str | None = None
    geo: SourceGeo | None = None
    as_: SourceAs | None = Field(default=None, alias="as")
    hosting: bool | None = None
    # The operator's egress list the address is on, and its class (README "Egress lists"):
    # what lets `alerts show` call a Tor exit one.
    net_class: str | None = None
    net_list: str | None = None


class EvidenceItem(_Doc):
    """One event that proves the alert: enough to read it without the raw log.

    ``ip`` is an address only; a caller that is a cloud service ("ec2.amazonaws.com"
    in CloudTrail's ``sourceIPAddress``) is ``service``, so that SIEMs mapping ``ip`` to
    an address type and analysts pivoting on it never meet a service name there.
    """

    event_id: str
    kind: str
    time: AwareDatetime
    source: str
    token_id: str | None = None
    ip: str | None = None
    service: str | None = None
    country: str | None = None
    city: str | None = None
    asn: int | None = None
    as_org: str | None = None
    scopes: list[str] = []
    required_scopes: list[str] = []
    client_id: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    resource: str | None = None
    binding: str | None = None

    @classmethod
    def of(cls, event: CanonicalEvent) -> EvidenceItem:
        net, geo, tok = event.network, event.network.geo, event.token
        proof = event.request.proof if event.request else None
        bound = tok.binding if tok else None
        binding = proof or bound
        return cls(
            event_id=event.event_id,
            kind=event.kind.value,
            time=event.time,
            source=event.source,
            token_id=tok.id if tok else None,
            ip=net.ip,
            service=net.service,
            country=geo.country if geo else None,
            city=geo.city if geo else None,
            asn=net.asn,
            as_org=net.as_org,
            scopes=list(event.scopes),
            required_scopes=list(event.required_scopes),
            client_id=event.client_id,
            outcome=event.outcome.result,
            request_id=event.request.id if event.request else None,
            resource=event.request.resource if event.request else None,
            binding=f"{binding.method}:{binding.value}" if binding else None,
        )


class ResponseDoc(_Doc):
    action: ResponseAction = "none"
    state: str = "pending"


class Alert(_Doc):
    timestamp: AwareDatetime = Field(alias="@timestamp")
    alert: AlertCore
    rule: RuleRef
    token: TokenDoc = TokenDoc()
    user: UserDoc = UserDoc()
    client: ClientDoc = ClientDoc()
    session: SessionDoc = SessionDoc()
    source: SourceDoc = SourceDoc()
    evidence: list[EvidenceItem]
    threat: Threat
    response: ResponseDoc = ResponseDoc()
    details: dict[str, str | int | float | bool | None] = {}

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
