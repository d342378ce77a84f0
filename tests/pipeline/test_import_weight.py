"""What `tokenwatch detect` loads (issue 15): the command line and the detectors import no
client library and no numerics. numpy comes with the anomaly model, Kafka's client with
`run` or `detect --workers`, Elasticsearch and the HTTP responders with the service and the
store that need them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("numpy", "pandas", "sklearn", "elasticsearch", "httpx", "kafka", "joserfc")


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_detectors_and_their_state_load_no_numerics() -> None:
    assert _loaded_after("import detectors, detectors.state, detectors.state_codec") == []


def test_the_command_line_loads_no_client_library_and_no_numerics() -> None:
    assert _loaded_after("import pipeline.cli.main, pipeline.runtime.detect") == []


def test_the_anomaly_model_still_brings_numpy() -> None:
    """The check can fail: loading the model does import numpy."""
    assert "numpy" in _loaded_after("import detectors.anomaly.model")
