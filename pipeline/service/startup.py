"""Start-up failures an operator fixes in a setting: one line that names the setting,
a distinct exit code (``pipeline.exit_codes``), never a traceback."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pipeline import exit_codes
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



def refuse_early(settings: Any, sinks: Iterable[str]) -> None:
    """Raise the Elasticsearch refusal no wait cures before any Kafka client is built.

    The service finds it again when it starts its sinks, but by then it has Kafka clients,
    and closing them a moment after building them lets kafka-python's network thread log a
    traceback of its own. A cluster that is merely down is left to the service, which waits
    for it with /healthz up: the probe tries once, with no retries (SIGTERM is not handled yet).
    It installs the index templates the service would."""
    if "elasticsearch" not in sinks:
        return
    from pipeline.sinks import ElasticsearchSink

    probe = ElasticsearchSink(settings.elasticsearch.model_copy(update={"max_retries": 0}))
    try:
        probe.start()
    except SinkUnavailable as exc:
        refusal = lasting_refusal(exc, settings.elasticsearch)
        if refusal is not None:
            raise StartupError(exit_codes.ELASTICSEARCH_REFUSED, refusal) from None
    finally:
        probe.close()
