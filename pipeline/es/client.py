"""Client arguments for an ``[elasticsearch]`` cluster, and the transport node that lets the
Elasticsearch client talk to OpenSearch-compatible servers (``flavour = "opensearch"``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from elastic_transport import HttpHeaders, NodeConfig, Urllib3HttpNode
from elastic_transport.client_utils import DEFAULT, DefaultType
from pydantic import SecretStr

from pipeline.es.config import ElasticsearchConfig

if TYPE_CHECKING:
    from elastic_transport._node import NodeApiResponse  # the node API's return type, not re-exported

_VERSIONED = "application/vnd.elasticsearch+"


def client_kwargs(config: ElasticsearchConfig) -> dict[str, Any]:
    """Arguments for ``Elasticsearch(...)``; the sink owns retries, so the client does none."""
    kwargs: dict[str, Any] = {
        "hosts": [str(h) for h in config.hosts],
        "request_timeout": config.request_timeout_s,
        "max_retries": 0,
        "retry_on_timeout": False,
        "verify_certs": config.verify_certs,
    }
    if config.flavour == "opensearch":
        kwargs["node_class"] = PlainMediaTypeNode
    if config.ca_certs is not None:
        kwargs["ca_certs"] = str(config.ca_certs)
    api_key = _secret(config.api_key, config.api_key_file)
    if api_key:
        kwargs["api_key"] = api_key
    password = _secret(config.password, config.password_file)
    if config.username is not None:
        kwargs["basic_auth"] = (config.username, password or "")
    return kwargs


def _secret(value: SecretStr | None, path: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if path is not None:
        return path.read_text(encoding="utf-8").strip()
    return None


def plain_media_types(headers: Mapping[str, str]) -> HttpHeaders:
    """``application/vnd.elasticsearch+json; compatible-with=N`` → ``application/json`` (same for x-ndjson)."""
    plain = HttpHeaders()
    for key, value in headers.items():
        if isinstance(value, str) and _VERSIONED in value:
            value = ", ".join(
                "application/" + part.strip().split(";", 1)[0].strip()[len(_VERSIONED):]
                if part.strip().startswith(_VERSIONED) else part.strip()
                for part in value.split(",")
            )
        plain[key] = value
    return plain


class PlainMediaTypeNode(Urllib3HttpNode):
    """Transport node for OpenSearch-compatible servers, which answer versioned media types with 406.

    It also marks responses as Elasticsearch when the server does not, since the
    client refuses to talk to an "unknown product" otherwise.
    """

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        self._headers = plain_media_types(self._headers)

    def perform_request(self, method: str, target: str, body: bytes | None = None,
                        headers: HttpHeaders | None = None,
                        request_timeout: DefaultType | float | None = DEFAULT) -> NodeApiResponse:
        response = super().perform_request(
            method, target, body, plain_media_types(headers) if headers else headers, request_timeout
        )
        meta = response[0]
        if "x-elastic-product" not in meta.headers:
            marked = HttpHeaders(meta.headers.items())
            marked["x-elastic-product"] = "Elasticsearch"
            meta.headers = marked
        return response
