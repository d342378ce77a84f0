"""Elasticsearch / OpenSearch connection, auth and write policy: the ``[elasticsearch]`` table,
shared by the sink, the alert store and the analyst.

Part of the configuration layer (README "Layout"): the model only, without the client
library, so loading the settings never imports it; ``pipeline.es.client`` turns the model
into client arguments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

from pipeline.url_credentials import refuse_userinfo


class ElasticsearchConfig(BaseModel):
    """Connection, auth and write policy; secrets are ``SecretStr`` (masked in reprs and dumps)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hosts: list[HttpUrl] = Field(
        default_factory=lambda: [HttpUrl("http://127.0.0.1:9200")], min_length=1, description="Cluster URLs"
    )
    index_events: bool = Field(
        default=False,
        description="The service also indexes every canonical event it reads (token ids are keyed hashes "
        "or the IdP's ids, never a bearer token), so notebooks and lineage work against a running deployment",
    )
    flavour: Literal["elasticsearch", "opensearch"] = Field(
        default="elasticsearch", description="'opensearch' sends plain JSON media types (OpenSearch, osmem)"
    )
    api_key: SecretStr | None = Field(default=None, description="API key (from the environment)")
    api_key_file: Path | None = Field(default=None, description="File holding the API key")
    username: str | None = Field(default=None, description="Basic-auth user")
    password: SecretStr | None = Field(default=None, description="Basic-auth password (from the environment)")
    password_file: Path | None = Field(default=None, description="File holding the basic-auth password")
    ca_certs: Path | None = Field(default=None, description="CA bundle for TLS")
    verify_certs: bool = Field(default=True, description="Verify the cluster's TLS certificate")
    index_prefix: str = Field(default="tokenwatch", pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                              description="Indices are <prefix>-<kind>-YYYY.MM.DD")
    request_timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP request")
    max_retries: int = Field(default=5, ge=0, description="Retries of a transient failure before backpressure")
    retry_backoff_s: float = Field(default=0.5, ge=0, description="First retry delay; doubles per retry")
    retry_backoff_max_s: float = Field(default=30.0, ge=0, description="Cap of the retry delay")
    bulk_max_docs: int = Field(default=1000, gt=0, description="Documents per bulk request")

    @field_validator("hosts", mode="after")
    @classmethod
    def _no_credentials_in_hosts(cls, hosts: list[HttpUrl]) -> list[HttpUrl]:
        for host in hosts:
            refuse_userinfo(
                str(host),
                "set elasticsearch.username and the password in TOKENWATCH_ELASTICSEARCH__PASSWORD or "
                "elasticsearch.password_file (or an API key: TOKENWATCH_ELASTICSEARCH__API_KEY or api_key_file)",
            )
        return hosts

    @model_validator(mode="after")
    def _one_auth(self) -> ElasticsearchConfig:
        has_key = self.api_key is not None or self.api_key_file is not None
        has_basic = self.username is not None or self.password is not None or self.password_file is not None
        if has_key and has_basic:
            raise ValueError("use either api_key or username/password, not both")
        if has_basic and self.username is None:
            raise ValueError("password given without username")
        return self

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based)."""
        return min(self.retry_backoff_s * 2.0 ** (retry - 1), self.retry_backoff_max_s)
