"""Response policy and responder settings (the ``[response]`` table).

Responders are named (``[response.responders.<name>]`` with a ``type``); ``routes`` maps an
event source (optionally ``source:kind``) to the responder that revokes its targets.
Secrets are never values here: each responder names the environment variable or file
that holds its client secret, API token or signing key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from pipeline.response.notify import WebhookConfig
from pipeline.response.responders.caep import CaepConfig
from pipeline.response.responders.entra import EntraConfig
from pipeline.response.responders.keycloak import KeycloakConfig
from pipeline.response.responders.okta import OktaConfig
from pipeline.response.responders.rfc7009 import Rfc7009Config

Mode = Literal["auto", "approve", "notify"]
ResponderSettings = Annotated[
    Rfc7009Config | KeycloakConfig | OktaConfig | EntraConfig | CaepConfig, Field(discriminator="type")
]


class ResponseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=False, description="Act on alerts at all (off: alerts only)")
    dry_run: bool = Field(default=False, description="Record what would be revoked, send nothing")
    rule_modes: dict[str, Mode] = Field(
        default={
            "replay.refresh_reuse": "auto",
            "post_revocation_use.after_revocation": "auto",
            "post_revocation_use.after_disable": "auto",
        },
        description="Mode per rule id (fnmatch patterns allowed); other rules use severity_modes",
    )
    severity_modes: dict[str, Mode] = Field(
        default={"critical": "approve", "high": "approve", "medium": "approve", "low": "notify"},
        description="Mode per alert severity for rules not in rule_modes",
    )
    auto_min_severity: Literal["low", "medium", "high", "critical"] = Field(
        default="high", description="An 'auto' rule whose alert is less severe than this waits for approval"
    )
    protected_users: list[str] = Field(default=[], description="User ids never revoked automatically (break-glass)")
    protected_clients: list[str] = Field(default=[], description="Client ids never revoked automatically")
    protected_patterns: list[str] = Field(
        default=[], description="fnmatch patterns on user id/name and client id never revoked automatically"
    )
    routes: dict[str, str] = Field(
        default={},
        description="Event source (or 'source:kind', '*', '*:kind') -> responder name; most specific wins",
    )
    responders: dict[str, ResponderSettings] = Field(default={}, description="Named responders: see README")
    max_auto_per_minute: int = Field(default=20, ge=0, description="Automatic revocations per minute before the breaker trips")
    max_attempts: int = Field(default=8, ge=1, description="Attempts per action before it is given up")
    backoff_base_s: float = Field(default=1.0, gt=0, description="First retry delay; doubles per attempt (with jitter)")
    backoff_max_s: float = Field(default=300.0, gt=0, description="Longest retry delay (a Retry-After may ask for more)")
    retry_poll_s: float = Field(default=1.0, gt=0, description="How often the retry job looks for due actions")
    handle_key_file: Path | None = Field(
        default=None, description="PEM X25519 key that opens revocation handles (or $TOKENWATCH_HANDLE_KEY)"
    )
    actor: str = Field(default="tokenwatch", description="Actor name of automatic actions in the audit trail")
    max_auto_per_principal_per_hour: int = Field(
        default=5, ge=0,
        description="Automatic revocations per user (else client) per hour before that principal's breaker trips: "
                    "its further actions wait for approval, everyone else's still run",
    )
    notify: WebhookConfig | None = Field(
        default=None,
        description="Webhook told of actions in notify mode and of actions awaiting approval ([response.notify])",
    )
    handle_max_count: int = Field(
        default=100_000, ge=1, description="Revocation handles held in memory; beyond, the soonest to expire go first"
    )
    handle_max_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Memory the held revocation handles may take (bytes, estimated)"
    )
    handle_max_ttl_s: float = Field(
        default=86_400.0, gt=0, description="Longest a revocation handle is held, whatever expiry its sender set"
    )
