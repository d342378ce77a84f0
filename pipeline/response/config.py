"""Response policy, notification and responder settings (the ``[response]`` table).

Responders are named (``[response.responders.<name>]`` with a ``type``); ``routes`` maps an
event source (optionally ``source:kind``) to the responder that revokes its targets.
Secrets are never values here: each responder names the environment variable or file
that holds its client secret, API token or signing key.

Part of the configuration layer (README "Layout"): each responder's settings live here, not
in its adapter module, so loading the settings imports no HTTP client and no responder; the
adapter in ``pipeline.response.responders`` reads its model from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.url_credentials import refuse_userinfo

Mode = Literal["auto", "approve", "notify"]
NOTIFY_STATES: tuple[Literal["notified", "awaiting_approval"], ...] = ("notified", "awaiting_approval")


class WebhookConfig(BaseModel):
    """``[response.notify]``: where and how notifications go (the URL itself is a secret)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url_env: str | None = Field(
        default="TOKENWATCH_NOTIFY_URL", description="Environment variable holding the webhook URL (it carries a token)"
    )
    url_file: Path | None = Field(default=None, description="File holding the webhook URL (used when url_env is unset)")
    shape: Literal["json", "slack"] = Field(
        default="json", description="'json': tokenwatch's document; 'slack': {\"text\": ...} (Slack, Mattermost, …)"
    )
    states: list[Literal["notified", "awaiting_approval"]] = Field(
        default=list(NOTIFY_STATES), description="New actions in these states are notified"
    )
    timeout_s: float = Field(default=5.0, gt=0, description="Whole-request deadline per delivery attempt")
    max_attempts: int = Field(default=5, ge=1, description="Attempts per notification before it is given up")
    backoff_base_s: float = Field(default=2.0, gt=0, description="First retry delay; doubles per attempt (with jitter)")
    backoff_max_s: float = Field(default=300.0, gt=0, description="Longest retry delay, also the cap on Retry-After")
    poll_s: float = Field(default=1.0, gt=0, description="How often the delivery job looks for due notifications")
    verify_tls: bool = Field(default=True, description="Verify the webhook's certificate (keep on outside tests)")


# -- responders ------------------------------------------------------------------------

class ResponderConfig(BaseModel):
    """Settings every HTTP responder has. Secrets are never values here: only where to read them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    timeout_s: float = Field(
        default=5.0, gt=0, le=300,
        description="Total time per request: connect, send, headers and the whole body (a wall-clock deadline)")
    max_response_bytes: int = Field(
        default=65_536, ge=1_024, le=16 * 1024 * 1024,
        description="Most bytes of a response body read; past it reading stops (only error codes are used)")
    verify_tls: bool = Field(default=True, description="Verify the server certificate (keep on outside tests)")

    @model_validator(mode="after")
    def _no_credentials_in_urls(self) -> ResponderConfig:
        """Every URL field of every responder (base_url, revocation_endpoint, endpoint, …)."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    refuse_userinfo(value, "a responder reads its credentials from its *_env variable or *_file key "
                                    "(e.g. client_secret_env), never from a URL")
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self


AuthMethod = Literal["client_secret_basic", "client_secret_post"]


class ClientCredentialsRef(BaseModel):
    """Where one client's secret is (never the secret itself) and how it authenticates."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_method: AuthMethod = "client_secret_basic"
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="File holding the client secret")

    @model_validator(mode="after")
    def _names_a_secret(self) -> ClientCredentialsRef:
        if not self.client_secret_env and self.client_secret_file is None:
            raise ValueError("set client_secret_env or client_secret_file")
        return self


class Rfc7009Config(ResponderConfig):
    type: Literal["rfc7009"] = "rfc7009"
    revocation_endpoint: str = Field(description="The server's revocation_endpoint (from its metadata)")
    clients: dict[str, ClientCredentialsRef] = Field(
        default={}, description="Credentials per client id: each token is revoked as the client it was issued to")
    client_id: str | None = Field(
        default=None, description="One client that revokes every token (only servers that allow it; else clients)")
    auth_method: AuthMethod = "client_secret_basic"
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="File holding the client secret")
    fallback: str | None = Field(
        default=None, description="Responder for a target no handle arrived for (e.g. keycloak: the family's session)")

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> Rfc7009Config:
        if bool(self.clients) == (self.client_id is not None):
            raise ValueError("set either clients (credentials per client id) or client_id (one privileged client)")
        return self


class KeycloakConfig(ResponderConfig):
    type: Literal["keycloak"] = "keycloak"
    base_url: str = Field(description="Keycloak root URL, e.g. https://sso.example.com")
    realm: str = Field(description="Realm the users and sessions live in")
    token_realm: str | None = Field(default=None, description="Realm of the admin client (default: realm)")
    client_id: str = Field(description="Service-account client with realm-management manage-users")
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="File holding the client secret")


class OktaConfig(ResponderConfig):
    type: Literal["okta"] = "okta"
    base_url: str = Field(description="Okta org URL, e.g. https://example.okta.com")
    api_token_env: str | None = Field(default=None, description="Environment variable holding the SSWS API token")
    api_token_file: Path | None = Field(default=None, description="File holding the SSWS API token")


class EntraConfig(ResponderConfig):
    type: Literal["entra"] = "entra"
    tenant_id: str = Field(description="Directory (tenant) id")
    client_id: str = Field(description="App registration with User.RevokeSessions.All (application)")
    client_secret_env: str | None = Field(default=None, description="Environment variable holding the client secret")
    client_secret_file: Path | None = Field(default=None, description="File holding the client secret")
    login_url: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"


class CaepConfig(ResponderConfig):
    type: Literal["caep"] = "caep"
    endpoint: str = Field(description="The receiver's push endpoint (RFC 8935)")
    issuer: str = Field(description="iss of our SETs (the receiver's stream is configured with it)")
    audience: str = Field(description="aud of our SETs (the receiver)")
    subject_issuer: str | None = Field(default=None, description="iss of the user ids (the IdP); default: issuer")
    algorithm: Literal["ES256", "RS256", "PS256", "EdDSA"] = "ES256"
    key_id: str | None = Field(default=None, description="kid the receiver finds our public key by (JWKS)")
    signing_key_env: str | None = Field(default=None, description="Environment variable holding the PEM private key")
    signing_key_file: Path | None = Field(default=None, description="File holding the PEM private key")
    auth_token_env: str | None = Field(default=None, description="Environment variable with a bearer token for the push")
    auth_token_file: Path | None = None


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
