"""Structured JSON logs for the service: one object per line, safe to ship.

Every message, argument, ``extra`` field and stack trace goes through the same
redaction as dead letters (``schemas.redaction``: by key and by value) before it
is written, so a credential that slips into an exception text, a log argument or
an ``extra`` field leaves as a keyed hash, never in clear.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any

from schemas.redaction import TokenHasher, is_secret_key, redact_text, redact_value

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
            "message": redact_text(self._message(record), self.hash_token),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = self._field(key, value)
        if record.exc_info:
            doc["error.stack_trace"] = redact_text(self.formatException(record.exc_info), self.hash_token)
        return json.dumps(doc, ensure_ascii=True, default=self._text)  # no raw control or bidi characters in a terminal

    def _message(self, record: logging.LogRecord) -> str:
        """The message with its arguments redacted before formatting, so a secret
        inside a dict or list argument is caught by its key, not only by its shape."""
        args = record.args
        if not args:
            return record.getMessage()
        if isinstance(args, Mapping):
            safe: Any = {key: self._field(str(key), value) for key, value in args.items()}
        else:
            safe = tuple(self._argument(value) for value in args)
        try:
            message: str = str(record.msg) % safe
            return message
        except (TypeError, ValueError, KeyError):  # a format that needs the original types
            return record.getMessage()

    def _argument(self, value: Any) -> Any:
        if isinstance(value, (int, float, bool)) or value is None:
            return value
        if isinstance(value, (Mapping, list, tuple, set)):
            return redact_value(value, self.hash_token)
        return self._text(value)

    def _field(self, key: str, value: Any) -> Any:
        """An ``extra`` field: hashed whole when its name is a credential's, else redacted
        by value (structures stay structures)."""
        if is_secret_key(key):
            return redact_value({key: value}, self.hash_token)[key]
        return self._argument(value)

    def _text(self, value: object) -> str:
        return redact_text(str(value), self.hash_token)


CLIENT_LOGGERS = ("kafka", "elasticsearch", "elastic_transport", "opensearchpy", "urllib3", "apscheduler")
"""Third-party client libraries whose INFO lines are connection chatter, not service events."""


def configure(
    hash_token: TokenHasher, level: str = "INFO", stream: IO[str] | None = None, client_level: str = "WARNING"
) -> None:
    """Route the root logger to JSON lines on ``stream`` (stderr by default); client
    libraries log at ``client_level`` so the service's own lines are not drowned."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(hash_token))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(client_level.upper())
