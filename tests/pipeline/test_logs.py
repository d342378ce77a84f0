"""JSON logs: one parseable object per line, extra fields kept, tokens never written."""

from __future__ import annotations

import io
import json
import logging

from pipeline.logs import configure

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"


def test_log_lines_are_json_with_extras_and_no_raw_token(hasher) -> None:
    out = io.StringIO()
    configure(hasher, "INFO", out)
    log = logging.getLogger("tokenwatch.test")
    log.info("checkpoint done", extra={"partitions": 3, "topic": "events"})
    try:
        raise ValueError(f"bad header Authorization: Bearer {JWT}")
    except ValueError:
        log.exception("could not parse %s", f"Bearer {JWT}")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["message"] == "checkpoint done" and lines[0]["partitions"] == 3 and lines[0]["topic"] == "events"
    assert lines[1]["log.level"] == "error" and "ValueError" in lines[1]["error.stack_trace"]
    assert JWT not in out.getvalue()
    logging.getLogger().handlers.clear()


def test_client_library_chatter_is_quiet_unless_asked(hasher) -> None:
    """kafka-python's INFO lines (connection and coordinator chatter) were 134 of 140
    log lines in 15 s: the client libraries log at WARNING unless asked."""
    out = io.StringIO()
    configure(hasher, "INFO", out)
    logging.getLogger("kafka.conn").info("<BrokerConnection ...>: connecting to 127.0.0.1:9092")
    logging.getLogger("kafka.conn").warning("<BrokerConnection ...>: connection failed")
    logging.getLogger("tokenwatch.service").info("partitions assigned")
    messages = [json.loads(line)["message"] for line in out.getvalue().splitlines()]
    assert messages == ["<BrokerConnection ...>: connection failed", "partitions assigned"]

    out = io.StringIO()
    configure(hasher, "INFO", out, client_level="INFO")
    logging.getLogger("kafka.conn").info("connecting")
    assert [json.loads(line)["message"] for line in out.getvalue().splitlines()] == ["connecting"]
    logging.getLogger().handlers.clear()
    logging.getLogger("kafka").setLevel(logging.NOTSET)
