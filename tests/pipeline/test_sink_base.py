"""Sink contract and Elasticsearch sink logic: media types, index names, retries, backpressure.

HTTP failures are scripted by a tiny in-process HTTP server (the boundary the
client really talks to), so 5xx/429 sequences and item-level errors are exact;
the real-server cases are in tests/integration/test_elasticsearch_sink.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from pipeline.es.client import client_kwargs, plain_media_types
from pipeline.es.config import ElasticsearchConfig
from pipeline.es.documents import shape
from pipeline.es.templates import FAMILIES, document_time, index_name, index_template
from pipeline.sinks import SINKS, ElasticsearchSink, MemorySink, Sink, SinkUnavailable
from tests.factories import SINGAPORE_VPS, event

Reply = tuple[int, dict[str, Any]]


class ScriptedES:
    """An HTTP server answering each request with the next scripted reply (a function of the request)."""

    def __init__(self, product_header: bool = True) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[Callable[[dict[str, Any]], Reply]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                owner.requests.append(request)
                status, payload = owner.script.pop(0)(request) if owner.script else (200, {})
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if product_header:
                    self.send_header("X-Elastic-Product", "Elasticsearch")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def bulk_docs(self, index: int) -> list[tuple[str, dict[str, Any]]]:
        """(_id, source) of each document in the ``index``-th request (a bulk)."""
        lines = [json.loads(line) for line in self.requests[index]["body"].splitlines() if line]
        return [(op["index"]["_id"], src) for op, src in zip(lines[::2], lines[1::2], strict=True)]


def bulk_ok(statuses: dict[str, int] | None = None) -> Callable[[dict[str, Any]], Reply]:
    """A bulk reply: 201 per document unless ``statuses`` names another status for its _id."""
    def reply(request: dict[str, Any]) -> Reply:
        lines = [json.loads(line) for line in request["body"].splitlines() if line]
        items = []
        for op in lines[::2]:
            status = (statuses or {}).get(op["index"]["_id"], 201)
            result: dict[str, Any] = {"_id": op["index"]["_id"], "_index": op["index"]["_index"], "status": status}
            if status >= 300:
                result["error"] = {"type": "mapper_parsing_exception" if status == 400 else "es_rejected_execution_exception",
                                   "reason": f"status {status}"}
            items.append({"index": result})
        return 200, {"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items), "items": items}
    return reply


def status(code: int) -> Callable[[dict[str, Any]], Reply]:
    return lambda request: (code, {"error": {"type": "x", "reason": f"scripted {code}"}, "status": code})


@pytest.fixture
def es() -> Iterator[ScriptedES]:
    server = ScriptedES()
    yield server
    server.server.shutdown()


def make_sink(url: str, sleeps: list[float], **config: Any) -> ElasticsearchSink:
    cfg = ElasticsearchConfig(hosts=[url], **{"max_retries": 3, "retry_backoff_s": 0.5, **config})
    return ElasticsearchSink(cfg, sleep=sleeps.append, clock=lambda: datetime(2026, 1, 2, 3, tzinfo=timezone.utc))


def alert_doc(alert_id: str, count: int = 1, when: str = "2026-11-24T09:00:00Z") -> dict[str, Any]:
    return {"@timestamp": when, "alert": {"id": alert_id, "count": count}, "rule": {"id": "r"}}


# -- media types ---------------------------------------------------------------------
def test_versioned_media_types_become_plain() -> None:
    headers = plain_media_types({
        "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=9",
        "accept": "application/vnd.elasticsearch+json; compatible-with=8",
        "user-agent": "elasticsearch-py/9",
    })
    assert headers["content-type"] == "application/x-ndjson"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "elasticsearch-py/9"
    assert plain_media_types({"accept": "application/json, text/plain"})["accept"] == "application/json, text/plain"


def test_opensearch_flavour_sends_plain_media_types_and_tolerates_no_product_header() -> None:
    server = ScriptedES(product_header=False)  # like a real OpenSearch cluster
    server.script = [bulk_ok()]
    sink = make_sink(server.url, [], flavour="opensearch")
    sink.add("alert", "a1", alert_doc("a1"))
    assert sink.flush().written == 1
    sent = {k.lower(): v for k, v in server.requests[0]["headers"].items()}
    assert sent["content-type"] == "application/x-ndjson" and sent["accept"] == "application/json"
    server.server.shutdown()


def test_elasticsearch_flavour_keeps_versioned_media_types(es: ScriptedES) -> None:
    es.script = [bulk_ok()]
    sink = make_sink(es.url, [])
    sink.add("alert", "a1", alert_doc("a1"))
    sink.flush()
    sent = {k.lower(): v for k, v in es.requests[0]["headers"].items()}
    assert sent["content-type"].startswith("application/vnd.elasticsearch+x-ndjson")


# -- index names and documents ---------------------------------------------------------
def test_index_name_is_the_utc_day_of_the_document_time() -> None:
    assert index_name("tw", "alert", datetime(2026, 11, 24, 23, 59, tzinfo=timezone.utc)) == "tw-alerts-2026.11.24"
    when = document_time({"@timestamp": "2026-11-24T23:30:00-02:00"})
    assert when is not None and index_name("tw", "dead_letter", when) == "tw-dead-letters-2026.11.25"
    assert document_time({"time": "2026-03-01T00:00:00Z"}) == datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert document_time({"@timestamp": "garbage", "ingested_at": "2026-03-02T00:00:00+00:00"}).day == 2  # type: ignore[union-attr]  # the fallback time parses: a None fails the test just the same
    assert document_time({}) is None


def test_every_kind_has_a_template_matching_its_indices() -> None:
    for kind, family in FAMILIES.items():
        body = index_template("tokenwatch", kind)
        assert body["index_patterns"] == [f"tokenwatch-{family}-*"]
        assert body["template"]["mappings"]["properties"]["@timestamp"] == {"type": "date"}
    alerts = index_template("tokenwatch", "alert")["template"]["mappings"]["properties"]
    assert alerts["source"]["properties"]["geo"]["properties"]["location"] == {"type": "geo_point"}
    assert alerts["source"]["properties"]["ip"]["type"] == "ip"
    assert alerts["alert"]["properties"]["summary"] == {"type": "text"}
    assert alerts["rule"]["properties"]["id"]["type"] == "keyword"


def test_canonical_event_is_shaped_to_ecs() -> None:
    ev = event("used", 5, token="at-1", family="fam-1", place=SINGAPORE_VPS, scopes=("read",))
    doc = shape("event", ev.model_dump(mode="json"))
    assert doc["@timestamp"] == "2026-11-24T09:00:05Z"
    assert doc["event"]["id"] == ev.event_id and doc["event"]["action"] == "used"
    assert doc["source"]["ip"] == SINGAPORE_VPS.ip
    assert doc["source"]["geo"]["location"] == {"lat": SINGAPORE_VPS.lat, "lon": SINGAPORE_VPS.lon}
    assert doc["source"]["as"]["number"] == SINGAPORE_VPS.asn
    assert doc["token"]["id"] == "at-1" and doc["tokenwatch"]["scopes"] == ["read"]


def test_alert_source_that_is_a_service_name_moves_to_address() -> None:
    doc = shape("alert", {"source": {"ip": "ec2.amazonaws.com"}})
    assert doc["source"] == {"address": "ec2.amazonaws.com"}
    doc = shape("alert", {"source": {"ip": "2001:db8::1"}})
    assert doc["source"] == {"ip": "2001:db8::1", "address": "2001:db8::1"}


def test_add_indexes_by_document_time_else_clock_and_keeps_the_latest_per_id(es: ScriptedES) -> None:
    es.script = [bulk_ok()]
    sink = make_sink(es.url, [])
    sink.add("alert", "a1", alert_doc("a1", count=1))
    sink.add("alert", "a1", alert_doc("a1", count=3))
    sink.add("action", "x1", {"action": {"id": "x1"}})
    assert sink.pending == 2
    sink.flush()
    lines = [json.loads(line) for line in es.requests[0]["body"].splitlines()]
    assert lines[0] == {"index": {"_index": "tokenwatch-alerts-2026.11.24", "_id": "a1"}}
    assert lines[1]["alert"]["count"] == 3
    assert lines[2] == {"index": {"_index": "tokenwatch-actions-2026.01.02", "_id": "x1"}}
    sink.add("nonsense", "1", {})  # type: ignore[arg-type]  # a kind it does not keep: ignored, not refused
    assert sink.pending == 0


# -- retries, rejections, backpressure ------------------------------------------------------
def test_transient_errors_are_retried_with_exponential_backoff(es: ScriptedES) -> None:
    es.script = [status(503), status(429), bulk_ok()]
    sleeps: list[float] = []
    sink = make_sink(es.url, sleeps)
    sink.add("alert", "a1", alert_doc("a1"))
    result = sink.flush()
    assert (result.written, result.rejected, sink.pending) == (1, (), 0)
    assert sleeps == [0.5, 1.0]


def test_exhausted_retries_raise_backpressure_and_keep_the_buffer(es: ScriptedES) -> None:
    es.script = [status(502)] * 4 + [bulk_ok()]
    sleeps: list[float] = []
    sink = make_sink(es.url, sleeps)
    sink.add("alert", "a1", alert_doc("a1"))
    sink.add("alert", "a2", alert_doc("a2"))
    with pytest.raises(SinkUnavailable) as caught:
        sink.flush()
    assert caught.value.pending == 2 and "502" in caught.value.reason
    assert sleeps == [0.5, 1.0, 2.0] and sink.pending == 2
    assert sink.flush().written == 2 and sink.pending == 0


def test_only_failed_items_are_retried_and_mapping_errors_are_rejected(es: ScriptedES) -> None:
    es.script = [bulk_ok({"a2": 429, "bad": 400}), bulk_ok()]
    sink = make_sink(es.url, [])
    for doc_id in ("a1", "a2", "bad"):
        sink.add("alert", doc_id, alert_doc(doc_id))
    result = sink.flush()
    assert result.written == 2 and not result.ok
    [rejected] = result.rejected
    assert (rejected.doc_kind, rejected.doc_id, rejected.status) == ("alert", "bad", 400)
    assert rejected.document == alert_doc("bad") and "mapper_parsing_exception" in rejected.reason
    assert [doc_id for doc_id, _ in es.bulk_docs(1)] == ["a2"]


def test_rejections_found_before_backpressure_are_reported_by_the_next_flush(es: ScriptedES) -> None:
    es.script = [bulk_ok({"a1": 503, "bad": 400})] + [status(503)] * 3 + [bulk_ok()]
    sink = make_sink(es.url, [])
    sink.add("alert", "a1", alert_doc("a1"))
    sink.add("alert", "bad", alert_doc("bad"))
    with pytest.raises(SinkUnavailable):
        sink.flush()
    assert sink.pending == 1
    result = sink.flush()
    assert result.written == 1 and [r.doc_id for r in result.rejected] == ["bad"]


def test_auth_failure_is_backpressure_at_once_not_a_drop(es: ScriptedES) -> None:
    es.script = [status(401)]
    sleeps: list[float] = []
    sink = make_sink(es.url, sleeps)
    sink.add("alert", "a1", alert_doc("a1"))
    with pytest.raises(SinkUnavailable, match="401"):
        sink.flush()
    assert sleeps == [] and sink.pending == 1


def test_bulks_are_split_at_bulk_max_docs(es: ScriptedES) -> None:
    es.script = [bulk_ok(), bulk_ok(), bulk_ok()]
    sink = make_sink(es.url, [], bulk_max_docs=2)
    for i in range(5):
        sink.add("event", f"e{i}", {"time": "2026-11-24T09:00:00Z", "x": i})
    assert sink.flush().written == 5
    assert [len(es.bulk_docs(i)) for i in range(3)] == [2, 2, 1]


def test_templates_are_put_for_every_kind_with_retries(es: ScriptedES) -> None:
    es.script = [status(503)] + [lambda r: (200, {"acknowledged": True})] * 4
    sleeps: list[float] = []
    make_sink(es.url, sleeps, index_prefix="tw").start()
    paths = [r["path"] for r in es.requests]
    assert paths == ["/_index_template/tw-alerts", "/_index_template/tw-alerts", "/_index_template/tw-events",
                     "/_index_template/tw-dead-letters", "/_index_template/tw-actions"]
    assert sleeps == [0.5]


# -- configuration and the contract ----------------------------------------------------------
def test_config_masks_secrets_and_refuses_mixed_auth(tmp_path: Any) -> None:
    cfg = ElasticsearchConfig(api_key="s3cr3t-key")
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in cfg.model_dump_json()
    assert client_kwargs(cfg)["api_key"] == "s3cr3t-key"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    basic = ElasticsearchConfig(username="tw", password_file=secret, flavour="opensearch")
    assert client_kwargs(basic)["basic_auth"] == ("tw", "from-file")
    with pytest.raises(ValidationError):
        ElasticsearchConfig(api_key="k", username="u", password="p")
    with pytest.raises(ValidationError):
        ElasticsearchConfig(hosts=["http://x:9200"], bogus=1)  # type: ignore[call-arg]  # an unknown key on purpose: it must be refused
    assert ElasticsearchConfig().backoff(10) == 30.0


def test_every_registered_sink_implements_the_contract() -> None:
    assert set(SINKS) == {"elasticsearch", "kafka", "memory"}
    assert isinstance(MemorySink(), Sink)
    assert all(hasattr(cls, name) for cls in SINKS.values() for name in ("start", "add", "flush", "close", "pending"))


def test_memory_sink_keeps_its_buffer_while_down() -> None:
    sink = MemorySink(down="maintenance")
    sink.add("alert", "a1", {"n": 1})
    with pytest.raises(SinkUnavailable, match="maintenance"):
        sink.flush()
    sink.down = None
    assert sink.flush().written == 1 and sink.documents[("alert", "a1")] == {"n": 1}


def test_a_bulk_answer_missing_items_is_retried_not_taken_as_written(es: ScriptedES) -> None:
    es.script = [lambda r: (200, {"took": 1, "errors": False, "items": []}), bulk_ok()]
    sleeps: list[float] = []
    sink = make_sink(es.url, sleeps)
    sink.add("alert", "a1", alert_doc("a1"))
    assert sink.flush().written == 1 and sleeps == [0.5]


# -- a document that cannot be encoded never stops a flush ------------------------------
def _nested(depth: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        doc = {"a": doc}
    return doc


DEAD_LETTER = {"reason": "unknown format", "format": None, "origin": "in:0:7",
               "ingested_at": "2026-11-24T09:00:00Z", "raw_bytes": 5000, "raw_sha256": "ab" * 32, "source_record": {"topic": "in", "partition": 0, "offset": 7}}
ORJSON_REFUSAL = ("TypeError: ", "JSONEncodeError: ")  # orjson's own sentence follows, never the content
UNENCODABLE = {
    "nested 300 deep": _nested(300),
    "lone surrogate": "caf\ud800",
    "integer over 64 bits": 2**70,
}


@pytest.mark.parametrize("bad", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_an_unencodable_dead_letter_is_written_as_its_facts(es: ScriptedES, bad: Any) -> None:
    es.script = [bulk_ok()]
    sink = make_sink(es.url, [])
    sink.add("dead_letter", "in-0-7", {**DEAD_LETTER, "raw": {"x": bad}})
    sink.add("dead_letter", "in-0-8", {**DEAD_LETTER, "raw": {"x": "fine"}})  # its benign twin
    result = sink.flush()
    assert result.written == 2 and result.ok
    [(cut_id, cut), (fine_id, fine)] = es.bulk_docs(0)
    assert (cut_id, fine_id) == ("in-0-7", "in-0-8")
    assert cut.pop("encoding_error").startswith(ORJSON_REFUSAL)
    assert cut == {**DEAD_LETTER, "@timestamp": DEAD_LETTER["ingested_at"]}
    assert fine["raw"] == {"x": "fine"} and "encoding_error" not in fine


@pytest.mark.parametrize("bad", UNENCODABLE.values(), ids=UNENCODABLE.keys())
def test_an_unencodable_alert_is_rejected_and_the_others_are_written(es: ScriptedES, bad: Any) -> None:
    es.script = [bulk_ok()]
    sink = make_sink(es.url, [])
    sink.add("alert", "bad", {**alert_doc("bad"), "evidence": bad})
    sink.add("alert", "good", alert_doc("good"))
    result = sink.flush()
    assert result.written == 1 and [doc_id for doc_id, _ in es.bulk_docs(0)] == ["good"]
    [rejected] = result.rejected
    assert (rejected.doc_kind, rejected.doc_id, rejected.status) == ("alert", "bad", None)
    assert rejected.reason.startswith(tuple(f"not encodable: {r}" for r in ORJSON_REFUSAL))


def test_memory_sink_follows_the_same_encoding_contract() -> None:
    sink = MemorySink()
    sink.add("alert", "bad", {"evidence": _nested(300)})
    sink.add("dead_letter", "d", {**DEAD_LETTER, "raw": _nested(300)})
    result = sink.flush()
    assert [r.doc_id for r in result.rejected] == ["bad"] and result.written == 1
    assert "raw" not in sink.documents[("dead_letter", "d")]
    assert sink.documents[("dead_letter", "d")]["raw_sha256"] == DEAD_LETTER["raw_sha256"]


def test_an_alert_no_sink_can_encode_is_dead_lettered_in_each_without_its_content() -> None:
    from pipeline.service.checkpoint import flush_sinks

    es, kafka = MemorySink(name="elasticsearch"), MemorySink(name="kafka")
    for sink in (es, kafka):
        sink.add("alert", "bad", {"alert": {"id": "bad"}, "evidence": _nested(300)})
    flush_sinks([es, kafka])
    for sink, other in ((es, "kafka"), (kafka, "elasticsearch")):
        dead = sink.documents[("dead_letter", f"rejected-{other}-alert-bad")]
        assert dead["raw_omitted"] is True and "raw" not in dead
        assert dead["reason"] == f"{other} refused alert bad: not encodable: TypeError: Recursion limit reached"
        assert ("alert", "bad") not in sink.documents
