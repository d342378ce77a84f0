"""Canonical events: the one shape every source format is mapped to.

Detectors read nothing else, so a new source only needs an adapter. The field
names are a public contract (documented in README "Canonical events"): keep them
stable and add fields rather than rename them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Final, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

CANONICAL_VERSION: Final = 1

T = TypeVar("T")


class computed_once(Generic[T]):
    """``functools.cached_property`` without its lock: Python 3.11's takes an ``RLock``
    shared by every instance on each first read (0.99 against 0.63 µs a first ``epoch``). The value
    is a pure function of frozen fields, so two threads computing it at once agree."""

    def __init__(self, compute: Callable[[Any], T]) -> None:
        self.compute = compute
        self.name = compute.__name__
        self.__doc__ = compute.__doc__

    def __get__(self, instance: Any, owner: type | None = None) -> T:
        if instance is None:
            return self  # type: ignore[return-value]  # the descriptor itself, read on the class
        value = self.compute(instance)
        instance.__dict__[self.name] = value  # a non-data descriptor: the next read finds this
        return value


class Frozen(BaseModel):
    """Base for immutable, lenient-on-output models (events are shared by detectors)."""

    model_config = ConfigDict(frozen=True, extra="forbid", ignored_types=(computed_once,))


class EventKind(StrEnum):
    ISSUED = "issued"
    REFRESHED = "refreshed"
    USED = "used"
    REVOKED = "revoked"
    SESSION_STARTED = "session_started"
    SESSION_ENDED = "session_ended"
    PRINCIPAL_DISABLED = "principal_disabled"
    REUSE_REPORTED = "reuse_reported"  # the IdP itself detected refresh-token reuse (Okta detect_reuse)


class TokenType(StrEnum):
    ACCESS = "access"
    REFRESH = "refresh"
    ID = "id"
    TEMPORARY_CREDENTIAL = "temporary_credential"
    SERVICE_ACCOUNT = "service_account"
    UNKNOWN = "unknown"


BindingMethod = Literal["dpop", "mtls", "pod", "network"]


class Binding(Frozen):
    """What a token is bound to (at issue), or what a request proved (at use).

    ``method`` is ``dpop`` (RFC 9449 jkt), ``mtls`` (RFC 8705 x5t#S256), ``pod``
    (k8s bound object) or ``network`` (where cloud credentials were issued).
    Two bindings of the same method with different values are a mismatch.
    """

    method: BindingMethod
    value: str


class TokenRef(Frozen):
    id: str
    type: TokenType = TokenType.UNKNOWN
    family_id: str | None = None
    parent_id: str | None = None
    issued_at: AwareDatetime | None = None
    expires_at: AwareDatetime | None = None
    audience: tuple[str, ...] = ()
    binding: Binding | None = None


SubjectKind = Literal["user", "service", "unknown"]


class Subject(Frozen):
    id: str
    name: str | None = None
    kind: SubjectKind = "unknown"


class Geo(Frozen):
    country: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    accuracy_km: float | None = None
    source: Literal["event", "city_db", "country_db"] | None = None


NetClass = Literal["relay", "in_flight", "provider", "reputation"]
"""Classes of the operator's egress lists (README "Egress lists"): a relay's position is the
user's only coarsely, an in-flight or provider network's not at all, a reputation network
is anonymising."""


class Network(Frozen):
    ip: str | None = None
    user_agent: str | None = None
    service: str | None = Field(
        default=None, description="Cloud service name when the caller is a service, not an IP"
    )
    geo: Geo | None = None
    asn: int | None = None
    as_org: str | None = None
    hosting: bool | None = Field(default=None, description="Hosting, cloud, VPN or Tor network")
    egress: str | None = Field(
        default=None, description="Name of the allowlisted corporate/VPN/cloud egress range matched"
    )
    provider: str | None = Field(
        default=None, description="Cloud provider the address belongs to (aws, gcp, azure, …), if any"
    )
    device_id: str | None = None
    net_class: NetClass | None = Field(
        default=None, description="Class of the operator's egress list the network is on (enrich.egress_lists)"
    )
    net_list: str | None = Field(default=None, description="Name of that egress list")


class Request(Frozen):
    id: str | None = None
    method: str | None = None
    resource: str | None = None
    status: int | None = None
    proof: Binding | None = Field(default=None, description="Key the caller proved (DPoP/mTLS)")


class Outcome(Frozen):
    result: Literal["success", "failure", "unknown"] = "success"
    reason: str | None = None


class Revocation(Frozen):
    """What a ``revoked`` event covers; ids come from token/session/subject fields."""

    target: Literal["token", "family", "session", "subject"]
    actor: str | None = None


class CanonicalEvent(Frozen):
    canonical_version: Literal[1] = CANONICAL_VERSION
    event_id: str = Field(min_length=1, max_length=512)
    kind: EventKind
    time: AwareDatetime
    source: str
    tenant: str | None = None
    token: TokenRef | None = None
    subject: Subject | None = None
    client_id: str | None = None
    session_id: str | None = None
    grant_type: str | None = None
    scopes: tuple[str, ...] = Field(
        default=(), description="Granted on issued/refreshed; presented (token's scopes) on used"
    )
    required_scopes: tuple[str, ...] = Field(
        default=(), description="Scopes the resource required at use"
    )
    network: Network = Network()
    request: Request | None = None
    outcome: Outcome = Outcome()
    revocation: Revocation | None = None
    ingested_at: AwareDatetime | None = None

    @field_validator("time", "ingested_at")
    @classmethod
    def _to_utc(cls, value: datetime | None) -> datetime | None:
        return value.astimezone(timezone.utc) if value is not None else None

    @field_validator("scopes", "required_scopes")
    @classmethod
    def _sorted_unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(value)))

    @computed_once
    def epoch(self) -> float:
        """Event time as epoch seconds: state and windows compute in floats."""
        return self.time.timestamp()

    @property
    def succeeded(self) -> bool:
        return self.outcome.result == "success"
