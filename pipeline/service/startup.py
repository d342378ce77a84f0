"""Start-up failures an operator fixes in a setting: one line that names the setting,
a distinct exit code (``pipeline.exit_codes``), never a traceback."""

from __future__ import annotations

from typing import Any

from pipeline.sinks.base import SinkUnavailable


class StartupError(Exception):
    """The service cannot start; ``code`` is its exit code, the message names the setting."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class StoppedBeforeStart(Exception):
    """SIGTERM/SIGINT arrived while a sink was still unavailable at start: nothing was consumed."""


def lasting_refusal(exc: SinkUnavailable, elasticsearch: Any) -> str | None:
    """The advice for a sink refusal that waiting will not cure, or None (keep waiting).

    HTTP 406 is what an OpenSearch-API server answers to the Elasticsearch client's
    versioned media type (and the reverse mismatch fails alike): retrying forever hid it."""
    if exc.sink != "elasticsearch" or not exc.reason.startswith("HTTP 406"):
        return None
    other = "opensearch" if elasticsearch.flavour == "elasticsearch" else "elasticsearch"
    hosts = ",".join(str(host) for host in elasticsearch.hosts)
    return (f"{hosts} refuses the {elasticsearch.flavour} client (HTTP 406 Not Acceptable): the server speaks "
            f"another API; set [elasticsearch] flavour = \"{other}\" (elasticsearch.flavour)")
