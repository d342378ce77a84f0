"""Structured JSON logs for the service: one object per line, safe to ship.

Every message goes through token redaction before it is written, so a raw
bearer token that slips into an exception text or a log argument leaves as a
keyed hash, never as the credential.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from schemas.redaction import TokenHasher, redact_text

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, hash_token: TokenHasher) -> None:
        super().__init__()
        self.hash_token = hash_token

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": redact_text(record.getMessage(), self.hash_token),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value if isinstance(value, (int, float, bool)) or value is None else redact_text(
                    str(value), self.hash_token
                )
        if record.exc_info:
            doc["error.stack_trace"] = redact_text(self.formatException(record.exc_info), self.hash_token)
        return json.dumps(doc, ensure_ascii=False)


def configure(hash_token: TokenHasher, level: str = "INFO", stream: IO[str] | None = None) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(hash_token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
