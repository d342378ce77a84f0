"""Elasticsearch / OpenSearch sink: index templates on start, bulk writes at checkpoints.

Writes are idempotent (``_id`` = alert id / event id, ``index`` op), so a replay
after a crash updates documents instead of duplicating them. Transient failures
(connection errors, timeouts, 429, 5xx — whole request or single items) are
retried with exponential backoff; when retries run out ``flush`` raises
:class:`SinkUnavailable` and keeps the buffer. A document refused for itself
(400: a mapping conflict) is returned as :class:`Rejected` for dead-lettering,
and so is one that cannot be shaped or encoded (a dead letter is then cut to its
facts instead, see :func:`encodable_dead_letter`). Documents are encoded with
orjson in ``add``, so one hostile document never reaches the bulk request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from elastic_transport import HttpHeaders, NodeConfig, TransportError, Urllib3HttpNode
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import ApiError, Elasticsearch
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator, model_validator

from pipeline.es.documents import shape
from pipeline.es.templates import document_time, index_name, index_template
from pipeline.sinks.base import (
    DOC_KINDS,
    DocKind,
    FlushResult,
    Rejected,
    SinkUnavailable,
    Unencodable,
    encodable_dead_letter,
    encode,
)
from pipeline.url_credentials import refuse_userinfo

if TYPE_CHECKING:
    from elastic_transport._node import NodeApiResponse  # the node API's return type, not re-exported

    from pipeline.config import Settings  # pipeline.config imports this module: a runtime import is a cycle

_VERSIONED = "application/vnd.elasticsearch+"


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

    def client_kwargs(self) -> dict[str, Any]:
        """Arguments for ``Elasticsearch(...)``; the sink owns retries, so the client does none."""
        kwargs: dict[str, Any] = {
            "hosts": [str(h) for h in self.hosts],
            "request_timeout": self.request_timeout_s,
            "max_retries": 0,
            "retry_on_timeout": False,
            "verify_certs": self.verify_certs,
        }
        if self.flavour == "opensearch":
            kwargs["node_class"] = PlainMediaTypeNode
        if self.ca_certs is not None:
            kwargs["ca_certs"] = str(self.ca_certs)
        api_key = _secret(self.api_key, self.api_key_file)
        if api_key:
            kwargs["api_key"] = api_key
        password = _secret(self.password, self.password_file)
        if self.username is not None:
            kwargs["basic_auth"] = (self.username, password or "")
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


@dataclass(frozen=True)
class _Pending:
    doc_kind: DocKind
    doc_id: str
    index: str
    source: bytes  # the shaped document, encoded
    original: Mapping[str, Any]


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 429, 5xx)."""


class ElasticsearchSink:
    """Buffers documents per (kind, id) and bulk-indexes them at a checkpoint."""

    name = "elasticsearch"
    kinds: frozenset[DocKind] = frozenset(DOC_KINDS)
    # Written at checkpoints only, never between them: one bulk request can take most of a
    # second (an index created by a day's first document) and would hold every event behind it.
    flush_early = False

    def __init__(
        self,
        config: ElasticsearchConfig,
        *,
        client: Elasticsearch | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.config = config
        self.client = client if client is not None else Elasticsearch(**config.client_kwargs())
        self._sleep = sleep
        self._clock = clock
        self._buffer: dict[tuple[str, str], _Pending] = {}
        self._rejected: list[Rejected] = []

    @classmethod
    def from_settings(cls, settings: Settings) -> ElasticsearchSink:
        return cls(settings.elasticsearch)

    # -- Sink interface -------------------------------------------------------------
    def start(self) -> None:
        self.ensure_templates()

    def add(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any], raw: bytes | None = None) -> None:
        """Buffer one document; ``raw`` (a dead letter's original bytes) never reaches the cluster:
        its indices are read by analysts, not protected like the input topic."""
        if doc_kind not in self.kinds:
            return
        try:
            pending = self._prepare(doc_kind, doc_id, document)
        except (Unencodable, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            problem = str(exc) if isinstance(exc, Unencodable) else f"cannot shape: {type(exc).__name__}"
            if doc_kind != "dead_letter":
                self._rejected.append(Rejected(doc_kind, doc_id, document, f"not encodable: {problem}"))
                return
            pending = self._prepare(doc_kind, doc_id, encodable_dead_letter(document, problem))
        self._buffer[(doc_kind, doc_id)] = pending

    def _prepare(self, doc_kind: DocKind, doc_id: str, document: Mapping[str, Any]) -> _Pending:
        source = shape(doc_kind, document)
        when = document_time(source) or self._clock()
        index = index_name(self.config.index_prefix, doc_kind, when)
        return _Pending(doc_kind, doc_id, index, encode(source), document)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def flush(self) -> FlushResult:
        written = 0
        while self._buffer:
            keys = list(islice(self._buffer, self.config.bulk_max_docs))
            written += self._write_chunk(keys)
        rejected, self._rejected = tuple(self._rejected), []
        return FlushResult(written=written, rejected=rejected)

    def close(self) -> None:
        self.client.close()

    # -- templates ------------------------------------------------------------------
    def ensure_templates(self) -> None:
        """Create or update the index template of every document kind (idempotent)."""
        for kind in DOC_KINDS:
            body = index_template(self.config.index_prefix, kind)
            self._with_retries(f"index template {body['name']}",
                               partial(self.client.indices.put_index_template, **body))

    # -- writing --------------------------------------------------------------------
    def _write_chunk(self, keys: list[tuple[str, str]]) -> int:
        """Bulk-index ``keys`` until each is written or rejected; retries the transient ones."""
        written = 0
        todo = keys
        retry = 0
        while True:
            try:
                response = self._bulk(todo)
            except _Transient as exc:
                reason = str(exc)
            else:
                retry_keys, reasons = [], []
                for key, item in zip(todo, response["items"], strict=True):  # _bulk checked the count
                    result = next(iter(item.values()))
                    status = int(result.get("status", 0))
                    if 200 <= status < 300:
                        del self._buffer[key]
                        written += 1
                    elif status == 400:
                        pending = self._buffer.pop(key)
                        self._rejected.append(Rejected(pending.doc_kind, pending.doc_id, pending.original,
                                                       _item_reason(result), status))
                    else:
                        retry_keys.append(key)
                        reasons.append(f"{status} {_item_reason(result)}")
                if not retry_keys:
                    return written
                todo = retry_keys
                reason = f"{len(retry_keys)} documents failed: {reasons[0]}"
            retry += 1
            if retry > self.config.max_retries:
                raise SinkUnavailable(self.name, reason, self.pending)
            self._sleep(self.config.backoff(retry))

    def _bulk(self, keys: list[tuple[str, str]]) -> Mapping[str, Any]:
        operations: list[Mapping[str, Any] | bytes] = []
        for key in keys:
            pending = self._buffer[key]
            operations.append({"index": {"_index": pending.index, "_id": pending.doc_id}})
            operations.append(pending.source)
        # Encoded sources go out as they are: the client's NDJSON serializer passes bytes lines
        # through unchanged (its annotation names mappings only).
        lines = cast(Sequence[Mapping[str, Any]], operations)
        response: Mapping[str, Any] = self._call(lambda: self.client.bulk(operations=lines))
        if len(response.get("items") or ()) != len(keys):
            raise _Transient(f"bulk answered {len(response.get('items') or ())} items for {len(keys)} documents")
        return response

    def _with_retries(self, what: str, request: Callable[[], Any]) -> Any:
        retry = 0
        while True:
            try:
                return self._call(request)
            except _Transient as exc:
                retry += 1
                if retry > self.config.max_retries:
                    raise SinkUnavailable(self.name, f"{what}: {exc}", self.pending) from None
                self._sleep(self.config.backoff(retry))

    def _call(self, request: Callable[[], Any]) -> Any:
        """One request; transient failures become ``_Transient``, lasting ones ``SinkUnavailable``."""
        try:
            return request()
        except TransportError as exc:  # connection refused/reset, timeout, TLS
            raise _Transient(f"{type(exc).__name__}: {exc.message}") from None
        except ApiError as exc:
            status = exc.meta.status if exc.meta is not None else 0
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status}: {exc.message}") from None
            # 401/403/404/413 …: retrying now will not help, but nothing may be dropped.
            raise SinkUnavailable(self.name, f"HTTP {status}: {exc.message}", self.pending) from None


def _item_reason(result: Mapping[str, Any]) -> str:
    error = result.get("error")
    if isinstance(error, Mapping):
        return f"{error.get('type', 'error')}: {error.get('reason', '')}"[:500]
    return str(error or "no reason given")[:500]
