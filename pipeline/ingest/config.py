"""Settings of reading input: the ``[input]`` table (line bounds) and the ``[trust]`` table
(which input may carry which formats, whose revocations count).

Part of the configuration layer (README "Layout"): models and the few pure helpers their
validators need, importing nothing from the ingest code that applies them, so
``pipeline.config`` can load every section without a cycle. ``pipeline.ingest.trust``
enforces these settings; the enrichment settings are ``pipeline.ingest.enrich_config``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import CanonicalEvent
from schemas.sources import FORMATS

CANONICAL = "canonical"
ANY = "*"

IDP_FORMATS = ("keycloak", "okta", "entra")
TOKEN_ISSUER_FORMATS = (*IDP_FORMATS, "k8s", "aks")
"""Authoritative by default: the IdPs, and the Kubernetes API server, which issues service-account
tokens and is the authority on deleting the pods and service accounts they are bound to."""


def known_format(name: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"unknown format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return name


class AuthoritativeSource(BaseModel):
    """A source whose revocation-class events are believed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(description="A registered format name (keycloak, okta, entra, canonical, …)")
    tenants: tuple[str, ...] = Field(
        default=(ANY,), min_length=1,
        description='Allowed values of the event tenant: the Keycloak realm id, the Entra tenant id, the '
        'gateway JWT issuer; "*" = any (Okta System Log records name no org: use "*" and restrict the topic)',
    )
    sources: tuple[str, ...] = Field(
        default=(ANY,), min_length=1,
        description='Allowed values of the event source field (for canonical lines the system the producer '
        'names; for other formats the format name); "*" = any',
    )
    topics: tuple[str, ...] | None = Field(
        default=None,
        description="Input topics (names or fnmatch patterns) this source's revocations are believed from; "
        'unset: any topic (refused while [response] is enabled: anyone who can write to any input topic '
        'could then revoke sessions); ["*"] says so on purpose. tokenwatch detect ignores it',
    )

    @field_validator("format")
    @classmethod
    def _format_known(cls, value: str) -> str:
        return known_format(value)

    def covers(self, fmt: str, event: CanonicalEvent, topic: str | None = None) -> bool:
        if fmt != self.format or not listed(event.tenant, self.tenants) or not listed(event.source, self.sources):
            return False
        return topic is None or self.topics is None or topic_matches(topic, self.topics)


def listed(value: str | None, allowed: tuple[str, ...]) -> bool:
    return ANY in allowed or (value is not None and value in allowed)


DEFAULT_AUTHORITATIVE = (
    *(AuthoritativeSource(format=name) for name in TOKEN_ISSUER_FORMATS),
    AuthoritativeSource(format=CANONICAL),  # only where canonical is accepted at all: trusted topics, detect
)


class TrustConfig(BaseModel):
    """The ``[trust]`` table: which input may carry which formats and whose revocations count."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trusted_topics: tuple[str, ...] = Field(
        default=(),
        description="Input topics (names or fnmatch patterns) whose records may be canonical events: "
        "written only by tokenwatch or a producer you control",
    )
    topic_formats: dict[str, tuple[str, ...]] = Field(
        default={},
        description="Formats an input topic may carry (topic name or fnmatch pattern -> format names; exact "
        "names first, then patterns in order); a topic not named: every format but canonical "
        "(plus canonical when the topic is trusted)",
    )
    authoritative: list[AuthoritativeSource] = Field(
        default=list(DEFAULT_AUTHORITATIVE),
        description="Sources whose revoked, session_ended, principal_disabled and reuse_reported events are "
        "believed: [{format, tenants, sources}]; default every IdP format, the Kubernetes API server (k8s, aks) "
        "and canonical, any tenant",
    )
    detect_canonical: bool = Field(
        default=True,
        description="tokenwatch detect accepts canonical lines (its input is files the operator names); "
        "false for files others write",
    )

    @field_validator("topic_formats")
    @classmethod
    def _formats_known(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for formats in value.values():
            for name in formats:
                known_format(name)
        return value

    def unbound_authorities(self) -> list[str]:
        """Authoritative sources that name no topics: believed from any input topic."""
        return [source.format for source in self.authoritative if source.topics is None]

    @model_validator(mode="after")
    def _canonical_only_on_trusted(self) -> TrustConfig:
        for topic, formats in self.topic_formats.items():
            if CANONICAL in formats and not topic_matches(topic, self.trusted_topics):
                raise ValueError(f"topic_formats[{topic!r}] lists canonical but the topic is not in trusted_topics")
        return self


def topic_matches(topic: str, patterns: tuple[str, ...]) -> bool:
    """``topic`` is one of ``patterns``, by name or fnmatch pattern."""
    return any(topic == pattern or fnmatchcase(topic, pattern) for pattern in patterns)


class InputConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_line_bytes: int = Field(
        default=1_048_576, gt=0,
        description="Longer lines are dead-lettered without being read whole into memory "
        "(a CloudTrail log file longer than this is read record by record instead)",
    )
    max_depth: int = Field(
        default=64, ge=2, le=512,
        description="JSON nested deeper than this is cut (replaced by a marker) when the line is parsed",
    )
    max_future_skew_s: float = Field(
        default=900.0, ge=0, description="Events dated further ahead of the wall clock are dead-lettered"
    )
    dead_letter_raw_bytes: int = Field(
        default=65_536, gt=0, description="Raw bytes kept in a dead letter (the rest is hashed)"
    )
    fast_path: bool = Field(
        default=True,
        description="Read the gateway and canonical formats with msgspec first (same events; a record it "
        "refuses goes the pydantic way, so dead letters are unchanged); false: pydantic only",
    )
