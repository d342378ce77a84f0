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
from typing import TYPE_CHECKING, Any, cast

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
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

if TYPE_CHECKING:
    from pipeline.config import Settings


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
        self.client = client if client is not None else Elasticsearch(**client_kwargs(config))
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
